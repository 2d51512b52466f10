"""The media repository (spec v1.19 client-server "Content repository", server-server "Content repository").

The order of an upload, each step done before the next (so nothing half-done is ever served):
1. the body is spooled to ``tmp/`` by the HTTP layer, hashed and counted, refused past ``max_upload_size``;
2. the per-user quotas (``media_upload_limits``) are checked;
3. the content scanner, if any, gives its verdict (remembered by sha256, so a file is scanned once);
4. the file is flushed and moved into place (``os.replace``), then its row is committed: only then is its
   ``mxc://`` URI answered, and only then can it be downloaded;
5. storage providers get a copy (awaited when ``store_synchronous``), thumbnails of images are generated.
Remote media follow the same path, fetched from the origin server by ``remote`` (federation).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Sequence

from twisted.internet import defer
from twisted.python.failure import Failure

from homeserver.config.values import MediaRetention, ThumbnailSize, UploadLimit
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.services.auth import random_string
from homeserver.services.ratelimit import Ratelimiter
from media_repo import rules
from media_repo.filestore import FileStore, Spool, thumbnail_name, valid_media_id, valid_server_name
from media_repo.hooks import ProviderEntry, RunInThread, Scanner
from media_repo.storage import LocalMedia, MediaStore, RemoteMedia, Thumbnail
from media_repo.thumbnails import NotThumbnailable, dimensions, render

logger = logging.getLogger(__name__)

MEDIA_ID_LENGTH = 24
MAX_TIMEOUT_MS = 60_000  # timeout_ms above this is lowered (the spec lets the server cap it)
ROOM_SCAN_PAGE = 500  # events read at a time when listing a room's media
TOUCH_EVERY_MS = 10 * 60 * 1000  # an access is recorded at most this often per file (media_retention)


class RemoteMediaError(Exception):
    """The origin server did not give the file; ``status`` is what our client is told."""

    def __init__(self, status: int, errcode: str, message: str):
        super().__init__(message)
        self.status, self.errcode = status, errcode


@dataclass(frozen=True)
class Media:
    """A file ready to be served: where it is and what it is."""

    path: str
    media_type: str
    upload_name: str | None
    length: int


def mxc(server_name: str, media_id: str) -> str:
    return f"mxc://{server_name}/{media_id}"


def mxc_uris(content) -> list[str]:
    """The valid ``mxc://`` URIs of an event's content where clients put files (spec "m.room.message" msgtypes,
    encrypted attachments, avatars)."""
    if not isinstance(content, dict):
        return []
    candidates = [content.get("url"), content.get("avatar_url")]
    for holder in (content.get("info"), content.get("file")):
        if isinstance(holder, dict):
            candidates += [holder.get("thumbnail_url"), holder.get("url")]
            if isinstance(holder.get("thumbnail_file"), dict):
                candidates.append(holder["thumbnail_file"].get("url"))
    return [c for c in candidates if parse_mxc(c) is not None]


def parse_mxc(uri: str) -> tuple[str, str] | None:
    """``mxc://server/id`` -> (server, id), None if malformed."""
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        return None
    server, _, media_id = uri[6:].partition("/")
    if not valid_server_name(server) or not valid_media_id(media_id):
        return None
    return server, media_id


@dataclass(frozen=True)
class MediaSettings:
    """The media keys of the configuration (homeserver/config/table.py, section "Media store")."""

    max_upload_size: int
    upload_limits: tuple[UploadLimit, ...] = ()
    authenticated_media: bool = True
    max_pending_uploads: int = 5
    unused_expiration_ms: int = 24 * 3600 * 1000
    thumbnail_sizes: tuple[ThumbnailSize, ...] = ()
    dynamic_thumbnails: bool = False
    max_image_pixels: int = 32 * 1024 ** 2
    retention: MediaRetention = MediaRetention()
    scan_fail_closed: bool = True  # content_scanner.fail_closed: refuse files while the scanner is unreachable


class MediaRepository:
    """Uploads, downloads, thumbnails and the remote cache of one homeserver.

    ``remote`` fetches remote media (None: federation off); ``federation_allowed(server)`` is the
    ``federation_domain_whitelist``; ``scanner`` and ``providers`` are the hooks of media_repo/hooks.py;
    ``download_limit`` is Synapse's ``remote_media_download_*`` bucket of bytes fetched per client IP."""

    def __init__(self, *, store: MediaStore, files: FileStore, clock, server_name: str, run_in_thread: RunInThread,
                 settings: MediaSettings, federation_allowed: Callable[[str], bool], events, remote=None,
                 scanner: Scanner | None = None, providers: Sequence[ProviderEntry] = (),
                 download_limit: Ratelimiter | None = None):
        self.store, self.files, self.clock, self.server_name = store, files, clock, server_name
        self.events = events  # EventStore: the media a room's events point at (admin quarantine)
        self.run_in_thread, self.settings, self.remote = run_in_thread, settings, remote
        self.federation_allowed, self.scanner, self.providers = federation_allowed, scanner, tuple(providers)
        self._uploaded_waiters: dict[str, list[defer.Deferred]] = {}
        self._fetching: dict[tuple[str, str], list[defer.Deferred]] = {}  # the requests awaiting each fetch
        self._touched: dict[tuple[str | None, str], int] = {}
        self._download_limit = download_limit

    @property
    def max_upload_size(self) -> int:
        return self.settings.max_upload_size

    def now(self) -> int:
        return int(self.clock.seconds() * 1000)

    def new_spool(self) -> Spool:
        return self.files.spool()

    # -- upload ------------------------------------------------------------------------------------------

    async def upload(self, user_id: str, spool: Spool, content_type: str | None, file_name: str | None) -> str:
        """``POST /_matrix/media/v3/upload``: the new file's ``mxc://`` URI."""
        name, media_type = self._check_upload(spool, content_type, file_name)
        await self._check_quota(user_id, spool.size)
        media_id = random_string(MEDIA_ID_LENGTH)
        await self._admit(spool, who=user_id, name=name)
        await self._keep(spool, self.files.local_path(media_id))
        await self.store.store_local(media_id, user_id, self.now(), media_type, name, spool.size, spool.sha256,
                                     self.settings.authenticated_media)
        await self._after_stored(None, media_id, media_type)
        return mxc(self.server_name, media_id)

    async def local_image_size(self, media_id: str) -> tuple[int, int] | None:
        """(width, height) of a local image, read from its header on the media thread pool; None otherwise."""
        return await self.run_in_thread(dimensions, self.files.local_path(media_id))

    async def create(self, user_id: str) -> dict:
        """``POST /_matrix/media/v1/create``: reserve an ID to upload to later (spec "asynchronous upload")."""
        now = self.now()
        media_id = random_string(MEDIA_ID_LENGTH)
        expires = now + self.settings.unused_expiration_ms
        if not await self.store.create_local(media_id, user_id, now, expires, self.settings.authenticated_media,
                                             self.settings.max_pending_uploads):
            raise MatrixError(429, "M_LIMIT_EXCEEDED", "Too many pending media uploads",
                              retry_after_ms=self.settings.unused_expiration_ms)
        return {"content_uri": mxc(self.server_name, media_id), "unused_expires_at": expires}

    async def upload_to(self, user_id: str, server_name: str, media_id: str, spool: Spool,
                        content_type: str | None, file_name: str | None) -> None:
        """``PUT /_matrix/media/v3/upload/{serverName}/{mediaId}``: the content of a reserved ID."""
        if server_name != self.server_name or not valid_media_id(media_id):
            raise not_found("Unknown media ID")
        row = await self.store.get_local(media_id)
        if row is None or (not row.uploaded and row.expires_ts is not None and row.expires_ts <= self.now()):
            raise not_found("Unknown media ID")
        if row.user_id != user_id:
            raise forbidden("This media ID was created by another user")
        if row.uploaded:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content")
        name, media_type = self._check_upload(spool, content_type, file_name)
        await self._check_quota(user_id, spool.size)
        await self._admit(spool, who=user_id, name=name)
        # Written beside its final path first: the row, not the file, decides which upload won.
        staged = self.files.local_path(media_id) + f".{random_string(8)}"
        await self._keep(spool, staged)
        if not await self.store.fill_local(media_id, self.now(), media_type, name, spool.size, spool.sha256):
            os.unlink(staged)
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content")
        os.replace(staged, self.files.local_path(media_id))
        for waiter in self._uploaded_waiters.pop(media_id, []):
            waiter.callback(None)
        await self._after_stored(None, media_id, media_type)

    def _check_upload(self, spool: Spool, content_type: str | None, file_name: str | None) -> tuple[str | None, str]:
        if spool.error is not None:
            logger.error("Could not store an upload: %s", spool.error)
            raise MatrixError(507, "M_UNKNOWN", "The server could not store the file")
        if spool.size > self.max_upload_size:  # the listener refuses earlier; this holds whatever the route says
            raise MatrixError(413, "M_TOO_LARGE", f"Upload is over the {self.max_upload_size} bytes limit")
        try:
            name = rules.check_file_name(file_name)
        except rules.BadFileName as e:
            raise MatrixError(400, "M_INVALID_PARAM", str(e)) from None
        return name, rules.content_type_of(content_type)

    async def _check_quota(self, user_id: str, size: int) -> None:
        now = self.now()
        used = {}
        for limit in self.settings.upload_limits:
            used[limit] = await self.store.uploaded_since(user_id, now - limit.time_period_ms)
        broken = rules.quota_exceeded(self.settings.upload_limits, used.__getitem__, size)
        if broken is not None:
            raise MatrixError(400, "M_RESOURCE_LIMIT_EXCEEDED", "Upload would exceed your media upload limit",
                              limit_type="media_upload")

    async def _admit(self, spool: Spool, *, who: str, name: str | None, remote: bool = False) -> None:
        """The content scanner's verdict on a complete file (remembered by sha256): refused if infected (403 for
        an upload, 404 for a remote file: it does not exist here), or if the scanner cannot answer while
        ``fail_closed``."""
        if self.scanner is None:
            return
        sha256 = spool.sha256
        verdict = await self.store.scan_verdict(sha256)
        if verdict is None:
            await self.run_in_thread(spool.flush)
            try:
                result = await self.scanner.scan_file(spool.path)
            except Exception as e:
                logger.warning("Content scanner unavailable for a file of %s (%s): %s", who, name, e)
                if self.settings.scan_fail_closed:
                    raise MatrixError(503, "M_UNKNOWN", "The content scanner is unavailable; try again later")
                return
            verdict = (result.clean, result.signature)
            await self.store.remember_verdict(sha256, result.clean, result.signature, self.now())
        if not verdict[0]:
            logger.warning("Refused an infected file (%s) from %s, name %r", verdict[1], who, name)
            if remote:
                raise not_found("Remote media refused by the content scanner")
            raise MatrixError(403, "M_FORBIDDEN", f"File refused by the content scanner: {verdict[1]}")

    async def _keep(self, spool: Spool, dest: str) -> None:
        await self.run_in_thread(spool.keep, dest)  # flush, then os.replace: off the reactor thread

    async def _after_stored(self, server_name: str | None, media_id: str, media_type: str) -> None:
        """Copies to storage providers, then the configured thumbnails of an image."""
        path = self.files.path_of(server_name, media_id)
        for entry in self.providers:
            if not (entry.store_local if server_name is None else entry.store_remote):
                continue
            stored = entry.provider.store_file(self.files.provider_key(server_name, media_id), path)
            if entry.store_synchronous:
                await stored
            else:
                defer.ensureDeferred(stored).addErrback(
                    lambda f: logger.error("Storage provider failed to store %s: %s", media_id, f.getErrorMessage()))
        if rules.essence(media_type) in rules.THUMBNAIL_SOURCE_TYPES:
            for size in self.settings.thumbnail_sizes:
                try:
                    await self._make_thumbnail(server_name, media_id, path, size.width, size.height, size.method)
                except NotThumbnailable as e:
                    logger.info("No thumbnails for %s: %s", media_id, e)
                    break
                except Exception:  # the file is stored: a thumbnail is made again when asked
                    logger.exception("Thumbnail %dx%d of %s failed", size.width, size.height, media_id)
                    break

    # -- download ----------------------------------------------------------------------------------------

    async def media(self, server_name: str, media_id: str, *, legacy: bool, allow_remote: bool = True,
                    timeout_ms: int = 20_000, client_ip: str | None = None) -> Media:
        """A file to serve to a client (spec "GET /_matrix/client/v1/media/download"), fetched from its
        origin server when remote and not cached. ``legacy``: asked on the frozen ``/_matrix/media/v3``."""
        if not valid_server_name(server_name) or not valid_media_id(media_id):
            raise not_found("Unknown media ID")
        if server_name == self.server_name:
            row = await self._local_row(media_id, legacy, timeout_ms)
            return await self._local_media(row)
        remote = await self._remote_row(server_name, media_id, legacy, allow_remote, timeout_ms, client_ip)
        return await self._serve(server_name, media_id, remote.media_type, remote.upload_name, remote.media_length)

    async def local_for_federation(self, media_id: str, timeout_ms: int = 20_000) -> Media:
        """Local media asked by another server (server-server "GET /_matrix/federation/v1/media/download")."""
        if not valid_media_id(media_id):
            raise not_found("Unknown media ID")
        return await self._local_media(await self._local_row(media_id, legacy=False, timeout_ms=timeout_ms))

    async def _local_media(self, row: LocalMedia) -> Media:
        return await self._serve(None, row.media_id, row.media_type, row.upload_name, row.media_length)

    async def _serve(self, server_name: str | None, media_id: str, media_type: str | None, name: str | None,
                     length: int | None) -> Media:
        path = self.files.path_of(server_name, media_id)
        if not os.path.exists(path) and not await self._from_providers(server_name, media_id, path):
            raise not_found("Media file is missing")
        self._touch(server_name, media_id)
        return Media(path, media_type or rules.DEFAULT_CONTENT_TYPE, name, length or 0)

    async def _local_row(self, media_id: str, legacy: bool, timeout_ms: int) -> LocalMedia:
        row = await self.store.get_local(media_id)
        if row is None or row.quarantined_by is not None:
            raise not_found("Unknown media ID")
        if legacy and row.authenticated and self.settings.authenticated_media:
            raise not_found("This media is only served on the authenticated endpoints")
        if row.uploaded:
            return row
        if row.expires_ts is not None and row.expires_ts <= self.now():
            raise not_found("Unknown media ID")
        waiter: defer.Deferred = defer.Deferred()
        self._uploaded_waiters.setdefault(media_id, []).append(waiter)
        waiter.addTimeout(min(timeout_ms, MAX_TIMEOUT_MS) / 1000, self.clock)
        try:
            # Read again once registered: an upload committed since the first read woke nobody.
            again = await self.store.get_local(media_id)
            if again is not None and again.uploaded:
                return again
            await waiter
        except defer.TimeoutError:
            raise MatrixError(504, "M_NOT_YET_UPLOADED", "The media has not been uploaded yet") from None
        finally:
            waiters = self._uploaded_waiters.get(media_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._uploaded_waiters.pop(media_id, None)
            if not waiter.called:
                waiter.addErrback(lambda f: f.trap(defer.CancelledError))
                waiter.cancel()
        row = await self.store.get_local(media_id)
        if row is None or not row.uploaded:
            raise not_found("Unknown media ID")
        return row

    async def _remote_row(self, server_name: str, media_id: str, legacy: bool, allow_remote: bool,
                          timeout_ms: int, client_ip: str | None) -> RemoteMedia:
        row = await self.store.get_remote(server_name, media_id)
        if row is not None:
            if row.quarantined_by is not None or (legacy and row.authenticated and self.settings.authenticated_media):
                raise not_found("Unknown media ID")
            return row
        if not allow_remote or (legacy and self.settings.authenticated_media) or self.remote is None:
            raise not_found("Unknown media ID")
        if not self.federation_allowed(server_name):
            raise forbidden(f"Federation with {server_name} is not allowed")
        if self._download_limit is not None and client_ip is not None:
            self._download_limit.check(client_ip, update=False)  # 429 while this client's bucket is full
        key = (server_name, media_id)
        waiter: defer.Deferred = defer.Deferred()
        if key in self._fetching:  # one fetch per file, its outcome handed to every request waiting for it
            self._fetching[key].append(waiter)
            return await waiter
        waiters = self._fetching[key] = [waiter]

        def done(result):
            del self._fetching[key]
            for each in waiters:
                (each.errback if isinstance(result, Failure) else each.callback)(result)

        defer.ensureDeferred(self._fetch_remote(server_name, media_id, timeout_ms)).addBoth(done)
        row = await waiter
        if self._download_limit is not None and client_ip is not None:
            self._download_limit.charge(client_ip, row.media_length or 0)  # the fetch this client started
        return row

    async def _fetch_remote(self, server_name: str, media_id: str, timeout_ms: int) -> RemoteMedia:
        spool = self.files.spool()
        try:
            try:
                media_type, name = await self.remote.download(server_name, media_id, spool, self.max_upload_size,
                                                              min(timeout_ms, MAX_TIMEOUT_MS))
            except RemoteMediaError as e:
                raise MatrixError(e.status, e.errcode, str(e)) from None
            if spool.error is not None:
                logger.error("Could not store remote media %s/%s: %s", server_name, media_id, spool.error)
                raise MatrixError(502, "M_UNKNOWN", "The server could not store the remote file")
            try:
                name = rules.check_file_name(name)
            except rules.BadFileName:
                name = None
            await self._admit(spool, who=server_name, name=name, remote=True)
            await self._keep(spool, self.files.remote_path(server_name, media_id))
        finally:
            spool.discard()
        row = RemoteMedia(server_name, media_id, rules.content_type_of(media_type), name, spool.size, spool.sha256,
                          self.now(), None, self.settings.authenticated_media)
        await self.store.store_remote(row)
        await self._after_stored(server_name, media_id, row.media_type)
        return row

    async def _from_providers(self, server_name: str | None, media_id: str, path: str) -> bool:
        """A file missing from the filesystem, fetched back from the first provider holding it."""
        for entry in self.providers:
            spool = self.files.spool()
            try:
                await self.run_in_thread(spool.flush)
                if await entry.provider.fetch_file(self.files.provider_key(server_name, media_id), spool.path):
                    await self.run_in_thread(spool.keep, path)
                    return True
            finally:
                spool.discard()
        return False

    def _touch(self, server_name: str | None, media_id: str) -> None:
        now = self.now()
        key = (server_name, media_id)
        if now - self._touched.get(key, 0) < TOUCH_EVERY_MS:
            return
        self._touched[key] = now
        defer.ensureDeferred(self.store.touch(server_name, [media_id], now)).addErrback(
            lambda f: logger.warning("Could not record an access to %s: %s", media_id, f.getErrorMessage()))

    # -- thumbnails --------------------------------------------------------------------------------------

    async def thumbnail(self, server_name: str, media_id: str, width: int, height: int, method: str,
                        animated: bool = False, *, legacy: bool, allow_remote: bool = True, timeout_ms: int = 20_000,
                        for_federation: bool = False, client_ip: str | None = None) -> Media:
        """A thumbnail of at least width x height if the image is that large (spec "Thumbnails"): the nearest
        pre-generated one, or one of the exact size with ``dynamic_thumbnails``. ``animated`` (spec v1.11+): an
        animated GIF or WebP keeps its animation (made on first request, never pre-generated); otherwise, and
        for any other image, the static thumbnail."""
        if width < 1 or height < 1 or method not in ("crop", "scale"):
            raise MatrixError(400, "M_INVALID_PARAM", "width and height must be positive; method crop or scale")
        source = (await self.local_for_federation(media_id, timeout_ms) if for_federation else
                  await self.media(server_name, media_id, legacy=legacy, allow_remote=allow_remote,
                                   timeout_ms=timeout_ms, client_ip=client_ip))
        origin = None if for_federation or server_name == self.server_name else server_name
        if rules.essence(source.media_type) not in rules.THUMBNAIL_SOURCE_TYPES:
            raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for this media type")
        if self.settings.dynamic_thumbnails:
            want = (width, height, method)
        else:
            want = rules.choose_thumbnail([(s.width, s.height, s.method) for s in self.settings.thumbnail_sizes],
                                          width, height, method)
            if want is None:
                raise MatrixError(400, "M_UNKNOWN", "No thumbnail sizes are configured")
        animated = animated and rules.essence(source.media_type) in rules.ANIMATED_SOURCE_TYPES
        stored = [t for t in await self.store.thumbnails(origin, media_id)
                  if (t.width, t.height, t.method) == want
                  and os.path.exists(self._thumbnail_path(origin, media_id, t))]
        # An animated thumbnail if asked and there is one; a static one if not asked (a static one for an
        # animated request is made again: only rendering tells whether the source is animated).
        for thumb in stored:
            if (thumb.media_type in rules.ANIMATED_SOURCE_TYPES) == animated:
                return Media(self._thumbnail_path(origin, media_id, thumb), thumb.media_type, None,
                             thumb.media_length)
        try:
            thumb = await self._make_thumbnail(origin, media_id, source.path, *want, animated=animated)
        except NotThumbnailable as e:
            raise MatrixError(400, "M_UNKNOWN", f"Cannot generate a thumbnail: {e}") from None
        return Media(self._thumbnail_path(origin, media_id, thumb), thumb.media_type, None, thumb.media_length)

    def _thumbnail_path(self, server_name: str | None, media_id: str, thumb: Thumbnail) -> str:
        return os.path.join(self.files.thumbnail_dir(server_name, media_id),
                            thumbnail_name(thumb.width, thumb.height, thumb.media_type, thumb.method))

    async def _make_thumbnail(self, server_name: str | None, media_id: str, source: str, width: int, height: int,
                              method: str, animated: bool = False) -> Thumbnail:
        directory = self.files.thumbnail_dir(server_name, media_id)
        tmp, rendered = await self.run_in_thread(render, source, directory, width, height, method,
                                                 self.settings.max_image_pixels, animated)
        thumb = Thumbnail(width, height, method, rendered.media_type, rendered.length)
        name = thumbnail_name(width, height, rendered.media_type, method)
        os.replace(tmp, self._thumbnail_path(server_name, media_id, thumb))
        await self.store.add_thumbnail(server_name, media_id, thumb)
        for entry in self.providers:
            if entry.store_local if server_name is None else entry.store_remote:
                await entry.provider.store_file(self.files.provider_key(server_name, media_id, name),
                                                os.path.join(directory, name))
        return thumb

    # -- administration (Synapse admin API) and retention ------------------------------------------------

    async def room_media(self, room_id: str) -> tuple[list[str], list[str]]:
        """The ``mxc://`` URIs a room's events point at (``url``, ``info.thumbnail_url``, encrypted ``file.url``),
        local ones then remote ones (Synapse admin API "List all media in a room")."""
        local, remote = [], []
        position = 0
        while True:
            events = await self.events.room_events_between(room_id, position, 2 ** 62, ROOM_SCAN_PAGE,
                                                           backwards=False)
            for event in events:
                for uri in mxc_uris(event.pdu.get("content")):
                    (local if parse_mxc(uri)[0] == self.server_name else remote).append(uri)
            if len(events) < ROOM_SCAN_PAGE:
                return list(dict.fromkeys(local)), list(dict.fromkeys(remote))
            position = events[-1].stream_ordering

    async def on_events_purged(self, room_id: str, pdus: list[dict]) -> None:
        """Retention hook (``m.room.retention``, admin purge history): the local media the purged events
        pointed at go with them."""
        parsed = (parse_mxc(uri) for pdu in pdus for uri in mxc_uris(pdu.get("content")))
        local = [p[1] for p in parsed if p is not None and p[0] == self.server_name]
        if local:
            deleted = await self.delete_local(list(dict.fromkeys(local)))
            logger.info("Deleted %d media of events purged from %s", len(deleted), room_id)

    async def quarantine_room(self, room_id: str, by: str) -> int:
        local, remote = await self.room_media(room_id)
        return await self.quarantine([parse_mxc(uri) for uri in local + remote], by)

    async def quarantine(self, items: list[tuple[str, str]], by: str | None) -> int:
        """Quarantine (``by`` an admin) or release (``by`` None) media given as (server, id); how many changed."""
        return await self.store.quarantine(
            [(None if server == self.server_name else server, media_id) for server, media_id in items], by)

    async def delete_local(self, media_ids: list[str]) -> list[str]:
        """Delete local media, files, thumbnails and provider copies; the IDs that existed."""
        deleted = []
        for media_id in media_ids:
            if valid_media_id(media_id) and await self.store.get_local(media_id) is not None:
                deleted.append(media_id)
        await self.store.delete_local(deleted)
        for media_id in deleted:
            await self._remove_files(None, media_id)
        return deleted

    async def delete_local_before(self, before_ts: int, size_gt: int = 0, keep_profiles: bool = True) -> list[str]:
        """Local media not accessed since ``before_ts`` (and over ``size_gt`` bytes); users' avatars kept
        unless ``keep_profiles`` is false (Synapse's admin API and retention)."""
        return await self.delete_local(await self.store.local_before(
            before_ts, size_gt, self.server_name if keep_profiles else None))

    async def purge_remote_before(self, before_ts: int) -> int:
        """Drop cached remote media not accessed since ``before_ts`` (fetched again when asked)."""
        keys = await self.store.remote_before(before_ts)
        await self.store.delete_remote(keys)
        for server_name, media_id in keys:
            await self._remove_files(server_name, media_id)
        return len(keys)

    async def _remove_files(self, server_name: str | None, media_id: str) -> None:
        thumbs = os.listdir(self.files.thumbnail_dir(server_name, media_id)) \
            if os.path.isdir(self.files.thumbnail_dir(server_name, media_id)) else []
        await self.run_in_thread(self.files.remove, server_name, media_id)
        self._touched.pop((server_name, media_id), None)
        for entry in self.providers:
            await entry.provider.delete(self.files.provider_key(server_name, media_id))
            for name in thumbs:
                await entry.provider.delete(self.files.provider_key(server_name, media_id, name))

    async def user_media(self, user_id: str, start: int, limit: int, order_by: str, descending: bool
                         ) -> tuple[list[LocalMedia], int]:
        return await self.store.user_media(user_id, start, limit, order_by, descending)

    async def usage_by_user(self, **query) -> tuple[list[tuple[str, str | None, int, int]], int]:
        return await self.store.usage_by_user(**query)

    async def apply_retention(self) -> int:
        """``media_retention``: one pass of the background job (and expired ``/create`` reservations); how many
        files were deleted or dropped from the cache."""
        now = self.now()
        await self.store.delete_local(await self.store.expired_reservations(now))
        handled = 0
        if self.settings.retention.local_media_lifetime_ms is not None:
            deleted = await self.delete_local_before(now - self.settings.retention.local_media_lifetime_ms)
            if deleted:
                logger.info("media_retention: deleted %d local files", len(deleted))
            handled += len(deleted)
        if self.settings.retention.remote_media_lifetime_ms is not None:
            purged = await self.purge_remote_before(now - self.settings.retention.remote_media_lifetime_ms)
            if purged:
                logger.info("media_retention: purged %d cached remote files", purged)
            handled += purged
        return handled


"""The filesystem media store under ``media_store_path``: always the primary copy, and the cache of remote media.

What it guarantees:
- A file is servable only once complete: bytes arrive in ``<media_store_path>/tmp/`` (a :class:`Spool`, hashed
  and counted on the way, on the reactor thread while each chunk is still in the CPU's cache: handing them to
  worker threads cost a third more CPU per upload, measured), and are moved to their sharded path with
  ``os.replace`` (atomic on one filesystem) once all of them are written; the caller commits the file's row only
  after that. A crash of the process leaves at most a file in ``tmp/``, which is never served and is swept at
  start.
- Durability as Synapse's: the file is not ``fsync``-ed before the upload is answered (the kernel writes it back
  within its dirty-page expiry, 30 s by default), so a power loss in that window can lose the bytes of an
  answered upload, as with Synapse. On a shared disk one ``fsync`` per upload cost more than the rest of the
  upload together (it waits for every dirty page of the filesystem's journal transaction).
- Paths are built only from validated media IDs and server names (no separator, no dot-name), so no request
  can name a file outside the store.
- Layout (Synapse's, so an admin finds their way): ``local_content/ab/cd/<rest>``,
  ``remote_content/<server>/ab/cd/<rest>``, thumbnails beside them under ``local_thumbnails`` and
  ``remote_thumbnail``, one file per ``<width>-<height>-<type>-<subtype>-<method>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from typing import BinaryIO

_MEDIA_ID = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9\-\[\]:][A-Za-z0-9.\-\[\]:]{0,254}$")


def valid_media_id(media_id: str) -> bool:
    """Spec "Matrix Content (mxc://) URIs": a media ID is ``[A-Za-z0-9_-]+``."""
    return bool(_MEDIA_ID.match(media_id))


def valid_server_name(server_name: str) -> bool:
    """A server name usable as a directory name (host, IP literal, port; never ``.`` or ``..``)."""
    return bool(_SERVER_NAME.match(server_name))


def _shard(media_id: str) -> tuple[str, str, str]:
    return media_id[0:2], media_id[2:4], media_id[4:] or "_"


def thumbnail_name(width: int, height: int, media_type: str, method: str) -> str:
    top, _, sub = media_type.partition("/")
    return f"{width}-{height}-{top}-{sub}-{method}"


class Spool:
    """A file being received under ``tmp/``: written as bytes arrive, hashed (sha256) and counted on the way.

    ``keep(dest)`` moves it into place atomically; ``discard()`` removes it unless kept (safe to call twice).
    Twisted writes a request body to it through ``write``; reading it back goes through ``path``."""

    def __init__(self, directory: str):
        fd, self.path = tempfile.mkstemp(dir=directory, prefix="in-")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.done = False  # kept or discarded
        self.error: OSError | None = None  # why the bytes could not be written

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.error is not None:
            return
        self._hash.update(data)
        try:
            self._file.write(data)
        except OSError as e:  # e.g. a full disk: the rest is counted and dropped, the upload refused
            self.error = e
            self.discard()

    def tell(self) -> int:
        return self.size

    def seek(self, *_args) -> None:
        """Twisted rewinds a request body once received; the spool is read back by path instead."""

    def read(self, *_args) -> bytes:
        """Twisted would parse a form-encoded POST body: a spooled body is never parsed, only stored."""
        return b""

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def flush(self) -> None:
        """Hand the last bytes to the kernel and close the file (before it is scanned or moved into place)."""
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def keep(self, dest: str) -> None:
        """Move the complete file to ``dest``."""
        self.flush()
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(self.path, dest)
        self.done = True

    def discard(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self._file.close()
        except OSError:  # what was buffered could not be written either (full disk): removed anyway
            pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    close = discard  # what Twisted calls once a request is over: a body nobody kept is removed


class FileStore:
    """Paths and atomic moves under ``media_store_path``."""

    def __init__(self, root: str):
        self.root = root
        self.tmp = os.path.join(root, "tmp")

    def prepare(self) -> None:
        """Create the store; drop what a crash left half-received in ``tmp/`` (never servable)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp, exist_ok=True)

    def spool(self) -> Spool:
        return Spool(self.tmp)

    def local_path(self, media_id: str) -> str:
        return os.path.join(self.root, "local_content", *_shard(media_id))

    def remote_path(self, server_name: str, media_id: str) -> str:
        return os.path.join(self.root, "remote_content", server_name, *_shard(media_id))

    def thumbnail_dir(self, server_name: str | None, media_id: str) -> str:
        if server_name is None:
            return os.path.join(self.root, "local_thumbnails", *_shard(media_id))
        return os.path.join(self.root, "remote_thumbnail", server_name, *_shard(media_id))

    def path_of(self, server_name: str | None, media_id: str) -> str:
        """The content of local media (``server_name`` None) or of cached remote media."""
        return self.local_path(media_id) if server_name is None else self.remote_path(server_name, media_id)

    def provider_key(self, server_name: str | None, media_id: str, thumbnail: str | None = None) -> str:
        """The object key of a file in a storage provider: its path relative to the store."""
        path = (self.path_of(server_name, media_id) if thumbnail is None
                else os.path.join(self.thumbnail_dir(server_name, media_id), thumbnail))
        return os.path.relpath(path, self.root)

    def remove(self, server_name: str | None, media_id: str) -> None:
        """Delete a file and its thumbnails (missing ones are fine)."""
        try:
            os.unlink(self.path_of(server_name, media_id))
        except FileNotFoundError:
            pass
        shutil.rmtree(self.thumbnail_dir(server_name, media_id), ignore_errors=True)

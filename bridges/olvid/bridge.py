"""The Olvid bridge: one Olvid bot identity (held by an Olvid daemon) and its discussions, bridged to
portal rooms through the unmodified ``OlvidClient`` of the ``olvid-bot`` package.

Notifications: each notification stream is held by a child ``OlvidClient`` whose listener enqueues
what arrives (in arrival order) for one worker. The library does not resubscribe a stream that ended
(the daemon went away): a supervisor per stream does, with backoff, and reports the connection state.
Nothing is lost in between: on every (re)connection, and every ``resync_interval_s``, the worker
lists the daemon's messages since the catch-up cursor and bridges those not bridged yet, at their
original timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from functools import partial
from typing import Any, Callable

import grpc
from olvid import OlvidClient, datatypes, listeners

from bridges.config import BridgeConfig, BridgeConfigError
from bridges.connector import DeliveryError, IncomingFile, OutgoingMessage, RemoteChat, RemoteUser
from bridges.store import Portal

logger = logging.getLogger(__name__)

CURSOR = "olvid.catch_up_ts"
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 10.0
PERMANENT_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                   grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)


def message_id(text: str) -> datatypes.MessageId:
    """The MessageId that ``str(MessageId)`` printed (``I12`` inbound, ``O5`` outbound)."""
    kind = datatypes.MessageId.Type.TYPE_INBOUND if text[:1] == "I" else datatypes.MessageId.Type.TYPE_OUTBOUND
    return datatypes.MessageId(type=kind, id=int(text[1:]))


def tls_configuration(tls: dict) -> Any:
    """``olvid.tls`` -> the client library's TLS configuration (None: the library's own defaults and
    environment variables apply)."""
    if not tls:
        return None
    if "server_certificate" in tls:
        return OlvidClient.GrpcSimpleTlsConfiguration(tls["server_certificate"])
    keys = ("root_certificate", "certificate_chain", "private_key")
    if all(k in tls for k in keys):
        return OlvidClient.GrpcMutualAuthTlsConfiguration(*(tls[k] for k in keys))
    raise BridgeConfigError(f"olvid.tls: give server_certificate, or all of {', '.join(keys)}")


def make_connector(config: BridgeConfig) -> "OlvidConnector":
    return OlvidConnector(config)


class OlvidConnector:
    network_id = "olvid"
    network_name = "Olvid"
    commands = {"list": "the identity's discussions and their ids (for bridge <id>)"}

    def __init__(self, config: BridgeConfig):
        section = config.network
        self._client_key = section.get("client_key") or None  # None: OLVID_CLIENT_KEY, as the library reads it
        self._daemon_url = section.get("daemon_url") or None  # None: OLVID_DAEMON_URL or the library's default
        self._tls = tls_configuration(section.get("tls") or {})
        self._window_ms = int(section.get("catch_up_window_s", 86400)) * 1000
        self._resync_s = float(section.get("resync_interval_s", 60))
        self._client: OlvidClient | None = None
        self._core = None
        self._queue: asyncio.Queue = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._streams_up: dict[str, bool] = {}
        self._state = {"state_event": "CONNECTING", "message": "starting"}
        self._own_actions: set[tuple[str, str]] = set()  # our own deletions, echoed by the daemon
        self._avatar_keys: dict[str, str] = {}

    # -- lifecycle and supervision ------------------------------------------------------------
    async def start(self, core) -> None:
        self._core = core
        try:
            self._client = OlvidClient(client_key=self._client_key, daemon_url=self._daemon_url,
                                       tls_configuration=self._tls)
        except ValueError as e:
            raise BridgeConfigError(f"olvid.client_key: {e} (set it, or OLVID_CLIENT_KEY)") from None
        streams = self._streams()
        self._streams_up = dict.fromkeys(streams, False)
        self._tasks = [asyncio.create_task(self._worker())]
        self._tasks += [asyncio.create_task(self._supervise(name, make)) for name, make in streams.items()]
        self._tasks.append(asyncio.create_task(self._periodic_catch_up()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None and not self._client._stopped:
            await self._client.stop()

    def connection_state(self) -> dict:
        return dict(self._state)

    def _streams(self) -> dict[str, Callable[[], Any]]:
        put = self._queue.put_nowait  # called synchronously, in the order the daemon sent them
        return {
            "message_received": lambda: listeners.MessageReceivedListener(lambda m: put(("message", m))),
            "message_body_updated": lambda: listeners.MessageBodyUpdatedListener(lambda m, _p: put(("edit", m))),
            "message_deleted": lambda: listeners.MessageDeletedListener(lambda m: put(("delete", m))),
            "reaction_added": lambda: listeners.MessageReactionAddedListener(
                lambda m, r: put(("reaction", m, r, r.reaction))),
            "reaction_updated": lambda: listeners.MessageReactionUpdatedListener(
                lambda m, r, _p: put(("reaction", m, r, r.reaction))),
            "reaction_removed": lambda: listeners.MessageReactionRemovedListener(
                lambda m, r: put(("reaction", m, r, ""))),
            "message_delivered": lambda: listeners.MessageDeliveredListener(lambda m: put(("delivered", m))),
            "message_read": lambda: listeners.MessageReadListener(lambda m: put(("read", m))),
            "title_updated": lambda: listeners.DiscussionTitleUpdatedListener(lambda d, _p: put(("title", d))),
            "member_joined": lambda: listeners.GroupMemberJoinedListener(lambda g, m: put(("member", g, m, True))),
            "member_left": lambda: listeners.GroupMemberLeftListener(lambda g, m: put(("member", g, m, False))),
            # an attachment downloaded after its message arrived: the message is bridged (again) now
            "attachment_received": lambda: listeners.AttachmentReceivedListener(lambda a: put(("attachment", a))),
            "contact_details": lambda: listeners.ContactDetailsUpdatedListener(lambda c, _p: put(("contact", c))),
            "contact_photo": lambda: listeners.ContactPhotoUpdatedListener(lambda c: put(("contact", c))),
        }

    async def _supervise(self, name: str, make_listener: Callable[[], Any]) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            child = OlvidClient(parent_client=self._client)
            child.add_listener(make_listener())
            try:
                await child.ping()
            except grpc.aio.AioRpcError as e:
                await child.stop()
                self._stream_down(name, f"{e.code().name}: {e.details()}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_MIN_S
            self._stream_up(name)
            await child.wait_for_listeners_end()
            await child.stop()
            self._stream_down(name, "notification stream ended")

    def _stream_up(self, name: str) -> None:
        self._streams_up[name] = True
        if all(self._streams_up.values()) and self._state["state_event"] != "CONNECTED":
            self._state = {"state_event": "CONNECTED", "message": ""}
            logger.info("Olvid daemon connected; catching up")
            self._queue.put_nowait(("catch_up",))

    def _stream_down(self, name: str, why: str) -> None:
        self._streams_up[name] = False
        if self._state["state_event"] == "CONNECTED":
            logger.warning("Olvid daemon connection lost (%s): %s", name, why)
        self._state = {"state_event": "TRANSIENT_DISCONNECT", "message": why}

    async def _periodic_catch_up(self) -> None:
        while True:
            await asyncio.sleep(self._resync_s)
            if self._state["state_event"] == "CONNECTED":
                self._queue.put_nowait(("catch_up",))

    # -- Olvid -> Matrix ----------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._handle(item)
            except grpc.aio.AioRpcError as e:
                logger.warning("Olvid %s not bridged yet (%s); the next catch-up retries it", item[0], e.code().name)
            except Exception:
                logger.exception("Olvid %s not bridged", item[0])

    async def _handle(self, item: tuple) -> None:
        kind, core = item[0], self._core
        if kind == "message":
            await self._bridge_message(item[1])
        elif kind == "attachment":
            if not await core.is_bridged(str(item[1].message_id)):
                await self._bridge_message(await self._client.message_get(item[1].message_id))
        elif kind == "catch_up":
            await self._catch_up()
        elif kind == "edit":
            m = item[1]
            if m.is_inbound():  # an outbound message is edited from Matrix only
                await core.remote_edit(str(m.id), str(m.sender_id), m.body, int(time.time() * 1000))
        elif kind == "delete":
            if ("delete", str(item[1].id)) in self._own_actions:
                self._own_actions.discard(("delete", str(item[1].id)))
            else:
                await core.remote_delete(str(item[1].id))
        elif kind == "reaction":
            _, m, reaction, key = item
            if reaction.contact_id:  # 0: the bot identity's own reaction, set from Matrix
                await core.remote_reaction(str(m.id), str(reaction.contact_id), key, reaction.timestamp or
                                           int(time.time() * 1000))
        elif kind in ("delivered", "read"):
            discussion = await self._client.discussion_get(item[1].discussion_id)
            if discussion.contact_id:  # a group's receipts do not say by whom
                receipt = core.remote_receipt if kind == "read" else core.remote_delivered
                await receipt(str(item[1].id), str(discussion.contact_id))
        elif kind == "title":
            await core.remote_title(str(item[1].id), item[1].title)
        elif kind == "member":
            _, group, member, joined = item
            discussion = await self._client.discussion_get_by_group(group.id)
            portal = await core.portal_for(str(discussion.id), create=False)
            if portal and joined:
                await core.ghost_in_room(portal, str(member.contact_id))
            elif portal:
                await core.ghost_left(str(discussion.id), str(member.contact_id))
        elif kind == "contact":
            self._avatar_keys.pop(str(item[1].id), None)
            await core.ensure_ghost(str(item[1].id), refresh=True)

    async def _bridge_message(self, m: datatypes.Message) -> None:
        mid = str(m.id)
        if await self._core.is_bridged(mid):
            return
        files = []
        if m.attachments_count:
            async for a in self._client.attachment_message_list(m.id):
                files.append(IncomingFile(a.file_name or "file", a.mime_type or "application/octet-stream",
                                          a.size, partial(self._client.attachment_download, a.id)))
        reply = m.replied_message_id
        await self._core.remote_message(str(m.discussion_id), mid, str(m.sender_id) if m.sender_id else None,
                                        m.body, m.timestamp, reply_to=str(reply) if reply and reply.id else None,
                                        files=files)

    async def _catch_up(self) -> int:
        """Bridge every inbound message since the cursor not bridged yet, oldest first; then move the
        cursor to the newest timestamp below which everything is bridged."""
        stored = await self._core.store.cursor(CURSOR)
        since = int(stored) if stored else int(time.time() * 1000) - self._window_ms
        found = [m async for m in self._client.message_list(datatypes.MessageFilter(
            type=datatypes.MessageId.Type.TYPE_INBOUND, min_timestamp=since))]
        found.sort(key=lambda m: (m.timestamp, m.id.id))
        newest, replayed, stuck = since, 0, False
        for m in found:
            if not await self._core.is_bridged(str(m.id)):
                try:
                    await self._bridge_message(m)
                    replayed += 1
                except Exception:  # one message never holds back the ones after it; the cursor waits for it
                    logger.exception("Olvid message %s not bridged; the next catch-up tries again", m.id)
                    stuck = True
            if not stuck:
                newest = m.timestamp
        await self._core.store.set_cursor(CURSOR, str(newest))
        if replayed:
            logger.info("Olvid catch-up: %d missed message(s) bridged", replayed)
        return replayed

    # -- what the core asks -------------------------------------------------------------------
    async def chat_info(self, chat_id: str) -> RemoteChat | None:
        d = await _lookup(self._client.discussion_get, chat_id)
        if d is None:
            return None
        if d.contact_id:
            members = [str(d.contact_id)]
        elif d.group_id:
            group = await self._client.group_get(d.group_id)
            members = [str(m.contact_id) for m in group.members]
        else:
            members = []
        return RemoteChat(str(d.id), d.title, members)

    async def user_info(self, user_id: str) -> RemoteUser | None:
        contact = await _lookup(self._client.contact_get, user_id)
        if contact is None:
            return None
        if not contact.has_a_photo:
            return RemoteUser(user_id, contact.display_name)
        if user_id not in self._avatar_keys:
            photo = await self._client.contact_download_photo(int(user_id))
            self._avatar_keys[user_id] = hashlib.sha256(photo).hexdigest()[:16]

        async def fetch() -> tuple[bytes, str]:
            return await self._client.contact_download_photo(int(user_id)), "image/jpeg"

        return RemoteUser(user_id, contact.display_name, self._avatar_keys[user_id], fetch)

    async def sync(self) -> str:
        replayed = await self._catch_up()
        return f"Olvid is {self._state['state_event']}; {replayed} missed message(s) bridged."

    async def run_command(self, name: str, args: list[str], portal: Portal | None, sender: str) -> str:
        """``list``: every discussion, with its id and whether it has a portal."""
        lines = []
        async for d in self._client.discussion_list():
            kind = "one-to-one" if d.contact_id else "group"
            bridged = " (bridged)" if await self._core.store.portal_by_remote(str(d.id)) else ""
            lines.append(f"{d.id}: {d.title} ({kind}){bridged}")
        return "Olvid discussions:\n" + "\n".join(lines) if lines else "No Olvid discussion."

    async def send_message(self, portal: Portal, message: OutgoingMessage) -> str:
        reply = message_id(message.reply_to) if message.reply_to else None
        with _delivery():
            if message.file:
                sent, _ = await self._client.message_send_with_attachments_files(
                    int(portal.remote_id), [message.file.path], body=message.text, reply_id=reply)
            else:
                sent = await self._client.message_send(int(portal.remote_id), message.text, reply_id=reply)
        return str(sent.id)

    async def edit_message(self, portal: Portal, remote_id: str, text: str) -> None:
        with _delivery():
            await self._client.message_update_body(message_id(remote_id), text)

    async def delete_message(self, portal: Portal, remote_id: str) -> None:
        self._own_actions.add(("delete", remote_id))
        with _delivery():
            await self._client.message_delete(message_id(remote_id), delete_everywhere=True)

    async def react(self, portal: Portal, remote_id: str, key: str) -> None:
        with _delivery():
            await self._client.message_react(message_id(remote_id), key)


async def _lookup(method, remote_id: str):
    """``method(int(remote_id))``, or None for an id that is not a number or that the daemon does not know."""
    if not remote_id.isdigit():
        return None
    try:
        return await method(int(remote_id))
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


@contextlib.contextmanager
def _delivery():
    """gRPC errors -> DeliveryError (permanent unless the daemon was unreachable)."""
    try:
        yield
    except grpc.aio.AioRpcError as e:
        raise DeliveryError(f"Olvid daemon: {e.code().name} {e.details() or ''}".strip(),
                            permanent=e.code() in PERMANENT_CODES) from None

"""The bridge framework: portals, ghosts, the bridge bot and its commands, relay mode, permissions,
bridge info and message status, over the appservice and client-server APIs only.

Matrix -> remote: transactions land in the store's inbox (``appservice.py``) and one worker handles
them in order; an event already mapped to a remote id is never sent twice. Remote -> Matrix: the
connector calls ``remote_*``; a remote id already mapped is never posted twice, and each send carries
a transaction id derived from the remote id, so a resend after a crash is deduplicated by the
homeserver too. Events from the bot and the ghosts are echoes and are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from collections import defaultdict

import aiohttp

from bridges import events as ev
from bridges.config import BridgeConfig, allows
from bridges.connector import Connector, DeliveryError, IncomingFile, OutgoingFile, OutgoingMessage
from bridges.matrix import MatrixClient, MatrixRequestError, q
from bridges.store import Portal, Store

logger = logging.getLogger(__name__)

BRIDGE_STATE_TYPES = ("m.bridge", "uk.half-shot.bridge")
STOP_GRACE_S = 15.0


class BridgeCore:
    def __init__(self, config: BridgeConfig, store: Store, matrix: MatrixClient, connector: Connector):
        self.config = config
        self.store = store
        self.matrix = matrix
        self.connector = connector
        self._inbox_wakeup = asyncio.Event()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._worker: asyncio.Task | None = None
        self._started = False
        self._synced_ghosts: set[str] = set()
        self._stopping = False
        self._sending = asyncio.Lock()  # held from a Matrix message's delivery until its mapping is written

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        delay = 0.5
        while True:  # the homeserver may start after the bridge
            try:
                await self._connect_homeserver()
                break
            except (MatrixRequestError, aiohttp.ClientError, asyncio.TimeoutError) as e:
                logger.warning("homeserver not usable yet (%s); trying again in %.0fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self._started = True
        self._worker = asyncio.create_task(self._inbox_worker())
        self._inbox_wakeup.set()  # what was acknowledged before a restart and not yet handled
        await self.connector.start(self)

    async def _connect_homeserver(self) -> None:
        await self.matrix.ensure_registered(self.config.bot_localpart)
        await self.matrix.whoami()
        if self.matrix.crypto is not None and not self.matrix.crypto.ready:
            await self.matrix.crypto.start()  # a homeserver that refuses it: the bridge runs without
        if self.config.bot_displayname:
            await self.matrix.set_displayname(self.config.bot_mxid, self.config.bot_displayname)
        try:  # spec: POST /_matrix/client/v1/appservice/{appserviceId}/ping (v1.7): can the homeserver reach us?
            answer = await self.matrix.request("POST", f"/_matrix/client/v1/appservice/{q(self.config.appservice_id)}"
                                                       "/ping", {"transaction_id": "startup"})
            logger.info("the homeserver reaches the bridge (%s ms)", answer.get("duration_ms"))
        except MatrixRequestError as e:
            logger.warning("the homeserver cannot reach the bridge at %s: %s", self.config.address, e)

    async def stop(self) -> None:
        """Let the event being handled finish (a message sent but not yet recorded would be sent
        again after the restart), then stop."""
        self._stopping = True
        self._inbox_wakeup.set()
        if self._worker:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._worker, STOP_GRACE_S)
        await self.connector.stop()
        if self.matrix.crypto is not None:
            await self.matrix.crypto.stop()

    async def webhook(self, body: bytes, signature: str) -> bool:
        """A product's signed webhook call, for connectors that take one (``on_webhook``)."""
        take = getattr(self.connector, "on_webhook", None)
        return bool(take) and await take(body, signature)

    def health(self) -> tuple[bool, dict]:
        remote = self.connector.connection_state()
        homeserver = self._started and self.matrix.reachable
        ok = homeserver and remote.get("state_event") == "CONNECTED"
        return ok, {"state_event": "CONNECTED" if ok else "TRANSIENT_DISCONNECT",
                    "homeserver": homeserver, "remote": remote}

    # -- appservice side ----------------------------------------------------------------------
    async def accept_transaction(self, txn_id: str, events: list[dict], ephemeral: list[dict],
                                 devices: dict) -> None:
        """``devices``: the device data of the transaction, for the bot's encryption device when it does not
        sync (given first: the room keys of the events that follow)."""
        if devices and self.matrix.encryption is not None:
            await self.matrix.encryption.from_transaction(devices)
        if await self.store.accept_transaction(txn_id, events):
            self._inbox_wakeup.set()

    async def query_user(self, user_id: str) -> bool:
        prefix = f"@{self.config.ghost_prefix}"
        if not (user_id.startswith(prefix) and user_id.endswith(f":{self.config.domain}")):
            return False
        remote_id = user_id[len(prefix):-len(self.config.domain) - 1]
        return await self.ensure_ghost(remote_id) is not None

    async def _inbox_worker(self) -> None:
        while not self._stopping:
            await self._inbox_wakeup.wait()
            self._inbox_wakeup.clear()
            try:
                await self._drain_inbox()
            except Exception:  # the store failed: what is left stays in the inbox for the next round
                logger.exception("the inbox could not be read; trying again in 1s")
                await asyncio.sleep(1.0)
                self._inbox_wakeup.set()

    async def _drain_inbox(self) -> None:
        while not self._stopping and (batch := await self.store.pending_events()):
            for seq, event in batch:
                if self._stopping:
                    return
                try:
                    await self.handle_event(event)
                except Exception:  # one event never stops the ones after it
                    logger.exception("event %s from %s failed", event.get("event_id"), event.get("sender"))
                await self.store.event_done(seq)

    async def handle_event(self, event: dict) -> None:
        sender, room_id, etype = event["sender"], event["room_id"], event["type"]
        content = event.get("content") if isinstance(event.get("content"), dict) else {}
        if etype == "m.room.member":
            return await self._membership(event, content)
        if self.config.is_ours(sender):
            return  # an echo of what the bridge itself sent
        if etype == "m.room.encrypted" and self.matrix.encryption is not None:
            # undecryptable: the connector still sees the encrypted event (and may explain)
            event = await self.matrix.encryption.decrypt(event) or event
            etype = event["type"]
            content = event["content"] if isinstance(event.get("content"), dict) else {}
        own = getattr(self.connector, "room_event", None)
        if own is not None and await own(event):
            return  # the connector's own: a call member, a message its product does not take ...
        if etype == "m.room.message":
            body = content.get("body") if isinstance(content.get("body"), str) else ""
            management = await self.store.management_room(room_id) is not None
            command = ev.parse_command(body, self.config.command_prefix, management)
            if command is not None and not ev.edit_target(content):
                return await self._command(room_id, event, command)
        portal = await self.store.portal_by_room(room_id)
        if portal is None:
            logger.debug("event %s in %s: not a portal, ignored", event["event_id"], room_id)
            return
        if etype in ("m.room.message", "m.sticker"):
            await self._matrix_message(portal, event, content)
        elif etype == "m.reaction":
            await self._matrix_reaction(portal, event, content)
        elif etype == "m.room.redaction":
            await self._matrix_redaction(portal, event)
        elif hasattr(self.connector, "matrix_event"):  # what else a bridge follows (calls, widgets ...)
            await self.connector.matrix_event(portal, event)

    async def _membership(self, event: dict, content: dict) -> None:
        target, room_id = event.get("state_key"), event["room_id"]
        if content.get("membership") != "invite" or not isinstance(target, str):
            if content.get("membership") in ("leave", "ban") and isinstance(target, str) and self.config.is_ours(target):
                await self.store.set_member(room_id, target, False)
            return
        if target == self.config.bot_mxid:
            if not allows(self.config.permissions, event["sender"], "user"):
                return await self.matrix.leave(room_id, target)  # spec: rejecting an invite is leaving
            await self.matrix.join(room_id, target)
            if content.get("is_direct") and await self.store.portal_by_room(room_id) is None:
                await self.store.add_management_room(room_id, event["sender"])
                await self._notice(room_id, self._help(), f"welcome:{room_id}")
        elif self.config.is_ours(target) and await self.store.portal_by_room(room_id) is not None:
            await self.matrix.join(room_id, target)
            await self.store.set_member(room_id, target, True)

    # -- Matrix -> remote ---------------------------------------------------------------------
    async def _matrix_message(self, portal: Portal, event: dict, content: dict) -> None:
        event_id, sender = event["event_id"], event["sender"]
        if await self.store.remote_for(portal.room_id, event_id):
            return  # delivered before a restart
        error = await self._refusal(portal, sender)
        if error:
            return await self._fail(portal.room_id, event_id, error, reason="m_no_permission")
        name = await self._displayname(portal.room_id, sender) if portal.relay else ""

        def relayed(body: str) -> str:
            return ev.relay_text(self.config.relay_format, name, sender, body) if portal.relay else body

        text = relayed(ev.message_text(content))
        async with self._sending:
            await self._send_and_record(portal, event_id, sender, content, text, relayed)

    async def _send_and_record(self, portal: Portal, event_id: str, sender: str, content: dict, text: str,
                               relayed) -> None:
        try:
            edited = ev.edit_target(content)
            if edited:
                target = await self.store.remote_for(portal.room_id, edited)
                if target is None:
                    raise DeliveryError("the edited message was never bridged")
                await self._deliver(lambda: self.connector.edit_message(portal, target[1], text))
                await self.store.add_message(portal.room_id, event_id, f"{target[1]}@{event_id}", "edit")
            else:
                reply = ev.reply_target(content)
                reply_remote = await self.store.remote_for(portal.room_id, reply) if reply else None
                remote_id = await self._send_out(portal, event_id, sender, relayed, content,
                                                 reply_remote[1] if reply_remote else None)
                await self.store.add_message(portal.room_id, event_id, remote_id)
        except DeliveryError as e:
            return await self._fail(portal.room_id, event_id, str(e), permanent=e.permanent, reason=e.reason)
        await self._status(portal.room_id, event_id, ev.message_status(self.connector.network_id, event_id))

    async def _send_out(self, portal: Portal, event_id: str, sender: str, relayed, content: dict,
                        reply_to: str | None) -> str:
        """A message or a file to the remote side; ``relayed(text)`` adds the relay prefix when relaying."""
        if content.get("msgtype") not in ev.FILE_MSGTYPES:
            message = OutgoingMessage(event_id, sender, relayed(ev.message_text(content)), reply_to)
            return await self._deliver(lambda: self.connector.send_message(portal, message))
        secret = content.get("file") if isinstance(content.get("file"), dict) else None  # an encrypted file
        url, info = (secret or content).get("url"), content.get("info") if isinstance(content.get("info"), dict) else {}
        if not isinstance(url, str) or secret is not None and self.matrix.encryption is None:
            raise DeliveryError("encrypted or malformed attachment: no url")
        limit = self.config.max_attachment_size
        if isinstance(info.get("size"), int) and info["size"] > limit:
            raise DeliveryError(f"attachment too large ({info['size']} bytes, the limit is {limit})",
                                reason="m_event_too_large")
        filename = content.get("filename") or content.get("body") or "file"
        with tempfile.TemporaryDirectory(prefix="bridge-") as spool:
            path = os.path.join(spool, os.path.basename(str(filename)) or "file")
            try:
                size = await self._download(url, path, secret, limit)
            except MatrixRequestError as e:
                raise DeliveryError(f"attachment not delivered: {e.error or e.errcode}",
                                    reason="m_event_too_large" if e.errcode == "M_TOO_LARGE" else
                                    "m_foreign_network_error") from None
            body = ev.message_text(content)  # a caption when the file has its own name (spec v1.10)
            caption = body if content.get("filename") and body != filename else ""
            caption = relayed(caption or str(filename)) if portal.relay else caption
            file = OutgoingFile(path, os.path.basename(path), info.get("mimetype") or "application/octet-stream",
                                size)
            message = OutgoingMessage(event_id, sender, caption, reply_to, file)
            return await self._deliver(lambda: self.connector.send_message(portal, message))

    async def _download(self, url: str, path: str, secret: dict | None, limit: int) -> int:
        """An attachment into a spool file; an encrypted one is decrypted on the way and checked
        against its hash before anything reads it (spec: "Sending encrypted attachments")."""
        with open(path, "wb") as sink:
            if secret is None:
                return await self.matrix.download(url, sink, limit)
            from bridges.attachments import AttachmentError, DecryptingSink
            try:
                target = DecryptingSink(secret, sink)
                size = await self.matrix.download(url, target, limit)
                target.verify()
            except AttachmentError as e:
                raise DeliveryError(f"attachment not delivered: {e}") from None
            return size

    async def _matrix_reaction(self, portal: Portal, event: dict, content: dict) -> None:
        relation = ev.relates_to(content)
        target, key = relation.get("event_id"), relation.get("key")
        if relation.get("rel_type") != "m.annotation" or not isinstance(target, str) or not isinstance(key, str):
            return
        if await self._refusal(portal, event["sender"]):
            return
        remote = await self.store.remote_for(portal.room_id, target)
        if remote is None or remote[0] != "message":
            return
        try:
            await self._deliver(lambda: self.connector.react(portal, remote[1], key))
        except DeliveryError as e:
            return await self._fail(portal.room_id, event["event_id"], str(e), permanent=e.permanent)
        await self.store.add_message(portal.room_id, event["event_id"], f"{remote[1]}@{event['event_id']}",
                                     "matrix-reaction")

    async def _matrix_redaction(self, portal: Portal, event: dict) -> None:
        redacts = event.get("redacts") or (event.get("content") or {}).get("redacts")
        if not isinstance(redacts, str):
            return
        remote = await self.store.remote_for(portal.room_id, redacts)
        if remote is None:
            return
        kind, remote_id = remote
        try:
            if kind == "message":
                await self._deliver(lambda: self.connector.delete_message(portal, remote_id))
            elif kind == "matrix-reaction":
                await self._deliver(lambda: self.connector.react(portal, remote_id.split("@", 1)[0], ""))
        except DeliveryError as e:
            return await self._fail(portal.room_id, event["event_id"], str(e), permanent=e.permanent)
        await self.store.forget_remote(remote_id, kind)

    async def _deliver(self, attempt):
        """``attempt()``, tried again with backoff for ``bridge.delivery_retry_s`` while the remote side
        is unreachable (the inbox waits, so the order is kept); DeliveryError once it gives up."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self.config.delivery_retry_s, 0.2
        while True:
            try:
                return await attempt()
            except DeliveryError as e:
                if e.permanent or loop.time() + delay > deadline:
                    raise
                logger.info("remote side unreachable (%s); trying again in %.1fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _refusal(self, portal: Portal, sender: str) -> str | None:
        if not allows(self.config.permissions, sender, "relay"):
            return "you are not allowed to use this bridge"
        if not portal.relay:
            return "relay mode is off in this room: messages are not sent to the remote chat"
        return None

    async def _fail(self, room_id: str, event_id: str, error: str, *, permanent: bool = True,
                    reason: str = "m_foreign_network_error") -> None:
        logger.warning("event %s in %s not delivered: %s", event_id, room_id, error)
        await self._status(room_id, event_id,
                           ev.message_status(self.connector.network_id, event_id, error, permanent, reason))
        await self._notice(room_id, f"Not delivered to {self.connector.network_name}: {error}", f"fail:{event_id}",
                           event_id)

    async def _status(self, room_id: str, event_id: str, content: dict, txn_key: str | None = None) -> None:
        """Best effort: a status the homeserver refuses (an event it does not know) is only logged."""
        try:
            await self.matrix.send(room_id, "com.beeper.message_send_status", content,
                                   txn_key=txn_key or f"status:{event_id}")
        except MatrixRequestError as e:
            logger.warning("no message status for %s: %s", event_id, e)

    async def _displayname(self, room_id: str, user_id: str) -> str:
        try:
            member = await self.matrix.request(
                "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}")
        except MatrixRequestError:
            return user_id
        name = member.get("displayname")
        return name if isinstance(name, str) and name else user_id

    async def _notice(self, room_id: str, text: str, txn_key: str, reply_to: str | None = None) -> None:
        content = {"msgtype": "m.notice", "body": text}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        await self.matrix.send(room_id, "m.room.message", content, txn_key=txn_key)

    # -- commands -----------------------------------------------------------------------------
    async def _command(self, room_id: str, event: dict, command: ev.Command) -> None:
        sender, event_id = event["sender"], event["event_id"]
        key = f"reply:{event_id}"
        if not allows(self.config.permissions, sender, "user"):
            return await self._notice(room_id, "You are not allowed to use this bridge.", key, event_id)
        if command.name in ev.ADMIN_COMMANDS and not allows(self.config.permissions, sender, "admin"):
            return await self._notice(room_id, f"{command.name} needs the admin permission.", key, event_id)
        portal = await self.store.portal_by_room(room_id)
        name = command.name
        if name == "help":
            answer = self._help()
        elif name == "ping":
            state = self.connector.connection_state()
            answer = f"pong: {self.connector.network_name} is {state.get('state_event')}"
            if state.get("message"):
                answer += f" ({state['message']})"
        elif name == "sync":
            answer = await self._sync(sender)
        elif name == "bridge":
            try:
                answer = await self._bridge_command(room_id, portal, command.args)
            except MatrixRequestError as e:
                answer = f"This room cannot be bridged: {e.errcode} {e.error}".strip()
        elif name == "unbridge":
            answer = await self._unbridge(portal) if portal else "This room is not bridged."
        elif name in ("set-relay", "unset-relay"):
            if portal is None:
                answer = "This room is not bridged."
            else:
                await self.store.update_portal(portal.remote_id, relay=name == "set-relay")
                answer = "Relay mode is on." if name == "set-relay" else "Relay mode is off."
        elif name in getattr(self.connector, "commands", {}) and hasattr(self.connector, "run_command"):
            answer = await self.connector.run_command(name, command.args, portal, sender)
        else:
            own = getattr(self.connector, "command", None)  # commands that need the room (Oodrive, Tixeo)
            answer = await own(room_id, event, command) if own else None
            if answer is None:
                answer = f"Unknown command {name!r}. " + self._help()
        await self._notice(room_id, answer, key, event_id)

    def _help(self) -> str:
        return ev.help_text(self.config.command_prefix, getattr(self.connector, "commands", None))

    async def _sync(self, sender: str) -> str:
        """Missed messages, then every portal's title and members; the requester is invited to the portals."""
        summary = await self.connector.sync()
        portals = await self.store.portals()
        for portal in portals:
            chat = await self.connector.chat_info(portal.remote_id)
            if chat is None:
                continue
            await self.remote_title(chat.id, chat.title)
            for member in chat.members:
                await self.ghost_in_room(portal, member)
            if sender not in await self.matrix.joined_members(portal.room_id):
                with contextlib.suppress(MatrixRequestError):  # invited already, or banned
                    await self.matrix.invite(portal.room_id, sender)
        return f"{summary} {len(portals)} portal(s) refreshed."

    async def _bridge_command(self, room_id: str, portal: Portal | None, args: list[str]) -> str:
        if portal is not None:
            return f"This room is already bridged to {portal.remote_id}."
        if len(args) != 1:
            return f"Usage: {self.config.command_prefix} bridge <remote-id>"
        if await self.store.portal_by_remote(args[0]):
            return f"{args[0]} is already bridged to another room."
        chat = await self.connector.chat_info(args[0])
        if chat is None:
            return f"No remote chat {args[0]!r}."
        portal = Portal(chat.id, room_id, chat.title, self.config.relay_default)
        await self._set_bridge_info(portal)
        await self.store.add_portal(portal)
        for member in chat.members:
            await self.ghost_in_room(portal, member)
        return f"This room is now bridged to {chat.title or chat.id}."

    async def _unbridge(self, portal: Portal) -> str:
        state_key, _ = ev.bridge_info(self.connector.network_id, self.connector.network_name,
                                      self.config.bot_mxid, portal.remote_id, portal.title)
        for event_type in BRIDGE_STATE_TYPES:
            with contextlib.suppress(MatrixRequestError):
                await self.matrix.send_state(portal.room_id, event_type, state_key, {})
        members = await self.matrix.joined_members(portal.room_id)
        await self.store.remove_portal(portal.room_id)
        for user_id in members:
            if user_id != self.config.bot_mxid and self.config.is_ours(user_id):
                with contextlib.suppress(MatrixRequestError):
                    await self.matrix.leave(portal.room_id, user_id)
        return "This room is no longer bridged."

    async def link(self, room_id: str, remote_id: str) -> str:
        """Link a room to a remote chat (``bridge`` for a connector's own command); the answer."""
        try:
            return await self._bridge_command(room_id, await self.store.portal_by_room(room_id), [remote_id])
        except MatrixRequestError as e:
            return f"This room cannot be linked (the bot needs power to send state): {e.errcode} {e.error}".strip()

    async def notice(self, room_id: str, text: str, txn_key: str, reply_to: str | None = None) -> None:
        await self._notice(room_id, text, txn_key, reply_to)

    async def refuse(self, room_id: str, event_id: str, error: str) -> None:
        """A Matrix message the connector will not take: a failed status and a notice."""
        await self._fail(room_id, event_id, error, reason="m_no_permission")

    async def _set_bridge_info(self, portal: Portal) -> None:
        state_key, content = ev.bridge_info(self.connector.network_id, self.connector.network_name,
                                            self.config.bot_mxid, portal.remote_id, portal.title)
        for event_type in BRIDGE_STATE_TYPES:
            await self.matrix.send_state(portal.room_id, event_type, state_key, content)

    # -- remote -> Matrix: what connectors call -------------------------------------------------
    async def ensure_ghost(self, remote_user: str, *, refresh: bool = False) -> str | None:
        """The ghost of a remote user, registered and with the remote name and picture; None if unknown.
        The profile is read once per run, and again when the connector says it changed (``refresh``)."""
        user_id = self.config.ghost_mxid(remote_user)
        if user_id in self._synced_ghosts and not refresh:
            return user_id
        async with self._locks[user_id]:
            info = await self.connector.user_info(remote_user)
            known = await self.store.ghost(remote_user)
            if info is None:
                return user_id if known else None
            if known is None:
                await self.matrix.ensure_registered(user_id[1:].split(":", 1)[0])
            name = f"{info.name} ({self.connector.network_name})"
            if known is None or known[1] != name:
                await self.matrix.set_displayname(user_id, name)
            avatar = known[2] if known else ""
            if info.avatar_key and info.fetch_avatar and avatar != info.avatar_key:
                try:
                    data, mime = await info.fetch_avatar()
                    mxc = await self.matrix.upload(_once(data), len(data), mime, "avatar", user_id)
                    await self.matrix.set_avatar_url(user_id, mxc)
                    avatar = info.avatar_key
                except MatrixRequestError as e:  # no media repository, a picture too large: the name still counts
                    logger.warning("no avatar for %s: %s", user_id, e)
            await self.store.save_ghost(remote_user, user_id, name, avatar)
            self._synced_ghosts.add(user_id)
        return user_id

    async def portal_for(self, chat_id: str, *, create: bool = True) -> Portal | None:
        async with self._locks[f"portal:{chat_id}"]:
            portal = await self.store.portal_by_remote(chat_id)
            if portal is not None or not create:
                return portal
            chat = await self.connector.chat_info(chat_id)
            if chat is None:
                return None
            state_key, content = ev.bridge_info(self.connector.network_id, self.connector.network_name,
                                                self.config.bot_mxid, chat.id, chat.title)
            room_id = await self.matrix.create_room({
                "name": chat.title, "preset": "private_chat", "invite": list(self.config.portal_invites),
                "initial_state": [{"type": t, "state_key": state_key, "content": content}
                                  for t in BRIDGE_STATE_TYPES],
                "creation_content": {"m.federate": True}})
            portal = Portal(chat.id, room_id, chat.title, self.config.relay_default)
            await self.store.add_portal(portal)
        for member in chat.members:
            await self.ghost_in_room(portal, member)
        return portal

    async def ghost_in_room(self, portal: Portal, remote_user: str) -> str | None:
        user_id = await self.ensure_ghost(remote_user)
        if user_id is None:
            return None
        if not await self.store.is_member(portal.room_id, user_id):
            with contextlib.suppress(MatrixRequestError):  # invited or joined already: the join tells
                await self.matrix.invite(portal.room_id, user_id)
            await self.matrix.join(portal.room_id, user_id)
            await self.store.set_member(portal.room_id, user_id, True)
        return user_id

    async def ghost_left(self, chat_id: str, remote_user: str) -> None:
        portal = await self.store.portal_by_remote(chat_id)
        user_id = self.config.ghost_mxid(remote_user)
        if portal and await self.store.is_member(portal.room_id, user_id):
            with contextlib.suppress(MatrixRequestError):
                await self.matrix.leave(portal.room_id, user_id)
            await self.store.set_member(portal.room_id, user_id, False)

    async def remote_title(self, chat_id: str, title: str) -> None:
        portal = await self.store.portal_by_remote(chat_id)
        if portal and portal.title != title:
            await self.matrix.send_state(portal.room_id, "m.room.name", "", {"name": title})
            await self.store.update_portal(chat_id, title=title)

    async def _bridged(self, remote_id: str) -> tuple[str, str] | None:
        """(room_id, event_id) of a bridged message, once any Matrix message being sent is recorded: a remote
        reply, reaction or receipt may follow a message sent from Matrix before its mapping is written."""
        async with self._sending:
            return await self.store.event_for(remote_id)

    async def is_bridged(self, remote_id: str, kind: str = "message") -> bool:
        return await self.store.event_for(remote_id, kind) is not None

    async def remote_message(self, chat_id: str, remote_id: str, sender: str | None, text: str, ts: int, *,
                             reply_to: str | None = None, files: list[IncomingFile] = ()) -> None:
        """A remote message (with its files) into its portal, from ``sender``'s ghost (the bot when None),
        at its original time. Nothing happens for a message already bridged."""
        if await self.store.event_for(remote_id):
            return
        portal = await self.portal_for(chat_id)
        if portal is None:
            logger.warning("message %s: unknown chat %s", remote_id, chat_id)
            return
        user_id = await self.ghost_in_room(portal, sender) if sender else self.config.bot_mxid
        reply_event = await self._bridged(reply_to) if reply_to else None
        first_event = None
        for index, file in enumerate(files):
            event_id = await self._remote_file(portal, remote_id, index, file, user_id, ts,
                                               reply_event[1] if reply_event else None)
            first_event = first_event or event_id
        if text or not files:
            content = ev.remote_content(text, reply_event[1] if reply_event else None)
            first_event = await self.matrix.send(portal.room_id, "m.room.message", content, user_id=user_id, ts=ts,
                                                 txn_key=f"msg:{remote_id}")
        await self.store.add_message(portal.room_id, first_event, remote_id)

    async def _remote_file(self, portal: Portal, remote_id: str, index: int, file: IncomingFile, user_id: str,
                           ts: int, reply_event: str | None = None) -> str:
        limit = self.config.max_attachment_size
        try:
            if file.size > limit:
                raise MatrixRequestError(413, "M_TOO_LARGE", f"{file.size} bytes, the bridge's limit is {limit}")
            secret = None
            if self.matrix.encryption is not None and await self.matrix.encryption.is_encrypted(portal.room_id):
                from bridges.attachments import AttachmentEncryptor
                secret = AttachmentEncryptor()
            chunks = secret.encrypt(file.chunks()) if secret else file.chunks()
            mxc = await self.matrix.upload(chunks, file.size, "application/octet-stream" if secret else file.mime,
                                           "" if secret else file.filename, user_id)
        except MatrixRequestError as e:  # the notice stands for the file (a deletion removes it)
            return await self.matrix.send(portal.room_id, "m.room.message", {
                "msgtype": "m.notice", "body": f"An attachment ({file.filename}, {file.size} bytes) from "
                                               f"{self.connector.network_name} was not bridged: {e.error or e.errcode}"},
                user_id=user_id, ts=ts, txn_key=f"file-fail:{remote_id}:{index}")
        content = ev.file_content(ev.msgtype_for(file.mime), file.filename, mxc, file.mime, file.size)
        if secret is not None:  # spec: an encrypted file is in ``file``, never ``url``
            content["file"] = secret.file_info(content.pop("url"))
        if reply_event:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_event}}
        return await self.matrix.send(portal.room_id, "m.room.message", content, user_id=user_id, ts=ts,
                                      txn_key=f"file:{remote_id}:{index}")

    async def remote_edit(self, remote_id: str, sender: str | None, text: str, ts: int) -> None:
        original = await self._bridged(remote_id)
        if original is None:
            return
        user_id = self.config.ghost_mxid(sender) if sender else self.config.bot_mxid
        content = ev.remote_content(text, edit_of=original[1])
        version = hashlib.sha256(text.encode()).hexdigest()[:16]
        event_id = await self.matrix.send(original[0], "m.room.message", content, user_id=user_id, ts=ts,
                                          txn_key=f"edit:{remote_id}:{version}")
        await self.store.add_message(original[0], event_id, f"{remote_id}@{version}", "remote-edit")

    async def remote_delete(self, remote_id: str) -> None:
        original = await self._bridged(remote_id)
        if original is None:
            return
        await self.matrix.redact(original[0], original[1], txn_key=f"delete:{remote_id}",
                                 reason=f"deleted on {self.connector.network_name}")
        await self.store.forget_remote(remote_id, "message")

    async def remote_reaction(self, message_id: str, sender: str, key: str, ts: int) -> None:
        """``sender``'s reaction on a message becomes ``key`` ("" removes it)."""
        original = await self._bridged(message_id)
        if original is None:
            return
        reaction_id = f"{message_id}:{sender}"
        previous = await self.store.event_for(reaction_id, "reaction")
        user_id = self.config.ghost_mxid(sender)
        if previous:
            await self.matrix.redact(previous[0], previous[1], user_id=user_id, txn_key=f"unreact:{previous[1]}")
            await self.store.forget_remote(reaction_id, "reaction")
        if key:
            content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": original[1], "key": key}}
            event_id = await self.matrix.send(original[0], "m.reaction", content, user_id=user_id, ts=ts,
                                              txn_key=f"react:{reaction_id}:{key}:{ts}")
            await self.store.add_message(original[0], event_id, reaction_id, "reaction")

    async def remote_receipt(self, message_id: str, sender: str) -> None:
        original = await self._bridged(message_id)
        if original is not None:
            with contextlib.suppress(MatrixRequestError):
                await self.matrix.receipt(original[0], original[1], self.config.ghost_mxid(sender))

    async def remote_delivered(self, message_id: str, sender: str) -> None:
        """The remote side delivered a bridged Matrix message to ``sender``: its status says so."""
        original = await self._bridged(message_id)
        if original is not None:
            content = ev.message_status(self.connector.network_id, original[1])
            content["delivered_to_users"] = [self.config.ghost_mxid(sender)]
            await self._status(original[0], original[1], content, f"delivered:{original[1]}:{sender}")

    async def remote_notice(self, chat_id: str, text: str, key: str) -> None:
        portal = await self.store.portal_by_remote(chat_id)
        if portal:
            await self._notice(portal.room_id, text, key)


async def _once(data: bytes):
    yield data

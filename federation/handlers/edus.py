"""EDUs between servers, and the device lists of remote users.

Spec v1.19 server-server "Typing Notifications", "Receipts", "Presence",
"Device Management", "End-to-End Encryption" and "Send-to-device messaging".

:class:`OutboundEdus` sends the EDUs about local users to the servers that
share a room with them (through the persisted, retried federation sender);
:class:`InboundEdus` applies the EDUs other servers send about theirs. A server
only speaks for its own users: an EDU about anyone else is ignored.

:class:`RemoteDeviceLists` keeps the device lists of remote users who share a
room with a local user, up to date from their ``m.device_list_update`` EDUs;
when one is missed (a ``prev_id`` we never saw) the list is dropped and fetched
again whole (``GET /user/devices/{userId}``). Users we do not track are asked of
their server at each query (``POST /user/keys/query``).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from twisted.internet import defer

from federation.client import FederationDeniedError, HttpResponseError
from federation.rejections import FederationRejections
from federation.room_servers import RoomServers
from homeserver.events.identifiers import domain_of, is_valid_user_id
from homeserver.services.e2e_keys import LocalKeys
from homeserver.services.presence import presence_content
from homeserver.services.room_events.heads import RoomHeads
from homeserver.storage.e2e_keys import RemoteDevice
from homeserver.storage.presence import PresenceRow

logger = logging.getLogger(__name__)

PRESENCE_STATES = ("online", "unavailable", "offline")
RESYNC_TIMEOUT_S = 30.0
MAX_SEEN_UPDATES = 100  # stream ids remembered per remote user (Synapse's _seen_updates)
MAX_EVENT_ID_LENGTH = 255  # spec "Event IDs"
MAX_MESSAGE_ID_LENGTH = 32  # spec m.direct_to_device message_id
TYPING_PING_INTERVAL_MS = 40_000  # Synapse's: a local user still typing is announced again this often


def _spawn(coro, what: str) -> None:
    defer.ensureDeferred(coro).addErrback(lambda f: logger.error("%s failed: %s", what, f.getTraceback()))


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _receipt_data(data) -> dict:
    """Of a remote receipt's ``data``, the fields the spec defines: ``ts`` (an integer) and ``thread_id``
    ("main" or an event id, at most 255 characters as every event id)."""
    if not isinstance(data, dict):
        return {}
    kept = {"ts": data["ts"]} if _is_int(data.get("ts")) else {}
    if isinstance(data.get("thread_id"), str) and len(data["thread_id"]) <= MAX_EVENT_ID_LENGTH:
        kept["thread_id"] = data["thread_id"]
    return kept


class OutboundEdus:
    """The typing, receipts, presence and device list EDUs of local users, to the servers sharing a room with
    them, through the persisted, retried federation sender (``homeserver/services/edu_outbox.py``)."""

    def __init__(self, *, server_name: str, clock, sender, room_servers: RoomServers, room_heads: RoomHeads,
                 event_store, accounts, keys: LocalKeys):
        self.server_name = server_name
        self._clock = clock
        self._sender = sender
        self._room_servers = room_servers
        self._heads = room_heads
        self._event_store = event_store
        self._accounts = accounts
        self._keys = keys
        self._typing_sent: dict[tuple[str, str], int] = {}  # (room, local typer) -> when last announced
        self._outbound: defer.Deferred = defer.succeed(None)  # queues ephemeral EDUs in the order they happen

    def _is_local(self, user_id: str) -> bool:
        return domain_of(user_id) == self.server_name

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- destinations -----------------------------------------------------------------------------
    async def _servers_in_room(self, room_id: str) -> list[str]:
        return [s for s in await self._room_servers.joined(room_id) if s != self.server_name]

    async def _servers_sharing(self, user_id: str) -> list[str]:
        """The other servers with a member in a room the user is joined to."""
        servers: set[str] = set()
        for room_id, (membership, _, _) in (await self._event_store.rooms_for_user(user_id)).items():
            if membership == "join":
                servers.update(await self._servers_in_room(room_id))
        return sorted(servers)

    async def _send(self, destinations, edu_type: str, content: dict) -> None:
        for destination in destinations:
            await self._sender.send_edu(destination, edu_type, content)

    def _in_order(self, coro_factory, what: str) -> None:
        """Run ``coro_factory()`` once those before it are done, so that e.g. a stop follows its start."""
        def run(_):
            return defer.ensureDeferred(coro_factory()).addErrback(
                lambda f: logger.error("%s failed: %s", what, f.getTraceback()))
        self._outbound.addCallback(run)

    # -- typing and receipts ------------------------------------------------------------------------
    def on_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        """Spec "Typing Notifications": a local user started, is still (every 40 s) or stopped typing."""
        if not self._is_local(user_id):
            return
        now = self._now_ms()
        if not typing:
            self._typing_sent.pop((room_id, user_id), None)
        elif now - self._typing_sent.get((room_id, user_id), -TYPING_PING_INTERVAL_MS) < TYPING_PING_INTERVAL_MS:
            return
        else:
            self._typing_sent[(room_id, user_id)] = now
        content = {"room_id": room_id, "user_id": user_id, "typing": typing}
        self._in_order(lambda: self._send_to_room(room_id, "m.typing", content), "sending m.typing")

    def on_receipt(self, receipt) -> None:
        """Spec "Receipts": a local user's public read receipt (private ones stay here)."""
        if self._is_local(receipt.user_id) and receipt.receipt_type == "m.read":
            content = {receipt.room_id: {"m.read": {receipt.user_id: {"event_ids": [receipt.event_id],
                                                                      "data": receipt.data}}}}
            self._in_order(lambda: self._send_to_room(receipt.room_id, "m.receipt", content), "sending m.receipt")

    async def _send_to_room(self, room_id: str, edu_type: str, content: dict) -> None:
        await self._send(await self._servers_in_room(room_id), edu_type, content)

    # -- presence ------------------------------------------------------------------------------------
    def on_presence(self, row: PresenceRow) -> None:
        """Spec "Presence": a local user's presence changed, for the servers sharing a room with them."""
        if self._is_local(row.user_id):
            self._in_order(lambda: self._send_presence(row), "sending m.presence")

    async def _send_presence(self, row: PresenceRow) -> None:
        await self._send(await self._servers_sharing(row.user_id), "m.presence", {"push": [self._push_entry(row)]})

    def _push_entry(self, row: PresenceRow) -> dict:
        push = {"user_id": row.user_id, **presence_content(row, self._now_ms())}
        push.setdefault("last_active_ago", 0)
        push.setdefault("currently_active", False)
        return push

    def on_joins(self, events, states_of) -> None:
        """New members of rooms (``events``, any room events): presence for them, read with ``states_of``."""
        joins = [e for e in events if e.type == "m.room.member" and e.state_key and not e.outlier
                 and e.content.get("membership") == "join"]
        if joins:
            self._in_order(lambda: self._presence_on_joins(joins, states_of),
                           "sending presence to a room's new members")

    async def _presence_on_joins(self, joins, states_of) -> None:
        """As Synapse: a local user who joins a room is announced to its servers; a server joining a room
        hears of the local users in it (those not offline)."""
        for ev in joins:
            previous = await self._heads.get_event(ev.replaces_state) if ev.replaces_state else None
            if previous is not None and previous.content.get("membership") == "join":
                continue  # a profile change
            joined = (await self._heads.members(ev.room_id)).joined  # server -> its joined users
            if self._is_local(ev.state_key):
                users, destinations = [ev.state_key], [s for s in joined if s != self.server_name]
            elif any(u != ev.state_key for u in joined.get(domain_of(ev.state_key), ())):
                continue  # that server was in the room already
            else:
                users, destinations = list(joined.get(self.server_name, ())), [domain_of(ev.state_key)]
            if not users or not destinations:
                continue  # no other server to tell, or no local user to tell of
            rows = await states_of(users)
            push = [self._push_entry(r) for r in rows if r.state != "offline"]
            if push:
                await self._send(destinations, "m.presence", {"push": push})

    # -- device lists and keys ------------------------------------------------------------------------
    async def on_device_updates(self, user_id: str, updates: list[tuple[str, int, int | None]]) -> None:
        """Spec "Device Management": one m.device_list_update per changed device of a local user."""
        if not self._is_local(user_id):
            return
        destinations = await self._servers_sharing(user_id)
        if not destinations:
            return
        keys = (await self._keys.get({user_id: [u[0] for u in updates]}, None))["device_keys"][user_id]
        existing = {d["device_id"] for d in await self._accounts.list_devices(user_id)}
        for device_id, stream_id, prev_id in updates:
            content = {"user_id": user_id, "device_id": device_id, "stream_id": stream_id,
                       "prev_id": [prev_id] if prev_id is not None else []}
            if device_id not in existing:
                content["deleted"] = True
            elif device_id in keys:  # DeviceKeys as uploaded (no "unsigned")
                content["keys"] = {k: v for k, v in keys[device_id].items() if k != "unsigned"}
            await self._send(destinations, "m.device_list_update", content)

    async def on_signing_keys(self, user_id: str) -> None:
        """Spec "End-to-End Encryption": a local user's master or self-signing key changed (or got signed)."""
        destinations = await self._servers_sharing(user_id)
        if not destinations:
            return
        keys = await self._keys.get({user_id: []}, None)
        content = {"user_id": user_id}
        for field in ("master_key", "self_signing_key"):
            if user_id in keys[field + "s"]:
                content[field] = keys[field + "s"][user_id]
        await self._send(destinations, "m.signing_key_update", content)


class InboundEdus:
    """The typing, receipts, presence and to-device EDUs other servers send about their users, applied to the
    services (device lists and keys: :class:`RemoteDeviceLists`)."""

    def __init__(self, *, room_servers: RoomServers, event_store, typing, receipts, presence, to_device,
                 remote_devices: "RemoteDeviceLists", rejections: FederationRejections):
        self._room_servers = room_servers
        self._event_store = event_store
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._to_device = to_device
        self._remote_devices = remote_devices
        self._rejections = rejections

    def handlers(self) -> dict:
        """EDU type -> async handler(origin, content), for the transaction receiver."""
        return {"m.typing": self._receive_typing, "m.receipt": self._receive_receipts,
                "m.presence": self._receive_presence, "m.direct_to_device": self._receive_to_device,
                "m.device_list_update": self._remote_devices.on_device_list_update,
                "m.signing_key_update": self._remote_devices.on_signing_key_update}

    # -- inbound -----------------------------------------------------------------------------------
    async def _receive_typing(self, origin: str, content: dict) -> None:
        """Spec m.typing; dropped when the room's server ACL denies the origin (spec "Server Access Control
        Lists", MSC4163)."""
        room_id, user_id, typing = content.get("room_id"), content.get("user_id"), content.get("typing")
        if not isinstance(room_id, str) or not isinstance(typing, bool) or domain_of(user_id) != origin:
            self._rejections.edu(origin, "m.typing", f"not a typing notice of its own user: {content!r:.200}",
                                 "edu_invalid")
            return
        if not await self._room_servers.origin_allowed(origin, room_id):
            self._rejections.edu(origin, "m.typing", f"denied by the server ACL of {room_id}", "server_acl")
            return
        if (await self._event_store.rooms_for_user(user_id)).get(room_id, (None,))[0] == "join":
            self._typing.update(room_id, user_id, typing)
        else:
            self._rejections.edu(origin, "m.typing", f"{user_id} is not joined to {room_id}", "edu_not_in_room")

    async def _receive_receipts(self, origin: str, content: dict) -> None:
        """Spec m.receipt: the rooms whose server ACL denies the origin are dropped (MSC4163), and of each
        receipt's ``data`` only what the spec defines (``ts``, ``thread_id``) is kept."""
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict) or origin not in await self._room_servers.joined(room_id):
                self._rejections.edu(origin, "m.receipt", f"no user of the origin is joined to {room_id!r:.200}",
                                     "edu_not_in_room")
                continue
            if not await self._room_servers.origin_allowed(origin, room_id):
                self._rejections.edu(origin, "m.receipt", f"denied by the server ACL of {room_id!r:.200}",
                                     "server_acl")
                continue
            reads = by_type.get("m.read")
            for user_id, receipt in (reads.items() if isinstance(reads, dict) else ()):
                if domain_of(user_id) != origin or not isinstance(receipt, dict) \
                        or not _is_str_list(receipt.get("event_ids")) or not receipt["event_ids"]:
                    self._rejections.edu(origin, "m.receipt", f"not a receipt of its own user: {user_id!r:.200}",
                                         "edu_invalid")
                    continue
                data = _receipt_data(receipt.get("data"))
                await self._receipts.receive_remote(room_id, user_id, receipt["event_ids"][-1], data)

    async def _receive_presence(self, origin: str, content: dict) -> None:
        rows = []
        for push in content.get("push") or []:
            if not isinstance(push, dict) or domain_of(push.get("user_id")) != origin \
                    or push.get("presence") not in PRESENCE_STATES:
                self._rejections.edu(origin, "m.presence", f"not a presence of its own user: {push!r:.200}",
                                     "edu_invalid")
                continue
            ago = push.get("last_active_ago")
            status_msg = push.get("status_msg")
            rows.append(PresenceRow(
                push["user_id"], push["presence"], status_msg if isinstance(status_msg, str) else None,
                self._presence.now_ms() - ago if _is_int(ago) and ago >= 0 else 0,
                push.get("currently_active") is True))
        if rows:
            await self._presence.receive_remote(rows)

    async def _receive_to_device(self, origin: str, content: dict) -> None:
        sender, event_type, message_id = content.get("sender"), content.get("type"), content.get("message_id")
        messages = content.get("messages")
        if domain_of(sender) != origin or not isinstance(event_type, str) or not isinstance(message_id, str) \
                or len(message_id) > MAX_MESSAGE_ID_LENGTH or not isinstance(messages, dict):
            self._rejections.edu(origin, "m.direct_to_device", f"not a message of its own user: {sender!r:.200}",
                                 "edu_invalid")
            return
        messages = {u: {d: c for d, c in by_device.items() if isinstance(c, dict)}
                    for u, by_device in messages.items() if isinstance(by_device, dict)}
        await self._to_device.receive_remote(sender, event_type, message_id, messages)


class RemoteDeviceLists:
    """Remote users' devices and cross-signing keys: cached while they share a room with a local user."""

    def __init__(self, *, server_name: str, client, cache, e2e_store, event_store, device_lists,
                 rejections: FederationRejections):
        self.server_name = server_name
        self._rejections = rejections
        self._client = client
        self._cache = cache
        self._e2e_store = e2e_store
        self._event_store = event_store
        self._device_lists = device_lists
        self._seen: dict[str, list[int]] = {}  # user -> stream ids of the updates received lately
        self._generation: dict[str, int] = {}  # user -> updates received (a resync started before one is stale)
        self._resyncs: dict[str, list[defer.Deferred]] = {}  # user -> waiters of the resync in flight
        self._resync_again: set[str] = set()

    async def shares_room(self, user_id: str) -> bool:
        return any(domain_of(u) == self.server_name for u in await self._event_store.users_sharing_rooms(user_id))

    # -- inbound EDUs ------------------------------------------------------------------------------
    async def on_device_list_update(self, origin: str, content: dict) -> None:
        """Spec m.device_list_update: applied to the cached list if we saw its prev_id, else the list is
        dropped and fetched again; local users sharing a room see the user in device_lists.changed once the
        update is applied or the list fetched (as Synapse: a client re-querying then finds the new devices)."""
        user_id, device_id, stream_id = content.get("user_id"), content.get("device_id"), content.get("stream_id")
        prev_ids = content.get("prev_id") or []
        if domain_of(user_id) != origin or not is_valid_user_id(user_id) or not isinstance(device_id, str) \
                or not _is_int(stream_id) or not isinstance(prev_ids, list):
            self._rejections.edu(origin, "m.device_list_update",
                                 f"not a device of its own user: {content!r:.200}", "edu_invalid")
            return
        if not await self.shares_room(user_id):
            return
        seen = self._seen.setdefault(user_id, [])
        if stream_id in seen:
            return
        self._generation[user_id] = self._generation.get(user_id, 0) + 1
        extremity = (await self._cache.positions([user_id])).get(user_id)
        applied = False
        if extremity is not None and prev_ids and all(p == extremity or p in seen for p in prev_ids):
            name = content.get("device_display_name")
            device = RemoteDevice(device_id, name if isinstance(name, str) else None,
                                  _device_keys(content.get("keys"), user_id, device_id))
            applied = await self._cache.update_device(user_id, stream_id, device, content.get("deleted") is True)
        seen.append(stream_id)
        del seen[:-MAX_SEEN_UPDATES]
        if applied:
            await self._device_lists.mark_changed(user_id)
        else:
            await self._cache.drop(user_id)
            self._schedule_resync(user_id)

    async def on_signing_key_update(self, origin: str, content: dict) -> None:
        """Spec m.signing_key_update: a remote user's new master or self-signing key."""
        user_id = content.get("user_id")
        if domain_of(user_id) != origin:
            self._rejections.edu(origin, "m.signing_key_update", f"not a key of its own user: {user_id!r:.200}",
                                 "edu_invalid")
            return
        if not await self.shares_room(user_id):
            return
        keys = _cross_signing_keys(content, user_id)
        if keys and user_id in await self._cache.positions([user_id]):
            await self._e2e_store.set_cross_signing_keys(user_id, keys)
        await self._device_lists.mark_changed(user_id)

    def on_room_events(self, events) -> None:
        """Room event listener: a remote user who no longer shares a room with ours is no longer tracked
        (we would miss their updates)."""
        gone = [e for e in events if e.type == "m.room.member" and e.state_key
                and e.content.get("membership") in ("leave", "ban")]
        if gone:
            _spawn(self._forget_unshared(gone), "forgetting remote device lists")

    async def _forget_unshared(self, events) -> None:
        candidates: set[str] = set()
        for ev in events:
            if domain_of(ev.state_key) != self.server_name:
                candidates.add(ev.state_key)
            else:
                candidates.update(await self._event_store.joined_members(ev.room_id))
        for user_id in await self._cache.positions(u for u in candidates if domain_of(u) != self.server_name):
            if not await self.shares_room(user_id):
                await self._cache.drop(user_id)
                self._seen.pop(user_id, None)

    # -- resync ------------------------------------------------------------------------------------
    def _schedule_resync(self, user_id: str) -> None:
        if user_id in self._resyncs:
            self._resync_again.add(user_id)
        else:
            _spawn(self._resync_and_tell(user_id), f"resyncing the device list of {user_id}")

    async def _resync_and_tell(self, user_id: str) -> None:
        """A resync after an update we could not apply: a list fetched tells the local users (``resync``); one
        not fetched too, so that their clients re-query."""
        if await self.resync(user_id) is None:
            await self._device_lists.mark_changed(user_id)

    async def resync(self, user_id: str, timeout_s: float = RESYNC_TIMEOUT_S) -> dict | None:
        """Spec GET /user/devices/{userId}: the user's devices and keys as a /keys/query answer for one user
        (None if their server did not give them). Cached unless an update came meanwhile, and then the local
        users sharing a room are told (device_lists.changed)."""
        waiters = self._resyncs.get(user_id)
        if waiters is not None:
            d: defer.Deferred = defer.Deferred()
            waiters.append(d)
            return await d
        self._resyncs[user_id] = waiters = []
        result = None
        try:
            result = await self._fetch_device_list(user_id, timeout_s)
        except Exception as e:
            logger.info("Could not fetch the devices of %s: %s", user_id, e)
        finally:
            del self._resyncs[user_id]
            for d in waiters:
                d.callback(result)
            if user_id in self._resync_again:
                self._resync_again.discard(user_id)
                self._schedule_resync(user_id)
        return result

    async def _fetch_device_list(self, user_id: str, timeout_s: float) -> dict:
        generation = self._generation.get(user_id, 0)
        body = await self._client.get_json(domain_of(user_id), "/_matrix/federation/v1/user/devices/"
                                           + quote(user_id, safe=""), timeout_s=timeout_s)
        if body.get("user_id") != user_id or not _is_int(body.get("stream_id")) \
                or not isinstance(body.get("devices"), list):
            raise ValueError(f"malformed /user/devices answer for {user_id}")
        devices = []
        for entry in body["devices"]:
            if isinstance(entry, dict) and isinstance(entry.get("device_id"), str):
                name = entry.get("device_display_name")
                devices.append(RemoteDevice(entry["device_id"], name if isinstance(name, str) else None,
                                            _device_keys(entry.get("keys"), user_id, entry["device_id"])))
        cross_signing = _cross_signing_keys(body, user_id)
        if self._generation.get(user_id, 0) == generation and await self.shares_room(user_id):
            await self._cache.replace(user_id, body["stream_id"], devices, cross_signing)
            # As Synapse: the devices found are news to the local users sharing a room (device_lists.changed).
            await self._device_lists.mark_changed(user_id)
        answer = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        for device in devices:
            if device.keys is not None:
                keys = dict(device.keys)
                unsigned = keys.get("unsigned")
                keys["unsigned"] = dict(unsigned) if isinstance(unsigned, dict) else {}  # spec /keys/query
                if device.display_name is not None:
                    keys["unsigned"]["device_display_name"] = device.display_name
                answer["device_keys"][device.device_id] = keys
        for key_type, key in cross_signing.items():
            answer[f"{key_type}_keys"] = key
        return answer

    # -- client queries ----------------------------------------------------------------------------
    async def query(self, requester: str, wanted: dict[str, list[str] | None], timeout_s: float) -> dict:
        """/keys/query for remote users: tracked ones from the cache, the others from their servers."""
        result = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}, "failures": {}}
        by_domain: dict[str, dict] = {}
        for user_id, devices in wanted.items():
            if is_valid_user_id(user_id):
                by_domain.setdefault(domain_of(user_id), {})[user_id] = devices or []
        await defer.gatherResults([defer.ensureDeferred(self._query_server(domain, users, timeout_s, result))
                                   for domain, users in by_domain.items()], consumeErrors=True)
        signatures = await self._e2e_store.signatures_of(list(result["master_keys"]), requester)
        for s in signatures:  # the requester's own signatures of their master keys (user-signing key)
            master = result["master_keys"].get(s.target_user_id)
            if s.signer_user_id == requester and f"ed25519:{s.target_key_id}" in master.get("keys", {}):
                master.setdefault("signatures", {}).setdefault(requester, {})[s.signing_key_id] = s.signature
        return result

    async def _query_server(self, domain: str, users: dict[str, list[str]], timeout_s: float, result: dict) -> None:
        cached = [u for u in await self._cache.positions(users) if await self.shares_room(u)]
        ask = {}
        for user_id, devices in users.items():
            if user_id not in cached and not devices and await self.shares_room(user_id):
                snapshot = await self.resync(user_id, timeout_s)
                if snapshot is not None:
                    _merge_user(result, user_id, snapshot)
                    continue
            if user_id not in cached:
                ask[user_id] = devices
        await self._from_cache([u for u in users if u in cached], users, result)
        if not ask:
            return
        try:
            body = await self._client.post_json(domain, "/_matrix/federation/v1/user/keys/query",
                                                {"device_keys": ask}, timeout_s=timeout_s)
        except Exception as e:
            result["failures"][domain] = _failure(e)
            return
        for user_id in ask:
            found = body.get("device_keys", {}).get(user_id) if isinstance(body.get("device_keys"), dict) else None
            snapshot = {"device_keys": {d: k for d, k in (found.items() if isinstance(found, dict) else ())
                                        if _device_keys(k, user_id, d) is not None}}
            for key_type, key in _cross_signing_keys(
                    {f"{t}_key": (body.get(f"{t}_keys") or {}).get(user_id) for t in ("master", "self_signing")},
                    user_id).items():
                snapshot[f"{key_type}_keys"] = key
            _merge_user(result, user_id, snapshot)

    async def _from_cache(self, user_ids: list[str], users: dict[str, list[str]], result: dict) -> None:
        if not user_ids:
            return
        found = await self._cache.device_keys([(u, d) for u in user_ids for d in (users[u] or [None])])
        cross_signing = await self._e2e_store.get_cross_signing_keys(user_ids)
        for user_id in user_ids:
            snapshot = {"device_keys": found.get(user_id, {})}
            for key_type in ("master", "self_signing"):
                if key_type in cross_signing.get(user_id, {}):
                    snapshot[f"{key_type}_keys"] = cross_signing[user_id][key_type]
            _merge_user(result, user_id, snapshot)

    async def claim(self, wanted: dict[str, dict[str, str]], timeout_s: float) -> dict:
        """/keys/claim for remote users: one POST /user/keys/claim per server."""
        result = {"one_time_keys": {}, "failures": {}}
        by_domain: dict[str, dict] = {}
        for user_id, devices in wanted.items():
            if is_valid_user_id(user_id):
                by_domain.setdefault(domain_of(user_id), {})[user_id] = devices

        async def claim_from(domain: str, users: dict) -> None:
            try:
                body = await self._client.post_json(domain, "/_matrix/federation/v1/user/keys/claim",
                                                    {"one_time_keys": users}, timeout_s=timeout_s)
            except Exception as e:
                result["failures"][domain] = _failure(e)
                return
            claimed = body.get("one_time_keys") if isinstance(body.get("one_time_keys"), dict) else {}
            for user_id in users:
                if isinstance(claimed.get(user_id), dict):
                    result["one_time_keys"][user_id] = {d: k for d, k in claimed[user_id].items()
                                                        if d in users[user_id] and isinstance(k, dict)}

        await defer.gatherResults([defer.ensureDeferred(claim_from(domain, users))
                                   for domain, users in by_domain.items()], consumeErrors=True)
        return result


def _merge_user(result: dict, user_id: str, snapshot: dict) -> None:
    result["device_keys"][user_id] = snapshot["device_keys"]
    for field in ("master_keys", "self_signing_keys"):
        if field in snapshot:
            result[field][user_id] = snapshot[field]


def _device_keys(keys, user_id: str, device_id: str) -> dict | None:
    """Device keys as another server gave them, passed on as they are (as Synapse: the clients that use them
    check them), unless they say they are another user's or another device's."""
    if isinstance(keys, dict) and keys.get("user_id", user_id) == user_id \
            and keys.get("device_id", device_id) == device_id:
        return keys
    return None


def _cross_signing_keys(body: dict, user_id: str) -> dict[str, dict]:
    """key type -> key of the ``master_key`` and ``self_signing_key`` of ``body`` that are the user's."""
    found = {}
    for key_type in ("master", "self_signing"):
        key = body.get(f"{key_type}_key")
        if isinstance(key, dict) and key.get("user_id") == user_id and _is_str_list(key.get("usage")) \
                and key_type in key["usage"] and isinstance(key.get("keys"), dict):
            found[key_type] = key
    return found


def _failure(e: Exception) -> dict:
    """A /keys/query or /keys/claim ``failures`` entry for a server that did not answer (as Synapse)."""
    if isinstance(e, HttpResponseError):
        return {"status": e.status, "message": str(e)}
    if isinstance(e, FederationDeniedError):
        return {"status": 403, "message": "Federation Denied"}
    return {"status": 503, "message": str(e) or e.__class__.__name__}

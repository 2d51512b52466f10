"""Device list tracking: who must re-fetch whose keys (spec v1.19 "Tracking the device list for a user").

A user's device list changes when they add, rename or delete a device, upload
new device keys, or change their master or self-signing key. Their user-signing
key and the signatures they make of other users' keys are theirs alone: only
they see those users in ``changed`` (as Synapse's user signature stream).
Joins and leaves are recorded on the same stream so that a sync can also tell
the users who newly share a room (``changed``) and those who no longer share
any (``left``).
"""

from __future__ import annotations

import logging

from twisted.internet import defer

from homeserver.services.sync import SyncContext, SyncResponse
from homeserver.storage.device_lists import DeviceListStore
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.streams import StreamIdGenerator
from homeserver.services.edu_outbox import EduOutbox, EphemeralFeed
from homeserver.services.room_events.heads import RoomHeads

logger = logging.getLogger(__name__)

TRACKED_MEMBERSHIPS = ("join", "leave", "ban")


class DeviceListService:
    def __init__(self, *, store: DeviceListStore, events: EventStore, room_heads: RoomHeads, notifier,
                 stream: StreamIdGenerator, federation: EduOutbox, appservices: EphemeralFeed):
        self._store = store
        self._events = events
        self._heads = room_heads
        self._notifier = notifier
        self.stream = stream
        self._federation = federation  # told of the changed devices of local users (m.device_list_update)
        self._appservices = appservices  # the application services' ephemeral events

    async def mark_changed(self, user_id: str, device_ids=()) -> None:
        """Record that ``user_id``'s device list changed (``device_ids``: the local devices that did), and
        wake the syncs that care."""
        device_ids = list(device_ids)
        positions = self.stream.allocate(max(1, len(device_ids)))
        try:
            updates = await self._store.add_change(positions, user_id, device_ids)
        finally:
            self.stream.done(positions)
        rooms = await self._events.rooms_for_user(user_id)
        self._notifier.notify(users=[user_id], rooms=[r for r, (m, _, _) in rooms.items() if m == "join"])
        if updates:
            try:
                await self._federation.on_device_updates(user_id, updates)
                await self._appservices.on_device_updates(user_id, updates)
            except Exception:  # the change is stored: it must not fail the request that made it
                logger.exception("Sending the device updates of %s failed", user_id)

    async def mark_signatures_changed(self, from_user_id: str, user_ids: list[str]) -> None:
        """``from_user_id`` signed ``user_ids``' keys (their own id: a new user-signing key): only they are told."""
        (pos,) = self.stream.allocate()
        try:
            await self._store.add_signature_change(pos, from_user_id, user_ids)
        finally:
            self.stream.done([pos])
        self._notifier.notify(users=[from_user_id])

    async def last_device_update(self, user_id: str) -> int:
        return await self._store.last_device_update(user_id)

    def on_room_events(self, events: list[StoredEvent]) -> None:
        """Room-event listener: record membership changes (runs after the events committed)."""
        members = [e for e in events if e.type == "m.room.member" and e.state_key
                   and e.content.get("membership") in TRACKED_MEMBERSHIPS]
        if members:
            defer.ensureDeferred(self._record_memberships(members)).addErrback(
                lambda f: logger.error("Recording membership changes failed: %s", f.getTraceback()))

    async def _record_memberships(self, members: list[StoredEvent]) -> None:
        rows = []
        for ev in members:
            membership = ev.content["membership"]
            if ev.replaces_state:
                previous = await self._heads.get_event(ev.replaces_state)
                if previous is not None and _side(previous.content.get("membership")) == _side(membership):
                    continue  # a profile change, or ban after leave: nobody starts or stops sharing
            rows.append((ev.room_id, ev.state_key, membership))
        if not rows:
            return
        (pos,) = self.stream.allocate()
        try:
            await self._store.add_memberships(pos, rows)
        finally:
            self.stream.done([pos])
        self._notifier.notify(users={r[1] for r in rows}, rooms={r[0] for r in rows})

    async def changes(self, user_id: str, from_pos: int, to_pos: int) -> tuple[list[str], list[str]]:
        """(changed, left) for ``user_id`` between two positions of the stream (spec GET /keys/changes)."""
        if from_pos >= to_pos:
            return [], []
        memberships = await self._events.rooms_for_user(user_id)
        joined = [r for r, (m, _, _) in memberships.items() if m == "join"]
        sharing = await self._events.users_sharing_rooms(user_id) | {user_id}
        changed = await self._store.changed_users(from_pos, to_pos) & sharing
        maybe_left: set[str] = set()
        for room_id, member, membership in await self._store.memberships(from_pos, to_pos, user_id, joined):
            if member == user_id:
                # We joined: everyone there may be new to us. We left: those there may no longer share a room.
                members = await self._events.joined_members(room_id)
                (changed if membership == "join" else maybe_left).update(members)
            elif membership == "join":
                changed.add(member)
            else:
                maybe_left.add(member)
        changed &= sharing
        changed |= await self._store.signature_changes(from_pos, to_pos, user_id)
        left = maybe_left - sharing
        return sorted(changed), sorted(left)


def _side(membership: str | None) -> str:
    return "in" if membership == "join" else "out"


class DeviceListSource:
    """The "device_lists" sync stream, plus the syncing device's key counts (spec "Extensions to /sync")."""

    name = "device_lists"
    sync_phase = 0  # sync: needs the user's rooms only (services/sync.py SyncSource)
    token_key = "d"  # in sync tokens (services/sync.py)

    def __init__(self, device_lists: DeviceListService, e2e_keys):
        self._device_lists = device_lists
        self._e2e_keys = e2e_keys

    def current(self) -> int:
        return self._device_lists.stream.current()

    def volatile_marker(self, requester) -> int:
        """Changes whenever the key counts this source adds for ``requester`` may have changed."""
        return self._e2e_keys.key_counts_version(requester.user_id)

    async def contribute(self, ctx: SyncContext, response: SyncResponse) -> None:
        since = ctx.since_of(self.name)
        if since is not None:
            changed, left = await self._device_lists.changes(ctx.user_id, since, ctx.to[self.name])
            response["device_lists"] = {"changed": changed, "left": left}
        device_id = ctx.requester.device_id
        if device_id is not None:
            counts, fallback_types = await self._e2e_keys.counts_for_sync(ctx.user_id, device_id)
            response["device_one_time_keys_count"] = counts
            response["device_unused_fallback_key_types"] = fallback_types

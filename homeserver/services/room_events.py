"""Creating, authorising and persisting local room events.

Spec: client-server "Events", room versions "Authorization rules". One
per-room lock serialises appends; current state, extremities and the state
group of each room are kept in memory once loaded, updated only after the
transaction that changes them has committed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet import defer

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.services.auth import random_string
from homeserver.events.auth_rules import auth_types_for_event, check_auth, get_power_level
from homeserver.events.builder import build_event, room_id_from_create_event, validate_pdu
from homeserver.events.errors import AuthError, EventFormatError
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.storage.events import EventStore, NewEvent, StateKey, StoredEvent
from homeserver.storage.streams import StreamIdGenerator

logger = logging.getLogger(__name__)

CREATE_KEY: StateKey = ("m.room.create", "")


@dataclass
class RoomHead:
    """What appending to a room needs: its version, current state, extremities and depth."""

    room_id: str
    version: RoomVersion
    state: dict[StateKey, str]
    extremities: list[str]
    depth: int
    state_group: int | None

    def copy(self) -> "RoomHead":
        return RoomHead(self.room_id, self.version, dict(self.state), list(self.extremities), self.depth,
                        self.state_group)


@dataclass
class EventSpec:
    """A local event to create."""

    sender: str
    type: str
    content: dict
    state_key: str | None = None
    redacts: str | None = None
    txn: tuple[str, str, str] | None = None
    extra_unsigned: dict = field(default_factory=dict)


class EventCache:
    """An LRU of persisted events by id."""

    def __init__(self, size: int = 50_000):
        self._size = size
        self._items: OrderedDict[str, StoredEvent] = OrderedDict()

    def get(self, event_id: str) -> StoredEvent | None:
        ev = self._items.get(event_id)
        if ev is not None:
            self._items.move_to_end(event_id)
        return ev

    def put(self, ev: StoredEvent) -> None:
        self._items[ev.event_id] = ev
        self._items.move_to_end(ev.event_id)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def invalidate(self, event_id: str) -> None:
        self._items.pop(event_id, None)


class RoomEventService:
    def __init__(self, *, clock, store: EventStore, server_name: str, signing_key,
                 stream: StreamIdGenerator, state_group_ids: StreamIdGenerator):
        self._clock = clock
        self._store = store
        self.server_name = server_name
        self._signing_key = signing_key
        self.stream = stream
        self._state_group_ids = state_group_ids
        self._heads: dict[str, RoomHead] = {}
        self._locks: dict[str, defer.DeferredLock] = {}
        self.cache = EventCache()
        self.listeners: list[Callable[[list[StoredEvent]], None]] = []

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- reads -----------------------------------------------------------------------
    async def get_events(self, event_ids) -> dict[str, StoredEvent]:
        found: dict[str, StoredEvent] = {}
        missing = []
        for eid in event_ids:
            ev = self.cache.get(eid)
            if ev is None:
                missing.append(eid)
            else:
                found[eid] = ev
        if missing:
            for eid, ev in (await self._store.get_events(missing)).items():
                self.cache.put(ev)
                found[eid] = ev
        return found

    async def get_event(self, event_id: str) -> StoredEvent | None:
        return (await self.get_events([event_id])).get(event_id)

    async def room_version(self, room_id: str) -> RoomVersion | None:
        head = await self._head(room_id)
        return None if head is None else head.version

    async def current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        head = await self._head(room_id)
        return {} if head is None else dict(head.state)

    async def current_state(self, room_id: str, keys=None) -> dict[StateKey, StoredEvent]:
        ids = await self.current_state_ids(room_id)
        if keys is not None:
            ids = {k: v for k, v in ids.items() if k in keys}
        events = await self.get_events(ids.values())
        return {k: events[v] for k, v in ids.items() if v in events}

    async def current_state_event(self, room_id: str, event_type: str, state_key: str = "") -> StoredEvent | None:
        state = await self.current_state(room_id, {(event_type, state_key)})
        return state.get((event_type, state_key))

    async def membership(self, room_id: str, user_id: str) -> str | None:
        ev = await self.current_state_event(room_id, "m.room.member", user_id)
        return None if ev is None else ev.content.get("membership")

    async def state_at_group(self, group: int | None) -> dict[StateKey, str]:
        return await self._store.get_state_group(group)

    async def _head(self, room_id: str) -> RoomHead | None:
        head = self._heads.get(room_id)
        if head is not None:
            return head
        version_id = await self._store.get_room_version(room_id)
        if version_id is None:
            return None
        state = await self._store.get_current_state_ids(room_id)
        extremities = await self._store.get_forward_extremities(room_id)
        ext_events = await self.get_events(extremities)
        depth = max((e.pdu.get("depth", 0) for e in ext_events.values()), default=0)
        group = max((e.state_group for e in ext_events.values() if e.state_group is not None), default=None)
        head = RoomHead(room_id, KNOWN_ROOM_VERSIONS[version_id], state, extremities, depth, group)
        # Another coroutine may have loaded it meanwhile; keep the first.
        return self._heads.setdefault(room_id, head)

    def _lock(self, room_id: str) -> defer.DeferredLock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = defer.DeferredLock()
        return lock

    # -- writes ------------------------------------------------------------------------
    async def send(self, room_id: str, spec: EventSpec, *, dry_run: bool = False) -> StoredEvent:
        """Create, authorise and persist one local event (idempotent per transaction id).

        The transaction id is checked under the room lock, so concurrent retries make one event.
        With ``dry_run`` the event is built and authorised but not written.
        """
        lock = self._lock(room_id)
        await lock.acquire()
        try:
            if spec.txn is not None:
                existing = await self._store.get_event_id_for_txn(room_id, *spec.txn)
                if existing is not None:
                    return await self.get_event(existing)
            head = await self._head(room_id)
            if head is None:
                raise not_found("Unknown room")
            if dry_run:
                return (await self._prepare(head.copy(), spec, self.now_ms(), {})).event
            return (await self._append(head, [spec], self.now_ms()))[0]
        finally:
            lock.release()

    async def send_batch(self, room_id: str, specs: list[EventSpec]) -> list[StoredEvent]:
        """Append events to a room in order, in one transaction. All are authorised before any is written."""
        lock = self._lock(room_id)
        await lock.acquire()
        try:
            head = await self._head(room_id)
            if head is None:
                raise not_found("Unknown room")
            return await self._append(head, specs, self.now_ms())
        finally:
            lock.release()

    async def create_room(self, version: RoomVersion, create: EventSpec, rest: list[EventSpec],
                          room_id: str | None, is_public: bool) -> tuple[str, list[StoredEvent]]:
        """Write a new room: the create event first (for v12 it names the room), then its initial events."""
        now = self.now_ms()
        if room_id is None and version.room_id_from_create_event:
            probe = self._build(RoomHead("", version, {}, [], 0, None), create, None, now)
            room_id = room_id_from_create_event(probe["event_id"])
        elif room_id is None:
            room_id = f"!{random_string(18)}:{self.server_name}"
        head = RoomHead(room_id, version, {}, [], 0, None)
        lock = self._lock(room_id)
        await lock.acquire()
        try:
            await self._store.store_room(room_id, version.identifier, create.sender, is_public, now)
            self._heads[room_id] = head
            events = await self._append(head, [create] + rest, now)
        finally:
            lock.release()
        return room_id, events

    async def _append(self, head: RoomHead, specs: list[EventSpec], now: int) -> list[StoredEvent]:
        work = head.copy()
        news: list[NewEvent] = []
        pending: dict[str, StoredEvent] = {}
        for spec in specs:
            news.append(await self._prepare(work, spec, now, pending))
        positions = self.stream.allocate(len(news))
        for new, pos in zip(news, positions):
            new.event.stream_ordering = pos
        try:
            await self._store.persist_events(news)
        finally:
            self.stream.done(positions)
        head.state, head.extremities, head.depth, head.state_group = (
            work.state, work.extremities, work.depth, work.state_group)
        events = [n.event for n in news]
        for new in news:
            self.cache.put(new.event)
            if new.redacts:
                self.cache.invalidate(new.redacts)
        for listener in self.listeners:
            listener(events)
        return events

    async def _prepare(self, work: RoomHead, spec: EventSpec, now: int,
                       pending: dict[str, StoredEvent]) -> NewEvent:
        auth_keys = auth_types_for_event(work.version, {"type": spec.type, "sender": spec.sender,
                                                        "state_key": spec.state_key, "content": spec.content})
        auth_keys = set(auth_keys) | {CREATE_KEY}
        auth_ids = {k: work.state[k] for k in auth_keys if k in work.state}
        auth_events = await self._events_incl_pending(auth_ids.values(), pending)
        auth_state = {k: auth_events[v].pdu for k, v in auth_ids.items()}
        pdu = self._build(work, spec, auth_state, now)
        try:
            validate_pdu(pdu, work.version)
        except EventFormatError as e:
            if "too large" in str(e).lower() or "65536" in str(e):
                raise MatrixError(413, "M_TOO_LARGE", str(e))
            raise MatrixError(400, "M_BAD_JSON", str(e))
        try:
            check_auth(work.version, pdu, auth_state)
        except AuthError as e:
            raise forbidden(e.reason)
        redacts = spec.redacts if spec.type == "m.room.redaction" else None
        if redacts is not None:
            redacts = await self._authorised_redaction(work, spec, redacts, auth_state)
        event = StoredEvent(pdu["event_id"], pdu, 0, work.room_id,
                            txn_device=spec.txn[1] if spec.txn else None, txn_id=spec.txn[2] if spec.txn else None)
        new = NewEvent(event=event, txn=spec.txn, prev_state_group=work.state_group,
                       extremities_replaced=list(work.extremities), redacts=redacts)
        if spec.state_key is not None:
            key = (spec.type, spec.state_key)
            event.replaces_state = work.state.get(key)
            new.state_delta = {key: event.event_id}
            new.new_state_group = self._state_group_ids.allocate()[0]
            self._state_group_ids.done([new.new_state_group])
            work.state[key] = event.event_id
            work.state_group = new.new_state_group
        event.state_group = work.state_group
        work.extremities = [event.event_id]
        work.depth = pdu["depth"]
        pending[event.event_id] = event
        return new

    def _build(self, work: RoomHead, spec: EventSpec, auth_state, now: int) -> dict:
        auth_ids = [] if auth_state is None else [
            work.state[k] for k in sorted(auth_state) if k in work.state
            and not (k == CREATE_KEY and not work.version.create_event_in_auth_events)]
        return build_event(
            work.version, server_name=self.server_name, signing_key=self._signing_key,
            room_id=None if (spec.type == "m.room.create" and work.version.room_id_from_create_event) else work.room_id,
            sender=spec.sender, event_type=spec.type, content=spec.content, state_key=spec.state_key,
            prev_events=list(work.extremities), auth_events=auth_ids, depth=min(work.depth + 1, 2**63 - 1),
            origin_server_ts=now, redacts=spec.redacts)

    async def _events_incl_pending(self, ids, pending: dict[str, StoredEvent]) -> dict[str, StoredEvent]:
        ids = list(ids)
        found = {i: pending[i] for i in ids if i in pending}
        found.update(await self.get_events([i for i in ids if i not in pending]))
        return found

    async def _authorised_redaction(self, work: RoomHead, spec: EventSpec, target_id: str, auth_state) -> str | None:
        """Spec "Redactions": a redaction takes effect if the sender may redact others or the target is theirs."""
        target = await self.get_event(target_id)
        if target is None or target.room_id != work.room_id:
            return None
        if target.sender == spec.sender:
            return target_id
        create = auth_state.get(CREATE_KEY)
        pl_event = auth_state.get(("m.room.power_levels", ""))
        level = get_power_level(work.version, create, pl_event, spec.sender)
        redact_level = 50
        if pl_event is not None:
            redact_level = int(pl_event.get("content", {}).get("redact", 50))
        if level >= redact_level:
            return target_id
        raise forbidden("You may not redact other users' events")

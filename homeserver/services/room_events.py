"""Creating, authorising and persisting local room events.

Spec: client-server "Events", room versions "Authorization rules". One
per-room lock serialises appends; current state, extremities and the state
group of each room are kept in memory once loaded, updated only after the
transaction that changes them has committed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from twisted.internet import defer

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.services.auth import random_string
from homeserver.events.auth_rules import auth_types_for_event, check_auth, get_power_level
from homeserver.events.builder import build_event, event_id_list, room_id_from_create_event, validate_pdu
from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.hashing import event_id_of, strip_convenience_keys
from homeserver.events.identifiers import domain_of
from homeserver.events.redaction import redact_event
from homeserver.events.room_head import advance, state_after, state_delta
from homeserver.events.state_res import resolve_state
from homeserver.events.errors import AuthError, EventFormatError
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.lru import LruCache
from homeserver.storage.events import CurrentStateEntry, EventStore, NewEvent, StateKey, StoredEvent
from homeserver.storage.streams import StreamIdGenerator

logger = logging.getLogger(__name__)

CREATE_KEY: StateKey = ("m.room.create", "")
EVENT_CACHE_SIZE = 50_000  # persisted events kept in memory
JOIN_WAIT_S = 60  # longest a request about a room waits for its join to complete


def federation_form(ev: StoredEvent, version: RoomVersion) -> dict:
    """The PDU as other servers are sent it: pruned once redacted (server-server "Redactions"),
    without the v3+ convenience ``event_id``."""
    return strip_convenience_keys(redact_event(ev.pdu, version) if ev.redacted_by else ev.pdu, version)


def redact_encoded(text: str, version: RoomVersion) -> bytes:
    """The pruned form of a stored PDU's JSON."""
    return encode_canonical_json(redact_event(json.loads(text), version))


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
    # Called with the built, authorised PDU before it is written; returns the PDU to store
    # (an invite co-signed by the invitee's server).
    countersign: Callable[[dict], Awaitable[dict]] | None = None
    origin_server_ts: int | None = None  # an appservice's ?ts= (application service API "Timestamp massaging")


@dataclass
class ExternalEvent:
    """A PDU from another server, already checked, to persist.

    Outliers are stored without state. Other events need the state before them;
    ``state_before_group`` names a stored group equal to ``state_before`` when there is one.
    """

    pdu: dict
    outlier: bool = False
    state_before: dict[StateKey, str] | None = None
    state_before_group: int | None = None
    soft_failed: bool = False
    encoded: bytes | None = None  # the PDU's canonical JSON, when the checks encoded it already


class RoomEventService:
    def __init__(self, *, clock, store: EventStore, server_name: str, signing_key,
                 stream: StreamIdGenerator, state_group_ids: StreamIdGenerator,
                 listeners: Sequence[Callable[[list[StoredEvent]], None]]):
        self._clock = clock
        self._store = store
        self.server_name = server_name
        self._signing_key = signing_key
        self.stream = stream
        self._state_group_ids = state_group_ids
        self._heads: dict[str, RoomHead] = {}
        self._locks: dict[str, defer.DeferredLock] = {}
        self.cache: LruCache[str, StoredEvent] = LruCache(EVENT_CACHE_SIZE)  # persisted events by ID
        self._last_create_ts = 0
        self._backfill_floor: int | None = None  # backfilled events count down from below every other
        self._listeners = listeners  # called in order with each batch of new events (see server.py)
        self._completing: dict[str, list[defer.Deferred]] = {}  # rooms whose join is completing: waiters
        self._until_known: list[defer.Deferred] | None = None  # start-up: partial joins not read yet

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- joins completing in the background -------------------------------------------
    def complete_later(self, room_id: str) -> None:
        """A join of ``room_id`` through another server is being completed (its state checked and stored;
        with send_join ``omit_members``, the member events fetched afterwards): until :meth:`completed`,
        requests about the room wait in :meth:`settled`."""
        self._completing.setdefault(room_id, [])

    def completed(self, room_id: str) -> None:
        for waiter in self._completing.pop(room_id, []):
            waiter.callback(None)

    async def record_partial_join(self, room_id: str, event_id: str, servers: list[str]) -> None:
        """A join accepted with partial state, to complete again after a restart."""
        await self._store.add_partial_join(room_id, event_id, servers)

    async def end_partial_join(self, room_id: str) -> None:
        await self._store.remove_partial_join(room_id)
        self.completed(room_id)

    async def partial_joins(self) -> list[tuple[str, str, list[str]]]:
        return await self._store.partial_joins()

    def hold_until_partial_joins_known(self) -> None:
        """At start-up, before serving: requests about any room wait in :meth:`settled` until
        :meth:`partial_joins_known` (the joins to resume are read from the database first)."""
        self._until_known = []

    def partial_joins_known(self) -> None:
        waiters, self._until_known = self._until_known or [], None
        for waiter in waiters:
            waiter.callback(None)

    async def settled(self, room_id: str) -> None:
        """Return once no join of the room is completing, or after JOIN_WAIT_S (the request then
        finds the room as it is)."""
        if self._until_known is not None:
            known: defer.Deferred = defer.Deferred()
            self._until_known.append(known)
            await known
        waiters = self._completing.get(room_id)
        if waiters is None:
            return
        waiter: defer.Deferred = defer.Deferred()
        waiters.append(waiter)
        waiter.addTimeout(JOIN_WAIT_S, self._clock)
        try:
            await waiter
        except defer.TimeoutError:
            logger.warning("Still completing the join of %s after %ds", room_id, JOIN_WAIT_S)
            if waiter in waiters:
                waiters.remove(waiter)

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
                self.cache.put(ev.event_id, ev)
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

    async def forward_extremities(self, room_id: str) -> list[str]:
        head = await self._head(room_id)
        return [] if head is None else list(head.extremities)

    async def timeline_events_after(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        """Timeline events of every room with after < stream ordering <= upto, oldest first."""
        return await self._store.timeline_events_after(after, upto, limit)

    async def oldest_events(self, room_id: str) -> list[StoredEvent]:
        return await self._store.oldest_events(room_id)

    async def event_by_timestamp(self, room_id: str, ts: int, forwards: bool) -> tuple[str, int] | None:
        return await self._store.event_position_by_ts(room_id, ts, forwards)

    async def state_at_group(self, group: int | None) -> dict[StateKey, str]:
        return await self._store.get_state_group(group)

    async def server_view_of_state(self, groups, server_name: str) -> dict[int, dict[StateKey, str]]:
        """The history visibility and a server's memberships in each state group (a superset: see the store)."""
        return await self._store.server_view_of_state_groups(groups, server_name)

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
        group = next(iter(ext_events.values())).state_group if len(ext_events) == 1 else None
        head = RoomHead(room_id, KNOWN_ROOM_VERSIONS[version_id], state, extremities, depth, group)
        # Another coroutine may have loaded it meanwhile; keep the first.
        return self._heads.setdefault(room_id, head)

    async def _head_or_new(self, room_id: str, version: RoomVersion) -> RoomHead:
        """The room's head, recording the room first if this server has never seen it (call under the lock)."""
        head = await self._head(room_id)
        if head is None:
            await self._store.store_room(room_id, version.identifier, None, False, self.now_ms())
            head = self._heads[room_id] = RoomHead(room_id, version, {}, [], 0, None)
        return head

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
        async with self._lock(room_id):
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

    async def send_batch(self, room_id: str, specs: list[EventSpec]) -> list[StoredEvent]:
        """Append events to a room in order, in one transaction. All are authorised before any is written."""
        async with self._lock(room_id):
            head = await self._head(room_id)
            if head is None:
                raise not_found("Unknown room")
            return await self._append(head, specs, self.now_ms())

    async def create_room(self, version: RoomVersion, create: EventSpec, rest: list[EventSpec],
                          room_id: str | None, is_public: bool) -> tuple[str, list[StoredEvent]]:
        """Write a new room: the create event first (for v12 it names the room), then its initial events.

        Create timestamps are kept strictly increasing so that two identical v12 create events made in
        the same millisecond still name two rooms."""
        now = self._last_create_ts = max(self.now_ms(), self._last_create_ts + 1)
        if room_id is None and version.room_id_from_create_event:
            probe = self._build(RoomHead("", version, {}, [], 0, None), create, None, now)
            room_id = room_id_from_create_event(probe["event_id"])
        elif room_id is None:
            room_id = f"!{random_string(18)}:{self.server_name}"
        head = RoomHead(room_id, version, {}, [], 0, None)
        async with self._lock(room_id):
            await self._store.store_room(room_id, version.identifier, create.sender, is_public, now)
            self._heads[room_id] = head
            events = await self._append(head, [create] + rest, now)
        return room_id, events

    async def _append(self, head: RoomHead, specs: list[EventSpec], now: int) -> list[StoredEvent]:
        work = head.copy()
        news: list[NewEvent] = []
        pending: dict[str, StoredEvent] = {}
        for spec in specs:
            new = await self._prepare(work, spec, now, pending)
            if spec.countersign is not None:
                new.event.pdu = await spec.countersign(new.event.pdu)
                new.encoded = None  # it has another signature now
            news.append(new)
        positions = self.stream.allocate(len(news))
        for new, pos in zip(news, positions):
            new.event.stream_ordering = pos
            new.current_state_delta = {k: CurrentStateEntry(e.event_id, e.membership, pos)
                                       for k, e in new.current_state_delta.items()}
        try:
            await self._store.persist_events(news)
        finally:
            self.stream.done(positions)
        head.state, head.extremities, head.depth, head.state_group = (
            work.state, work.extremities, work.depth, work.state_group)
        events = [n.event for n in news]
        for new in news:
            self.cache.put(new.event.event_id, new.event)
            if new.redacts:
                self.cache.pop(new.redacts)
        self._announce(events)
        return events

    def _announce(self, events: list[StoredEvent]) -> None:
        """Call the listeners once the stream shows these events (a lower position may still be committing)."""
        def call_listeners() -> None:
            for listener in self._listeners:
                listener(events)

        if events:
            self.stream.when_visible(max(e.stream_ordering for e in events), call_listeners)

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
            encoded = validate_pdu(pdu, work.version)
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
                       extremities_remove=list(work.extremities), redacts=redacts, encoded=encoded)
        if spec.state_key is not None:
            key = (spec.type, spec.state_key)
            event.replaces_state = work.state.get(key)
            work.state[key] = event.event_id
            new.current_state_delta = {key: CurrentStateEntry(
                event.event_id, spec.content.get("membership") if spec.type == "m.room.member" else None, 0)}
            new.state_group_delta = {key: event.event_id} if work.state_group is not None else dict(work.state)
            work.state_group = self._new_state_group()
        elif work.state_group is None:
            # After a merge of several extremities no group holds the resolved state yet: snapshot it.
            new.state_group_delta = dict(work.state)
            work.state_group = self._new_state_group()
        event.state_group = work.state_group
        work.extremities = [event.event_id]
        work.depth = pdu["depth"]
        pending[event.event_id] = event
        return new

    async def template(self, room_id: str, spec: EventSpec) -> tuple[RoomVersion, dict]:
        """An unsigned event template for another server to complete (make_join, make_leave, make_knock)."""
        head = await self._head(room_id)
        if head is None or not head.extremities:
            raise not_found("Unknown room")
        work = head.copy()
        auth_keys = set(auth_types_for_event(work.version, {"type": spec.type, "sender": spec.sender,
                                                            "state_key": spec.state_key, "content": spec.content}))
        auth_keys.add(CREATE_KEY)
        auth_state = {k: work.state[k] for k in auth_keys if k in work.state}
        pdu = self._build(work, spec, auth_state, self.now_ms())
        template = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures", "event_id")}
        return work.version, template

    # -- events from other servers -------------------------------------------------------------
    async def persist_external(self, room_id: str, version: RoomVersion, items: list[ExternalEvent]
                               ) -> list[StoredEvent]:
        """Persist checked remote events in order; the room is created if we did not know it."""
        async with self._lock(room_id):
            head = await self._head_or_new(room_id, version)
            work = head.copy()
            known = await self.get_events(event_id_of(i.pdu, version) for i in items)
            # An event we hold is stored once; an outlier we hold may join the timeline now.
            items = [i for i in items if event_id_of(i.pdu, version) not in known
                     or (not i.outlier and known[event_id_of(i.pdu, version)].outlier)]
            positions = self.stream.allocate(len(items))
            news = []
            pending: dict[str, StoredEvent] = {}
            try:  # done() even if preparing fails: an unfinished position would hold the stream back
                for item, pos in zip(items, positions):
                    new = await self._prepare_external(work, item, pos, pending)
                    new.was_outlier = new.event.event_id in known
                    news.append(new)
                redacted = await self._store.persist_events(news, apply_pending_redactions=True)
            finally:
                self.stream.done(positions)
            head.state, head.extremities, head.depth, head.state_group = (
                work.state, work.extremities, work.depth, work.state_group)
        events = [n.event for n in news]
        for ev in events:
            ev.redacted_by = redacted.get(ev.event_id, ev.redacted_by)
            self.cache.put(ev.event_id, ev)
        for new in news:
            if new.redacts:
                self.cache.pop(new.redacts)
        self._announce([e for e in events if not e.outlier])
        return events

    async def store_out_of_band_membership(self, room_id: str, version: RoomVersion, pdu: dict) -> StoredEvent:
        """An invite, knock or rejection for a room this server is not in (spec "Inviting to a room"):
        stored as an outlier that sets the local user's membership, so /sync shows it."""
        async with self._lock(room_id):
            head = await self._head_or_new(room_id, version)
            pos = self.stream.allocate()[0]
            event = StoredEvent(event_id_of(pdu, version), pdu, pos, room_id, outlier=True)
            key = ("m.room.member", pdu["state_key"])
            try:
                await self._store.persist_out_of_band_membership(event, CurrentStateEntry(
                    event.event_id, pdu["content"]["membership"], pos))
            finally:
                self.stream.done([pos])
            head.state[key] = event.event_id
        self.cache.put(event.event_id, event)
        self._announce([event])
        return event

    async def persist_backfilled(self, room_id: str, version: RoomVersion, pdus: list[dict]) -> list[StoredEvent]:
        """History fetched with /backfill: stored before everything we hold (negative stream
        positions, newest first), never in /sync, without changing the room's current state."""
        async with self._lock(room_id):
            if self._backfill_floor is None:
                self._backfill_floor = min(await self._store.min_stream_ordering(), 0)
            known = await self.get_events(event_id_of(p, version) for p in pdus)
            news = []
            for pdu in sorted(pdus, key=lambda p: -p.get("depth", 0)):
                self._backfill_floor -= 1
                event_id = event_id_of(pdu, version)
                news.append(NewEvent(event=StoredEvent(event_id, pdu, self._backfill_floor, room_id),
                                     add_extremity=False, was_outlier=event_id in known))
            await self._store.persist_events(news)
        for new in news:
            self.cache.put(new.event.event_id, new.event)
        return [n.event for n in news]

    async def _prepare_external(self, work: RoomHead, item: ExternalEvent, pos: int,
                                pending: dict[str, StoredEvent]) -> NewEvent:
        pdu = item.pdu
        event = StoredEvent(event_id_of(pdu, work.version), pdu, pos, work.room_id,
                            outlier=item.outlier or item.soft_failed)
        new = NewEvent(event=event, add_extremity=not event.outlier, encoded=item.encoded)
        pending[event.event_id] = event
        if item.state_before is None:
            return new
        key = (pdu["type"], pdu["state_key"]) if "state_key" in pdu else None
        after = state_after(item.state_before, key, event.event_id)
        if key is not None:
            event.replaces_state = item.state_before.get(key)
        if key is None and item.state_before_group is not None:
            event.state_group = item.state_before_group
        else:
            event.state_group = self._new_state_group()
            new.prev_state_group = item.state_before_group
            new.state_group_delta = {key: event.event_id} if item.state_before_group is not None else after
        if event.outlier:
            return new
        if pdu["type"] == "m.room.redaction":
            await self._external_redaction(work, new, item.state_before, pending)
        moved = advance(work.extremities, work.depth, event.event_id, event_id_list(pdu.get("prev_events", [])),
                        pdu.get("depth", 0))
        new.extremities_remove, work.extremities, work.depth = moved.removed, moved.extremities, moved.depth
        if work.extremities == [event.event_id]:
            resolved, work.state_group = after, event.state_group
        else:
            resolved = await self._resolve_extremities(work, pending)
            work.state_group = None
        changed = state_delta(work.state, resolved)
        changed_events = await self._events_incl_pending(changed.values(), pending)
        new.current_state_delta = {
            k: CurrentStateEntry(v, changed_events[v].content.get("membership") if k[0] == "m.room.member" else None,
                                 changed_events[v].stream_ordering)
            for k, v in changed.items() if v in changed_events}
        work.state = resolved
        return new

    async def _resolve_extremities(self, work: RoomHead, pending: dict[str, StoredEvent]) -> dict[StateKey, str]:
        """The room's state: the resolution of the state after each forward extremity."""
        ext = await self._events_incl_pending(work.extremities, pending)
        state_sets = []
        for ev in ext.values():
            group_state = await self._store.get_state_group(ev.state_group)
            if ev.state_key is not None and ev.event_id in pending and ev.state_group is not None:
                group_state[(ev.type, ev.state_key)] = ev.event_id
            state_sets.append(group_state)
        return await self.resolve(work.version, state_sets, pending)

    async def resolve(self, version: RoomVersion, state_sets: list[dict], pending=None) -> dict[StateKey, str]:
        """State resolution over stored events (preloads the events and auth chains it needs)."""
        state_sets = [s for s in state_sets if s] or [{}]
        if len(state_sets) == 1:
            return dict(state_sets[0])
        ids = {i for s in state_sets for i in s.values()}
        loaded = await self.auth_closure(ids, pending or {})
        return resolve_state(version, state_sets, lambda i: loaded.get(i))

    async def auth_closure(self, event_ids, pending=None) -> dict[str, dict]:
        """The given events and every event reachable through their auth_events, as PDUs."""
        pending = pending or {}
        found: dict[str, dict] = {}
        frontier = set(event_ids)
        while frontier:
            events = await self._events_incl_pending(frontier, pending)
            frontier = set()
            for eid, ev in events.items():
                found[eid] = ev.pdu
                frontier.update(a for a in event_id_list(ev.pdu.get("auth_events", [])) if a not in found)
            frontier -= found.keys()
        return found

    async def federation_json(self, event_ids, version: RoomVersion) -> dict[str, bytes]:
        """The events as other servers are sent them, as JSON (see :func:`federation_form`): the stored
        encoding itself, never decoded, unless the event was redacted."""
        return {eid: redact_encoded(text, version) if redacted else text.encode("utf-8")
                for eid, (text, redacted) in (await self._store.get_pdu_json(event_ids)).items()}

    def _new_state_group(self) -> int:
        group = self._state_group_ids.allocate()[0]
        self._state_group_ids.done([group])
        return group

    def _build(self, work: RoomHead, spec: EventSpec, auth_state, now: int) -> dict:
        auth_ids = [] if auth_state is None else [
            work.state[k] for k in sorted(auth_state) if k in work.state
            and not (k == CREATE_KEY and not work.version.create_event_in_auth_events)]
        return build_event(
            work.version, server_name=self.server_name, signing_key=self._signing_key,
            room_id=None if (spec.type == "m.room.create" and work.version.room_id_from_create_event) else work.room_id,
            sender=spec.sender, event_type=spec.type, content=spec.content, state_key=spec.state_key,
            prev_events=list(work.extremities), auth_events=auth_ids, depth=min(work.depth + 1, 2**63 - 1),
            origin_server_ts=now if spec.origin_server_ts is None else spec.origin_server_ts, redacts=spec.redacts)

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
        if target.sender == spec.sender or _may_redact_others(work.version, auth_state, spec.sender):
            return target_id
        raise forbidden("You may not redact other users' events")

    async def _external_redaction(self, work: RoomHead, new: NewEvent, state_before: dict[StateKey, str],
                                  pending: dict[str, StoredEvent]) -> None:
        """Spec room versions, "Redactions": a remote redaction (``redacts`` top-level up to v10, in ``content``
        from v11) applies to an event of its room whose sender has its sender's domain, or to any if its
        sender may redact others by the power levels before it. One whose target we lack yet waits for it."""
        pdu = new.event.pdu
        target_id = pdu.get("content", {}).get("redacts") if work.version.redacts_in_content else pdu.get("redacts")
        if not isinstance(target_id, str):
            return
        keys = [CREATE_KEY, ("m.room.power_levels", "")]
        auth_events = await self._events_incl_pending([state_before[k] for k in keys if k in state_before], pending)
        auth_state = {k: auth_events[state_before[k]].pdu for k in keys if state_before.get(k) in auth_events}
        by_power = _may_redact_others(work.version, auth_state, pdu["sender"])
        target = (await self._events_incl_pending([target_id], pending)).get(target_id)
        if target is None:
            new.pending_redaction = (target_id, None if by_power else domain_of(pdu["sender"]))
        elif target.room_id == work.room_id and (by_power or domain_of(target.sender) == domain_of(pdu["sender"])):
            new.redacts = target_id


def _may_redact_others(version: RoomVersion, auth_state: dict[StateKey, dict], sender: str) -> bool:
    """Whether ``sender`` has the power level's ``redact`` level (default 50)."""
    create = auth_state.get(CREATE_KEY)
    pl_event = auth_state.get(("m.room.power_levels", ""))
    level = get_power_level(version, create, pl_event, sender)
    try:
        redact_level = int((pl_event or {}).get("content", {}).get("redact", 50))
    except (TypeError, ValueError):
        redact_level = 50
    return level >= redact_level

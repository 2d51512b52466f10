"""Every room's head (version, current state, forward extremities, depth, state group) and the room events
read through one event cache: the object the writers share and every service reads.

Spec server-server "Room state resolution" and "Forward extremities". A head is loaded once, then changed
only by a writer holding the room's lock, after the transaction that changes it has committed. Its state
dict is never changed in place (a change replaces it), so what is read from one state (a room's members,
:class:`RoomMembers`) stays valid while the head holds that dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence

from twisted.internet import defer

from homeserver.events.builder import event_id_list
from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.hashing import strip_convenience_keys
from homeserver.events.identifiers import domain_of
from homeserver.events.redaction import redact_event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.state_res import resolve_state
from homeserver.lru import LruCache
from homeserver.shared_reads import SharedReads
from homeserver.storage.events import EventStore, NewEvent, StateKey, StoredEvent
from homeserver.storage.streams import StreamIdGenerator

CREATE_KEY: StateKey = ("m.room.create", "")

RoomEventListener = Callable[[list[StoredEvent]], None]


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
        """A working copy; it shares the state dict, which a change replaces (see the module docstring)."""
        return RoomHead(self.room_id, self.version, self.state, list(self.extremities), self.depth,
                        self.state_group)

    def take(self, work: "RoomHead") -> None:
        """Become ``work`` (a copy changed by events now committed)."""
        self.state, self.extremities, self.depth, self.state_group = (
            work.state, work.extremities, work.depth, work.state_group)


@dataclass(frozen=True)
class RoomMembers:
    """A room's joined members by server, with their display names (None where not a string), and its invited
    users, read from ``state`` (a head's state dict); not to be changed."""

    state: dict[StateKey, str]
    joined: dict[str, dict[str, str | None]]  # server -> its joined users -> display name
    invited: frozenset[str]

    @property
    def joined_count(self) -> int:
        return sum(len(users) for users in self.joined.values())

    def joined_users(self) -> list[str]:
        return [u for users in self.joined.values() for u in users]

    def moved(self, state: dict[StateKey, str], changed: dict[str, StoredEvent | None]) -> "RoomMembers":
        """These members as ``state`` has them, given the member event (None: none) of each user whose member
        event differs there."""
        joined, invited = dict(self.joined), set(self.invited)
        by_server: dict[str, dict[str, str | None]] = {}
        for user_id, ev in changed.items():
            server = domain_of(user_id)
            if server is None:  # not a user ID: no one's membership
                continue
            users = by_server.get(server)
            if users is None:
                users = by_server[server] = dict(joined.get(server, {}))
            users.pop(user_id, None)
            invited.discard(user_id)
            content = ev.content if ev is not None else {}
            if content.get("membership") == "join":
                name = content.get("displayname")
                users[user_id] = name if isinstance(name, str) else None
            elif content.get("membership") == "invite":
                invited.add(user_id)
        for server, users in by_server.items():
            if users:
                joined[server] = users
            else:
                joined.pop(server, None)
        return RoomMembers(state, joined, frozenset(invited))


NO_MEMBERS = RoomMembers({}, {}, frozenset())


def announce(stream: StreamIdGenerator, listeners: Sequence[RoomEventListener], events: list[StoredEvent]) -> None:
    """Call the listeners, in order, once the stream shows these events (a lower position may still be
    committing)."""
    def call_listeners() -> None:
        for listener in listeners:
            listener(events)

    if events:
        stream.when_visible(max(e.stream_ordering for e in events), call_listeners)


class RoomHeads:
    def __init__(self, *, clock, store: EventStore, stream: StreamIdGenerator, state_group_ids: StreamIdGenerator,
                 event_cache_size: int):
        self._clock = clock
        self._store = store
        self.stream = stream  # stream orderings of room events
        self._state_group_ids = state_group_ids
        self._heads: dict[str, RoomHead] = {}
        self._members: dict[str, RoomMembers] = {}  # read from each room's state, as it was when last asked
        self._forgotten = 0  # how many times ``forget`` ran: a head loaded across one is not kept
        self._locks: dict[str, defer.DeferredLock] = {}
        self.cache: LruCache[str, StoredEvent] = LruCache(event_cache_size)  # persisted events by ID
        self._reads: SharedReads[str, StoredEvent] = SharedReads(store.get_events, self._keep_events)

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- events ------------------------------------------------------------------------
    async def get_events(self, event_ids) -> dict[str, StoredEvent]:
        """The events found, from the cache or read from the store; an event another reader is reading now
        is waited for, not read again (the first requests to a big room after a start all want its thousands
        of member events: read once, they are held once)."""
        found: dict[str, StoredEvent] = {}
        missing = []
        for eid in event_ids:
            ev = self.cache.get(eid)
            if ev is not None:
                found[eid] = ev
            else:
                missing.append(eid)
        if missing:
            found.update(await self._reads.read(missing))
        return found

    def _keep_events(self, loaded: dict[str, StoredEvent]) -> None:
        for ev in loaded.values():
            self.cache.put(ev.event_id, ev)

    async def get_event(self, event_id: str) -> StoredEvent | None:
        return (await self.get_events([event_id])).get(event_id)

    async def events_incl_pending(self, ids, pending: dict[str, StoredEvent]) -> dict[str, StoredEvent]:
        """The events, from ``pending`` (being persisted) or stored."""
        ids = list(ids)
        found = {i: pending[i] for i in ids if i in pending}
        found.update(await self.get_events([i for i in ids if i not in pending]))
        return found

    def remember(self, news: list[NewEvent]) -> None:
        """Events just committed join the cache; the events they redact leave it."""
        for new in news:
            self.cache.put(new.event.event_id, new.event)
            if new.redacts:
                self.cache.pop(new.redacts)

    async def timeline_events_after(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        """Timeline events of every room with after < stream ordering <= upto, oldest first."""
        return await self._store.timeline_events_after(after, upto, limit)

    async def oldest_events(self, room_id: str) -> list[StoredEvent]:
        return await self._store.oldest_events(room_id)

    async def event_by_timestamp(self, room_id: str, ts: int, forwards: bool) -> tuple[str, int] | None:
        return await self._store.event_position_by_ts(room_id, ts, forwards)

    async def federation_json(self, event_ids, version: RoomVersion) -> dict[str, bytes]:
        """The events as other servers are sent them, as JSON (see :func:`federation_form`): the stored
        encoding itself, never decoded, unless the event was redacted."""
        return {eid: redact_encoded(text, version) if redacted else text.encode("utf-8")
                for eid, (text, redacted) in (await self._store.get_pdu_json(event_ids)).items()}

    async def auth_closure(self, event_ids, pending=None) -> dict[str, dict]:
        """The given events and every event reachable through their auth_events, as PDUs, oldest (by depth)
        first: a reader that takes the chain in order (SyTest's, say) meets an event's auth events before it,
        and of two state events at one key, the later last."""
        pending = pending or {}
        found: dict[str, dict] = {}
        frontier = set(event_ids)
        while frontier:
            events = await self.events_incl_pending(frontier, pending)
            frontier = set()
            for eid, ev in events.items():
                found[eid] = ev.pdu
                frontier.update(a for a in event_id_list(ev.pdu.get("auth_events", [])) if a not in found)
            frontier -= found.keys()
        return dict(sorted(found.items(), key=lambda item: (_depth(item[1]), item[0])))

    # -- state ---------------------------------------------------------------------------
    async def room_version(self, room_id: str) -> RoomVersion | None:
        head = await self.head(room_id)
        return None if head is None else head.version

    async def current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        head = await self.head(room_id)
        return {} if head is None else dict(head.state)

    async def current_state(self, room_id: str, keys=None) -> dict[StateKey, StoredEvent]:
        """The room's current state events, or only those under ``keys`` (looked up, not filtered: a big
        room's state is thousands of members)."""
        if keys is None:
            ids = await self.current_state_ids(room_id)
        else:
            head = await self.head(room_id)
            state = {} if head is None else head.state
            ids = {k: state[k] for k in keys if k in state}
        events = await self.get_events(ids.values())
        return {k: events[v] for k, v in ids.items() if v in events}

    async def current_state_event(self, room_id: str, event_type: str, state_key: str = "") -> StoredEvent | None:
        state = await self.current_state(room_id, {(event_type, state_key)})
        return state.get((event_type, state_key))

    async def members(self, room_id: str) -> RoomMembers:
        """The room's current joined and invited members: only the member events changed since they were last
        asked for are read (sending to a big room reads none)."""
        head = await self.head(room_id)
        if head is None:
            return NO_MEMBERS
        known, state = self._members.get(room_id, NO_MEMBERS), head.state
        if known.state is state:
            return known
        ids = {k[1]: v for k, v in state.items() - known.state.items() if k[0] == "m.room.member"}
        events = await self.get_events(ids.values())
        changed: dict[str, StoredEvent | None] = {k[1]: None for k in known.state.keys() - state.keys()
                                                  if k[0] == "m.room.member"}
        changed.update((user_id, events.get(event_id)) for user_id, event_id in ids.items())
        members = known.moved(state, changed)
        if self._members.get(room_id, NO_MEMBERS) is known:  # not overtaken by a newer read meanwhile
            self._members[room_id] = members
        return members

    async def membership(self, room_id: str, user_id: str) -> str | None:
        ev = await self.current_state_event(room_id, "m.room.member", user_id)
        return None if ev is None else ev.content.get("membership")

    async def forward_extremities(self, room_id: str) -> list[str]:
        head = await self.head(room_id)
        return [] if head is None else list(head.extremities)

    async def state_at_group(self, group: int | None, room_id: str | None = None) -> dict[StateKey, str]:
        """A state group's state; from memory when it is the current state of ``room_id`` (the group's room),
        as when an event arrives on the latest one."""
        head = self._heads.get(room_id) if room_id is not None else None
        if head is not None and group is not None and head.state_group == group:
            return dict(head.state)
        return await self._store.get_state_group(group)

    async def state_groups(self, groups, room_ids) -> dict[int | None, dict[StateKey, str]]:
        """The store's ``get_state_groups``, but a group the head of one of ``room_ids`` is at (in memory) is its
        current state: a group never changes, so it is that state whenever it was read."""
        wanted = set(groups)
        known = {head.state_group: dict(head.state) for room_id in room_ids
                 if (head := self._heads.get(room_id)) is not None and head.state_group is not None
                 and head.state_group in wanted}
        missing = [g for g in wanted if g not in known]
        return known | (await self._store.get_state_groups(missing) if missing else {})

    async def server_view_of_state(self, groups, server_name: str) -> dict[int, dict[StateKey, str]]:
        """The history visibility and a server's memberships in each state group (a superset: see the store)."""
        return await self._store.server_view_of_state_groups(groups, server_name)

    async def resolve(self, version: RoomVersion, state_sets: list[dict], pending=None) -> dict[StateKey, str]:
        """State resolution over stored events (preloads the events and auth chains it needs)."""
        state_sets = [s for s in state_sets if s] or [{}]
        if len(state_sets) == 1:
            return dict(state_sets[0])
        ids = {i for s in state_sets for i in s.values()}
        loaded = await self.auth_closure(ids, pending or {})
        return resolve_state(version, state_sets, lambda i: loaded.get(i))

    def new_state_group(self) -> int:
        group = self._state_group_ids.allocate()[0]
        self._state_group_ids.done([group])
        return group

    # -- heads (the writers') -------------------------------------------------------------------
    async def head(self, room_id: str) -> RoomHead | None:
        """The room's head, loaded from the store the first time; None for a room this server never saw."""
        head = self._heads.get(room_id)
        if head is not None:
            return head
        forgotten = self._forgotten
        version_id = await self._store.get_room_version(room_id)
        if version_id is None:
            return None
        state = await self._store.get_current_state_ids(room_id)
        extremities = await self._store.get_forward_extremities(room_id)
        ext_events = await self.get_events(extremities)
        depth = max((e.pdu.get("depth", 0) for e in ext_events.values()), default=0)
        group = next(iter(ext_events.values())).state_group if len(ext_events) == 1 else None
        head = RoomHead(room_id, KNOWN_ROOM_VERSIONS[version_id], state, extremities, depth, group)
        if forgotten != self._forgotten:  # another process changed a room meanwhile: this may predate it
            return head
        # Another coroutine may have loaded it meanwhile; keep the first.
        return self._heads.setdefault(room_id, head)

    def forget(self, room_ids, event_ids=()) -> None:
        """Another process changed these rooms' state or redacted these events: read them again when next
        asked (a worker's heads are only ever read)."""
        self._forgotten += 1
        self._reads.invalidate()
        for room_id in room_ids:
            self._heads.pop(room_id, None)
            self._members.pop(room_id, None)
        for event_id in event_ids:
            self.cache.pop(event_id)

    def forget_all(self) -> None:
        self._forgotten += 1
        self._reads.invalidate()
        self._heads.clear()
        self._members.clear()
        self.cache.clear()

    async def new_room(self, room_id: str, version: RoomVersion, creator: str | None, is_public: bool,
                       now: int) -> RoomHead:
        """Record a room this server has never seen, with an empty head (call under the room's lock)."""
        await self._store.store_room(room_id, version.identifier, creator, is_public, now)
        head = self._heads[room_id] = RoomHead(room_id, version, {}, [], 0, None)
        return head

    def lock(self, room_id: str) -> defer.DeferredLock:
        """The lock that serialises the writes to one room."""
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = defer.DeferredLock()
        return lock


def _depth(pdu: dict) -> int:
    depth = pdu.get("depth")
    return depth if isinstance(depth, int) and not isinstance(depth, bool) else 0

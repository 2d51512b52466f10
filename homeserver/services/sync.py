"""/sync (client-server "Syncing"): rooms from the events stream, the rest from sync sources.

Each stream other than the events (account data, receipts, typing, to-device,
device lists, presence, ...) is a ``SyncSource`` that adds its part of the
response. A waiting sync sleeps on the notifier.

A sync token (``next_batch``, ``since``, and the ``from``/``to`` of /messages,
/search and /keys/changes) names the position of every stream:
``s<events>`` then ``_<key><position>`` for each other stream whose position
is not 0, ``key`` being the source's ``token_key`` (lower-case letters), e.g.
``s1204_a3_r17_t9_d2_p40``. Missing streams are at 0; unknown keys (a token of
a newer server) are ignored. A position may be negative (the events of history
fetched over federation are numbered down from 0). Only ``[a-z0-9_-]``: the
token is URL-safe.

| key | stream        |   | key | stream        |
|-----|---------------|---|-----|---------------|
| s   | events        |   | x   | to_device     |
| a   | account_data  |   | d   | device_lists  |
| r   | receipts      |   | p   | presence      |
| t   | typing        |   | n   | notifications |

Tokens issued before the streams were named (``s<events>_<n1>_<n2>...``, every
part a number) are read in the order the streams had then, ``LEGACY_ORDER``,
so clients keep their ``since`` across the upgrade.
"""

from __future__ import annotations

import dataclasses
import heapq
import re
import secrets
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

from twisted.internet import defer

from homeserver.errors import MatrixError
from homeserver.requester import Requester
from homeserver.bodies import RawBody, encode_json
from homeserver.events.redaction import redact_event
from homeserver.events.stripped_state import STRIPPED_STATE_TYPES, stripped
from homeserver.lru import LruCache
from homeserver.services.filtering import SyncFilter
from homeserver.services.visibility import Timeline, visible
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.services.room_events.heads import RoomHeads

MAX_TIMELINE_SCAN = 2000  # events looked at per room for one sync timeline (filters may skip most)
# Initial syncs answered again while no stream has moved (Synapse keeps any /sync answer for 2 minutes,
# "caches.sync_response_cache_duration"; here only while it is still exactly what a new sync would build).
RESPONSE_CACHE_S = 120.0
RESPONSE_CACHE_BYTES = 16 * 1024 * 1024
# Spec "Lazy-loading room members": the members each device was last sent, per room (a device forgotten, e.g.
# after a restart, is only sent some members again: redundant, never missing).
LAZY_MEMBERS_DEVICES = 10_000
# Where an event's unsigned.age goes in a remembered answer: a marker no sender can guess.
_AGE_MARK = "\ue000" + secrets.token_hex(8)
_AGE_HOLE = re.compile(b'"' + re.escape(_AGE_MARK.encode()) + rb"(\d+)" + re.escape(_AGE_MARK.encode()) + b'"')

@dataclass
class SyncContext:
    requester: Requester
    since: dict[str, int] | None
    to: dict[str, int]
    filter: SyncFilter
    full_state: bool
    joined_rooms: list[str] = field(default_factory=list)
    newly_joined: set[str] = field(default_factory=set)
    memberships: dict | None = None  # the user's rooms_for_user, once the rooms part has read them
    ignored: frozenset[str] = frozenset()  # spec "Ignoring Users": their messages and invites are left out
    peek_room: str | None = None  # the room of a peeking stream (the old /events?room_id=), not one joined
    # While the rooms' timelines and state are being added to the response: who waits for them (rooms_built).
    _rooms_waiting: list[defer.Deferred] | None = None

    @property
    def user_id(self) -> str:
        return self.requester.user_id

    async def rooms_built(self) -> None:
        """Wait until the rooms' timelines and state are in the response (for a source of phase 0 that reads
        them: its own reads go on meanwhile)."""
        if self._rooms_waiting is not None:
            waiter: defer.Deferred = defer.Deferred()
            self._rooms_waiting.append(waiter)
            await waiter

    async def building_rooms(self, work: Awaitable) -> None:
        """Await ``work``, which adds the rooms to the response; then wake those waiting in :meth:`rooms_built`
        (also when it fails: the sync fails then anyway)."""
        self._rooms_waiting = []
        try:
            await work
        finally:
            waiting, self._rooms_waiting = self._rooms_waiting, None
            for waiter in waiting:
                waiter.callback(None)

    def since_of(self, stream: str) -> int | None:
        return None if self.since is None else self.since.get(stream, 0)


@dataclass
class RoomPart:
    """A room whose timeline and state go into the response: the bounds, then what was loaded."""

    section: str
    room_id: str
    since_pos: int | None  # the timeline starts after it; None: from the start, under history visibility
    to_pos: int
    timeline: list[StoredEvent] = field(default_factory=list)
    limited: bool = False
    out_of_band: StoredEvent | None = None  # a leave of a room this server is not in: the timeline is it alone
    # The room's newest events up to to_pos (after since_pos), newest first, with none between them missing.
    newest: list[StoredEvent] = field(default_factory=list)

    @property
    def start_pos(self) -> int:
        """The position just before the timeline."""
        return self.timeline[0].stream_ordering - 1 if self.timeline else self.to_pos

    def group_at(self, pos: int) -> int | None | object:
        """The store's ``state_group_at_position(room_id, pos)`` when ``newest`` holds the room's last event at or
        before ``pos`` (as it mostly does for the start of the timeline): that event's state group; else
        ``UNKNOWN``."""
        return next((e.state_group for e in self.newest if e.stream_ordering <= pos), UNKNOWN)


UNKNOWN = object()  # RoomPart.group_at: not known without reading the store


class SyncResponse(dict):
    def room(self, section: str, room_id: str) -> dict:
        rooms = self["rooms"][section]
        if room_id not in rooms:
            rooms[room_id] = _empty_room(section)
        return rooms[room_id]


class SyncSource(Protocol):
    """One stream of /sync. ``name`` keys its position in ``SyncContext``; ``token_key`` in the token. A source
    whose part can change while its position does not (e.g. one-time key counts) also has
    ``volatile_marker(requester)``: a remembered initial sync answer stands only while that is unchanged too.
    Sources contribute concurrently, in phases (``sync_phase``, 1 when absent): 0, once the user's rooms are
    known (``SyncContext.joined_rooms``, ``newly_joined``), alongside the rooms' timelines and state (what reads
    those waits for ``SyncContext.rooms_built`` first); 1, once the rooms are in the response; 2, after the
    others (it reads what they add, e.g. the rooms they create entries for)."""

    name: str
    token_key: str

    def current(self) -> int: ...

    async def contribute(self, ctx: SyncContext, response: SyncResponse) -> None: ...


def _empty_room(section: str) -> dict:
    if section == "join":
        return {"timeline": {"events": [], "limited": False}, "state": {"events": []},
                "ephemeral": {"events": []}, "account_data": {"events": []},
                "unread_notifications": {"notification_count": 0, "highlight_count": 0}, "summary": {}}
    if section == "leave":
        return {"timeline": {"events": [], "limited": False}, "state": {"events": []},
                "account_data": {"events": []}}
    if section == "invite":
        return {"invite_state": {"events": []}}
    return {"knock_state": {"events": []}}


@dataclass
class EncodedAnswer:
    """An initial sync's answer as JSON, its events' ``unsigned.age`` values left as holes; it stands while every
    stream is still at ``positions`` and the volatile sources' markers are still ``volatile``."""

    positions: dict[str, int]
    volatile: list
    built_ms: int
    pieces: list[bytes]  # the JSON around the holes
    ages: list[int]  # each hole's age when built

    @classmethod
    def of(cls, response: SyncResponse, positions: dict[str, int], volatile: list, built_ms: int) -> "EncodedAnswer":
        ages: list[int] = []
        for unsigned in _unsigned_of_events(response):
            age = unsigned.get("age")
            if isinstance(age, int):
                unsigned["age"] = f"{_AGE_MARK}{len(ages)}{_AGE_MARK}"
                ages.append(age)
        parts = _AGE_HOLE.split(encode_json(response))
        return cls(positions, volatile, built_ms, parts[0::2], [ages[int(i)] for i in parts[1::2]])

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.pieces)

    def render(self, now_ms: int) -> RawBody:
        delta = max(0, now_ms - self.built_ms)
        out = [self.pieces[0]]
        for age, piece in zip(self.ages, self.pieces[1:]):
            out += (str(age + delta).encode(), piece)
        return RawBody(b"".join(out), b"application/json")


# The sources a peeking stream reads (SyncSource.contribute honours SyncContext.peek_room).
PEEK_SOURCES = ("receipts", "typing", "presence")
# The streams of a token before they were named, in the order their parts came (the sources' order then).
LEGACY_ORDER = ("events", "account_data", "receipts", "typing", "device_lists", "to_device", "presence",
                "notifications")
_TOKEN_PART = re.compile(r"([a-z]+)(-?[0-9]+)")
_POSITION = re.compile(r"-?[0-9]+")


class SyncService:
    def __init__(self, *, room_heads: RoomHeads, store: EventStore, serializer, notifier, clock,
                 sources: list[SyncSource], retention: Callable[[str, list], Awaitable[list]],
                 ignored_users: Callable[[str], Awaitable[frozenset[str]]] | None = None,
                 erased_users: Callable[[set[str]], Awaitable[frozenset[str]]] | None = None,
                 cache_answers: bool = True):
        """``sources`` contribute to a response in this order; ``retention`` drops the events outside a
        room's retention window (services/retention.py); ``ignored_users(user_id)``: whom the user ignores;
        ``erased_users(user_ids)``: which of them were erased (their events are redacted for a reader who was
        not joined when they were sent).
        ``cache_answers`` False (a worker): initial sync answers are not given again, since what makes them
        stale without moving a stream (key counts, a room forgotten) happens in another process."""
        self._retention = retention
        self._ignored_users = ignored_users
        self._erased_users = erased_users
        self._heads = room_heads
        self._store = store
        self._serializer = serializer
        self._notifier = notifier
        self._clock = clock
        self.sources = list(sources)
        keys = ["s"] + [s.token_key for s in self.sources]
        if len(set(keys)) != len(keys) or not all(re.fullmatch("[a-z]+", k) for k in keys):
            raise ValueError(f"sync token keys must be distinct lower-case words: {keys}")
        self._name_of_key = {s.token_key: s.name for s in self.sources}
        self._volatile = [s for s in self.sources if hasattr(s, "volatile_marker")]
        self._answers: LruCache[tuple, EncodedAnswer] = LruCache(RESPONSE_CACHE_BYTES if cache_answers else 0,
                                                                 lambda entry: entry.size)
        self._members_sent: LruCache[tuple, dict[str, set[str]]] = LruCache(LAZY_MEMBERS_DEVICES)

    # -- tokens ---------------------------------------------------------------------
    def current_positions(self) -> dict[str, int]:
        positions = {"events": self._heads.stream.current()}
        for source in self.sources:
            positions[source.name] = source.current()
        return positions

    def encode_token(self, positions: dict[str, int]) -> str:
        """The module docstring's format: the events' position, then each other stream not at 0."""
        parts = [f"s{positions.get('events', 0)}"]
        for source in self.sources:
            position = positions.get(source.name, 0)
            if position:
                parts.append(f"{source.token_key}{position}")
        return "_".join(parts)

    def parse_token(self, token: str) -> dict[str, int]:
        """Every stream's position in ``token`` (0 where it has none), in either format."""
        positions = dict.fromkeys(["events"] + [s.name for s in self.sources], 0)
        parts = token.split("_")
        if parts[0].startswith("s") and all(_POSITION.fullmatch(p) for p in [parts[0][1:], *parts[1:]]):
            legacy = dict(zip(LEGACY_ORDER, [parts[0][1:]] + parts[1:]))
            return {name: int(legacy.get(name, 0)) for name in positions}
        for i, part in enumerate(parts):
            match = _TOKEN_PART.fullmatch(part)
            if match is None or (i == 0) != (match[1] == "s"):
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid since token")
            name = "events" if i == 0 else self._name_of_key.get(match[1])
            if name is not None:
                positions[name] = int(match[2])
        return positions

    # -- sync --------------------------------------------------------------------------
    async def sync(self, requester: Requester, since_token: str | None, timeout_ms: int,
                   sync_filter: SyncFilter, full_state: bool, *, events_upto: int | None = None) -> dict | RawBody:
        """``events_upto`` (with a ``since_token`` and no wait; the old /events stream): room events only up to
        that position, so the answer is the oldest ones after ``since`` and its token resumes after them."""
        if not since_token:
            return await self._initial_sync(requester, sync_filter)
        since = self.parse_token(since_token)
        deadline = self._clock.seconds() + timeout_ms / 1000.0
        while True:
            to = self.current_positions()
            if events_upto is not None:
                to["events"] = min(to["events"], events_upto)
                timeout_ms = 0
                deadline = self._clock.seconds()
            ctx = SyncContext(requester, since, dict(to), sync_filter, full_state)
            response = await self._build(ctx)
            remaining_ms = (deadline - self._clock.seconds()) * 1000
            if full_state or _has_content(response) or remaining_ms <= 0:
                return response
            if self.current_positions() != to:
                continue  # something committed while we were building: look again
            if not await self._notifier.wait(requester.user_id, ctx.joined_rooms, remaining_ms):
                return response  # timed out, or woken by shutdown: answer now with the empty response

    async def peek_ephemeral(self, requester: Requester, room_id: str, since: dict[str, int],
                             to: dict[str, int]) -> list[dict]:
        """What a peeking stream (the old /events?room_id=) gets besides the room's events: the room's receipts
        and typing, and its members' presence, changed in (since, to], each with its ``room_id`` or, for
        presence, the ``user_id`` in its content (the old format)."""
        ctx = SyncContext(requester, since, dict(to), SyncFilter(), False, joined_rooms=[room_id],
                          peek_room=room_id)
        response = _skeleton()
        for source in self.sources:
            if source.name in PEEK_SOURCES:
                await source.contribute(ctx, response)
        events = [dict(e, room_id=room_id) for e in response["rooms"]["join"].get(room_id, {})
                  .get("ephemeral", {}).get("events", [])]
        return events + [dict(e, content=dict(e["content"], user_id=e["sender"]))
                         for e in response["presence"]["events"]]

    async def events_ceiling(self, user_id: str, since_pos: int, limit: int) -> int | None:
        """The position of the ``limit``-th room event after ``since_pos`` in the user's rooms (joined, or whose
        membership changed since), oldest first; None when there are no more than ``limit``."""
        current = self._heads.stream.current()
        memberships, _, _ = await self._store.rooms_for_sync(user_id, since_pos, current)
        positions: list[int] = []
        for room_id, (membership, _, so) in memberships.items():
            if membership == "join" or so > since_pos:
                upto = current if membership == "join" else min(so, current)
                events = await self._store.room_events_between(room_id, since_pos, upto, limit + 1,
                                                               backwards=False)
                positions += [e.stream_ordering for e in events]
        positions.sort()
        return positions[limit - 1] if len(positions) > limit > 0 else None

    async def _initial_sync(self, requester: Requester, sync_filter: SyncFilter) -> dict | RawBody:
        """An initial sync (full_state changes nothing then). Its answer is given again, ages brought up to date,
        while no stream has moved and the volatile parts are the same; unless it carries what must be
        delivered once (to-device messages), rooms that forgetting (which moves no stream) takes out, or
        stops short of the positions it was built for."""
        key = (requester.user_id, requester.device_id, sync_filter)
        to = self.current_positions()
        volatile = [source.volatile_marker(requester) for source in self._volatile]  # before building
        entry = self._answers.get(key)
        now_ms = int(self._clock.seconds() * 1000)
        if entry is not None:
            if entry.positions == to and entry.volatile == volatile \
                    and now_ms - entry.built_ms <= RESPONSE_CACHE_S * 1000:
                return entry.render(now_ms)
            self._answers.pop(key)
        ctx = SyncContext(requester, None, dict(to), sync_filter, False)
        response = await self._build(ctx)
        if response["to_device"]["events"] or sync_filter.include_leave or ctx.to != to:
            return response
        entry = EncodedAnswer.of(response, to, volatile, int(self._clock.seconds() * 1000))
        self._answers.put(key, entry)  # replaces an identical sync built meanwhile
        return entry.render(int(self._clock.seconds() * 1000))

    async def _build(self, ctx: SyncContext) -> SyncResponse:
        response = _skeleton()
        ctx.ignored, rooms = await together(self._ignored(ctx.user_id), self._store.rooms_for_sync(
            ctx.user_id, ctx.since_of("events"), ctx.to["events"]))
        parts = await self._rooms(ctx, response, rooms)
        phases = [[s for s in self.sources if getattr(s, "sync_phase", 1) == phase] for phase in range(3)]
        await together(ctx.building_rooms(self._room_timelines(ctx, response, parts)),
                       *(s.contribute(ctx, response) for s in phases[0]))
        for sources in phases[1:]:
            await together(*(s.contribute(ctx, response) for s in sources))
        if ctx.since is not None and not ctx.full_state:
            _drop_empty_rooms(response, ctx.newly_joined)
        # After the sources: one may stop short of ctx.to (e.g. the to-device limit per sync).
        response["next_batch"] = self.encode_token(ctx.to)
        return response

    async def _rooms(self, ctx: SyncContext, response: SyncResponse, rooms: tuple) -> list[RoomPart]:
        """The user's rooms from the store's ``rooms_for_sync`` (``rooms``): the invites and knocks go into the
        response, the rooms whose timeline and state it needs are returned."""
        to_pos = ctx.to["events"]
        since_pos = ctx.since_of("events")
        memberships, forgotten, changed = rooms
        ctx.memberships = memberships
        parts: list[RoomPart] = []
        for room_id, (membership, event_id, so) in memberships.items():
            if so > to_pos or not ctx.filter.allows_room(room_id):
                continue
            # New to the user: not joined all along since ``since`` (a member event since then may only change
            # a profile); the room's history then goes through the history visibility again.
            is_new = since_pos is None or (so > since_pos and membership in ("join", "leave", "ban")
                                           and not await self._joined_since(room_id, ctx.user_id, since_pos, so))
            changed_membership = since_pos is None or so > since_pos
            if membership == "join":
                ctx.joined_rooms.append(room_id)
                if is_new or ctx.full_state:
                    if since_pos is not None and is_new:
                        ctx.newly_joined.add(room_id)
                    # Spec full_state: every state event, but the timeline still starts at since.
                    parts.append(RoomPart("join", room_id, None if is_new else since_pos, to_pos))
                elif room_id in changed:
                    parts.append(RoomPart("join", room_id, since_pos, to_pos))
            elif membership in ("invite", "knock") and changed_membership:
                await self._stripped_room(response, "invite" if membership == "invite" else "knock",
                                          room_id, event_id, ctx.ignored)
            elif membership in ("leave", "ban") and room_id not in forgotten:
                if since_pos is None and not ctx.filter.include_leave:
                    continue
                if changed_membership or ctx.full_state:
                    # a room joined and left since ``since`` comes with its whole state; an out-of-band leave (an
                    # invite rejected, a knock withdrawn) with the leave as its timeline (as Synapse)
                    left = await self._heads.get_event(event_id)
                    parts.append(RoomPart("leave", room_id, None if is_new else since_pos, so,
                                          out_of_band=left if left is not None and left.outlier else None))
        return parts

    async def _joined_since(self, room_id: str, user_id: str, since_pos: int, last_pos: int) -> bool:
        """Whether the user was joined at ``since_pos`` and stayed joined until their membership at
        ``last_pos`` (the current one, which may be a leave)."""
        memberships = Timeline.of((await self._store.visibility_timelines(room_id, user_id))[0])
        if memberships.at(since_pos + 1, "leave") != "join":
            return False
        return all(value == "join" for pos, value in zip(memberships.positions, memberships.values)
                   if since_pos < pos < last_pos)

    async def _stripped_room(self, response: SyncResponse, section: str, room_id: str, event_id: str,
                             ignored: frozenset[str]) -> None:
        """Stripped state for an invite or knock: what the inviting server sent, or our own current state;
        nothing for an invite from an ignored user."""
        own = await self._heads.get_event(event_id)
        if own is not None and own.sender in ignored:
            return
        carried = (own.pdu.get("unsigned") or {}).get(f"{section}_room_state") if own is not None else None
        if isinstance(carried, list):
            events = [e for e in carried if isinstance(e, dict)]
        else:  # as Synapse, the inviter's (or knocker's) own membership too
            keys = {(t, "") for t in STRIPPED_STATE_TYPES}
            if own is not None and own.sender != own.state_key:
                keys.add(("m.room.member", own.sender))
            state = await self._heads.current_state(room_id, keys)
            events = [stripped(ev) for ev in state.values()]
        if own is not None:
            events.append(stripped(own))
        response.room(section, room_id)["invite_state" if section == "invite" else "knock_state"]["events"] = events

    async def _room_timelines(self, ctx: SyncContext, response: SyncResponse, parts: list[RoomPart]) -> None:
        """Timeline, state and summary of each room in ``parts``: a few transactions for all of them."""
        if not parts:
            return
        f = ctx.filter
        limit = f.timeline.limit if f.timeline.limit is not None else 10
        newest_ids, visibility = await together(
            self._store.latest_room_event_ids({p.room_id: (p.to_pos, p.since_pos or 0) for p in parts}, limit + 1),
            self._store.visibility_timelines_in_rooms([p.room_id for p in parts if p.since_pos is None],
                                                      ctx.user_id))
        loaded = await self._heads.get_events(i for ids in newest_ids.values() for i in ids)
        newest = {room_id: [loaded[i] for i in ids if i in loaded] for room_id, ids in newest_ids.items()}
        for p in parts:
            if len(newest[p.room_id]) == len(newest_ids[p.room_id]):
                p.newest = newest[p.room_id]
            if p.out_of_band is not None:
                p.timeline = [p.out_of_band] if f.timeline.allows(p.out_of_band.pdu | {"room_id": p.room_id}) else []
                continue
            p.timeline, p.limited = await self._load_timeline(ctx, p, limit, newest[p.room_id],
                                                              visibility.get(p.room_id))
        # The timelines' events are final but for redactions (which keep their senders and positions): their
        # state, from where each timeline starts, is read meanwhile.
        timelines, state_json = await together(self._timelines_json(ctx, parts, visibility),
                                               self._states_json(ctx, parts))
        for p, timeline, state in zip(parts, timelines, state_json):
            if p.section == "join" and p.since_pos is not None and not timeline and not state \
                    and p.room_id not in ctx.newly_joined:
                continue  # everything new was left out (an ignored user's messages): as Synapse, no entry
            room = response.room(p.section, p.room_id)
            room["timeline"] = {"events": timeline, "limited": p.limited,
                                "prev_batch": self.encode_token(dict(ctx.to, events=p.start_pos))}
            room["state"] = {"events": state}
            if p.section == "join":
                room["summary"] = await self.room_summary(p.room_id, ctx.user_id)

    async def _timelines_json(self, ctx: SyncContext, parts: list[RoomPart], visibility: dict) -> list[list[dict]]:
        """The rooms' timelines as clients get them: redacted where an erased user's events are hidden from
        the reader (one query for every room), bundled with their relations."""
        from_start = [p for p in parts if p.since_pos is None and p.out_of_band is None]
        erased = await self._erased({e.sender for p in from_start for e in p.timeline})
        for p in from_start:
            p.timeline = await self._redact_erased(p.room_id, p.timeline, visibility.get(p.room_id), erased)
        return await self._serialize_per_room(ctx, [p.timeline for p in parts], bundle=True)

    async def _states_json(self, ctx: SyncContext, parts: list[RoomPart]) -> list[list[dict]]:
        """The rooms' ``state`` as clients get it (filtered; lazy-loaded members)."""
        f = ctx.filter
        state_ids = await self._states_for_timelines(parts, ctx.full_state)
        if f.state.lazy_load_members:
            await self._lazy_members(ctx, parts, state_ids)
        state_events = await self._heads.get_events(v for ids in state_ids.values() for v in ids.values())
        states = {p.room_id: [state_events[v] for v in state_ids[p.room_id].values() if v in state_events
                              and f.state.allows(state_events[v].pdu | {"room_id": p.room_id})] for p in parts}
        return await self._serialize_per_room(ctx, [states[p.room_id] for p in parts], bundle=False)

    async def _lazy_members(self, ctx: SyncContext, parts: list[RoomPart], state_ids: dict[str, dict]) -> None:
        """Spec "Lazy-loading room members": only the members of the timeline's senders (and the user's own) in
        ``state``; on an incremental sync, every membership change of the gap (as Synapse) and the senders'
        memberships the device was not sent yet (all of them with ``include_redundant_members``)."""
        key = (ctx.user_id, ctx.requester.device_id)
        sent = self._members_sent.get(key) or {}
        redundant = ctx.filter.state.include_redundant_members
        missing: dict[str, set[str]] = {}
        for p in parts:
            senders = {e.sender for e in p.timeline} | {ctx.user_id}
            if p.since_pos is None:
                state_ids[p.room_id] = {k: v for k, v in state_ids[p.room_id].items()
                                        if k[0] != "m.room.member" or k[1] in senders}
            else:
                have = {k[1] for k in state_ids[p.room_id] if k[0] == "m.room.member"}
                known = set() if redundant else sent.get(p.room_id, set())
                if want := senders - have - known - {ctx.user_id}:
                    missing[p.room_id] = want
        if missing:
            starts = {p.room_id: p.start_pos for p in parts if p.room_id in missing}
            at = await self._store.state_groups_at_positions(list(starts.items()))
            groups = await self._store.get_state_groups([g for g in at.values() if g is not None])
            for room_id, users in missing.items():
                group = groups.get(at.get((room_id, starts[room_id])), {})
                for user_id in users:
                    if (event_id := group.get(("m.room.member", user_id))) is not None:
                        state_ids[room_id][("m.room.member", user_id)] = event_id
        updated = {} if ctx.since is None else dict(sent)
        for p in parts:
            updated[p.room_id] = (updated.get(p.room_id, set())
                                  | {k[1] for k in state_ids[p.room_id] if k[0] == "m.room.member"}
                                  | {e.state_key for e in p.timeline if e.type == "m.room.member"})
        self._members_sent.put(key, updated)

    async def _serialize_per_room(self, ctx: SyncContext, per_room: list[list[StoredEvent]], *,
                                  bundle: bool) -> list[list[dict]]:
        """Serialize the events of every room in one call, then split them by room again."""
        serialized = await self._serializer.serialize([e for events in per_room for e in events], ctx.requester,
                                                      bundle=bundle, event_fields=ctx.filter.event_fields,
                                                      include_room_id=False,
                                                      federation_format=ctx.filter.event_format == "federation")
        out, i = [], 0
        for events in per_room:
            out.append(serialized[i:i + len(events)])
            i += len(events)
        return out

    async def _load_timeline(self, ctx: SyncContext, part: RoomPart, limit: int, newest: list[StoredEvent],
                             visibility: tuple[list, list] | None) -> tuple[list[StoredEvent], bool]:
        """The newest ``limit`` events in (since, to] that the filter allows (and, on an initial sync, the user
        may see), oldest first; and whether older such events were left out (``limited``).
        ``newest`` is the first batch, the room's newest ``limit + 1`` events."""
        found: list[StoredEvent] = []
        raw, position, batch_size, scanned = newest, part.to_pos, limit + 1, 0
        current: set[str] | None = None
        while True:
            candidates = raw
            if part.since_pos is None:
                candidates = visible_to(ctx.user_id, raw, visibility)
                if len(candidates) < len(raw):
                    # The room's current state shows even where the history visibility hides it (as Synapse:
                    # a member sees who is in the room now, whenever they came in).
                    if current is None:
                        current = set((await self._heads.current_state_ids(part.room_id)).values())
                    seen = {e.event_id for e in candidates}
                    candidates = [e for e in raw if e.event_id in seen or e.event_id in current]
            candidates = await self._retention(part.room_id, candidates)
            for ev in _not_ignored(candidates, ctx.ignored):
                if ctx.filter.timeline.allows(ev.pdu | {"room_id": part.room_id}):
                    if len(found) == limit:
                        return found[::-1], True
                    self._heads.cache.put(ev.event_id, ev)
                    found.append(ev)
            scanned += batch_size
            if len(raw) < batch_size or scanned >= MAX_TIMELINE_SCAN:
                return found[::-1], len(raw) == batch_size
            position = raw[-1].stream_ordering - 1
            batch_size = min(batch_size * 2, MAX_TIMELINE_SCAN)
            raw = await self._store.room_events_between(part.room_id, position, part.since_pos or 0, batch_size,
                                                        backwards=True)

    async def _states_for_timelines(self, parts: list[RoomPart], full_state: bool) -> dict[str, dict]:
        """room -> state at the start of its timeline; on an incremental sync only what changed since ``since``.

        A room joined over federation has nothing before its join here: the state is the join's, less the join.
        """
        since = {p.room_id: None if full_state else p.since_pos for p in parts}
        needed = [p for p in parts if since[p.room_id] is None or p.limited]
        at = {(p.room_id, pos): p.group_at(pos) for p in needed
              for pos in ([p.start_pos] if since[p.room_id] is None else [p.start_pos, since[p.room_id]])}
        unknown = [key for key, group in at.items() if group is UNKNOWN]
        if unknown:
            at |= await self._store.state_groups_at_positions(unknown)
        joined_here = {p.room_id: p.timeline[0] for p in needed
                       if at[(p.room_id, p.start_pos)] is None and p.timeline}
        wanted = [at[key] for key in at] + [first.state_group for first in joined_here.values()]
        groups = await self._heads.state_groups(wanted, [p.room_id for p in needed])
        states: dict[str, dict] = {p.room_id: {} for p in parts}
        for p in needed:
            first = joined_here.get(p.room_id)
            if first is not None:
                start_state = {k: v for k, v in groups[first.state_group].items() if v != first.event_id}
            else:
                start_state = groups[at[(p.room_id, p.start_pos)]]
            if since[p.room_id] is None:
                states[p.room_id] = start_state
            else:
                since_state = groups[at[(p.room_id, since[p.room_id])]]
                states[p.room_id] = {k: v for k, v in start_state.items() if since_state.get(k) != v}
        return states

    async def room_summary(self, room_id: str, user_id: str) -> dict:
        """Spec "m.heroes", joined and invited member counts."""
        members = await self._heads.members(room_id)  # from memory
        summary = {"m.joined_member_count": members.joined_count, "m.invited_member_count": len(members.invited)}
        if ("m.room.name", "") not in members.state and ("m.room.canonical_alias", "") not in members.state:
            heroes = [u for u in heapq.nsmallest(6, members.joined_users()) if u != user_id][:5]
            summary["m.heroes"] = heroes + [u for u in sorted(members.invited) if u != user_id][:5 - len(heroes)]
        return summary

    async def _ignored(self, user_id: str) -> frozenset[str]:
        return frozenset() if self._ignored_users is None else await self._ignored_users(user_id)

    async def visible_events(self, user_id: str, room_id: str, events: list[StoredEvent]) -> list[StoredEvent]:
        """Drop the events the user may not see under the room's history visibility or its retention policy,
        and those of users they ignore."""
        if not events:
            return events
        events = _not_ignored(events, await self._ignored(user_id))
        timelines = await self._store.visibility_timelines(room_id, user_id)
        events = visible_to(user_id, await self._retention(room_id, events), timelines)
        return await self._redact_erased(room_id, events, timelines,
                                         await self._erased({e.sender for e in events}))

    async def _erased(self, senders: set[str]) -> frozenset[str]:
        """Which of these senders were erased (one query for every room of a sync)."""
        if self._erased_users is None or not senders:
            return frozenset()
        return await self._erased_users(senders)

    async def _redact_erased(self, room_id: str, events: list[StoredEvent], timelines: tuple[list, list] | None,
                             erased: frozenset[str]) -> list[StoredEvent]:
        """As Synapse: the events of an erased user (``erased``: :meth:`_erased` of at least their senders),
        redacted for a reader who was not joined when they were sent (``timelines``: the reader's, as
        ``visible_to`` takes them). Copies: the event cache keeps the originals."""
        if not erased or not events or timelines is None or not any(e.sender in erased for e in events):
            return events
        memberships = Timeline.of(timelines[0])
        version = await self._heads.room_version(room_id)
        return [dataclasses.replace(e, pdu=redact_event(e.pdu, version))
                if e.sender in erased and not e.redacted_by and memberships.at(e.stream_ordering, "leave") != "join"
                else e for e in events]


async def together(*awaitables: Awaitable) -> list:
    """Await these at once (their transactions overlap on the database threads), their results in order; the
    first to fail raises its error (the others still run to their end)."""
    try:
        return await defer.gatherResults([defer.ensureDeferred(a) for a in awaitables], consumeErrors=True)
    except defer.FirstError as e:
        e.subFailure.raiseException()


def _not_ignored(events: list[StoredEvent], ignored: frozenset[str]) -> list[StoredEvent]:
    """Spec "Ignoring Users": the ignored users' messages are left out (their state events stay, as Synapse)."""
    return [e for e in events if e.state_key is not None or e.sender not in ignored] if ignored else events


def visible_to(user_id: str, events: list[StoredEvent], timelines: tuple[list, list]) -> list[StoredEvent]:
    """The events the user may see, given their membership and the room's history_visibility changes."""
    if not events:
        return events
    members, visibilities = timelines
    mt, vt = Timeline.of(members), Timeline.of(visibilities)
    return [e for e in events if visible(e.stream_ordering, event_sender=e.sender, event_state_key=e.state_key,
                                         event_type=e.type, user_id=user_id, memberships=mt, visibilities=vt)]


def _skeleton() -> SyncResponse:
    return SyncResponse({
        "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
        "presence": {"events": []}, "account_data": {"events": []}, "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []}, "device_one_time_keys_count": {},
        "device_unused_fallback_key_types": [],
    })


def _unsigned_of_events(response: dict):
    """The ``unsigned`` object of every room event of a sync response, bundled ones included."""
    for section in ("join", "leave"):
        for room in response["rooms"][section].values():
            for ev in room["timeline"]["events"] + room["state"]["events"]:
                unsigned = ev.get("unsigned")
                if not isinstance(unsigned, dict):
                    continue
                yield unsigned
                relations = unsigned.get("m.relations") or {}
                for bundled in (relations.get("m.replace"), (relations.get("m.thread") or {}).get("latest_event")):
                    if isinstance(bundled, dict) and isinstance(bundled.get("unsigned"), dict):
                        yield bundled["unsigned"]


def _drop_empty_rooms(response: dict, newly_joined: set[str]) -> None:
    """An incremental sync leaves out a joined room with nothing to say once its filters have applied (as
    Synapse); a room newly joined always shows."""
    joined = response["rooms"]["join"]
    for room_id in [r for r, room in joined.items() if r not in newly_joined and not (
            room["timeline"]["events"] or room["state"]["events"] or room["ephemeral"]["events"]
            or room["account_data"]["events"])]:
        del joined[room_id]


def _has_content(response: dict) -> bool:
    rooms = response["rooms"]
    if any(rooms[s] for s in rooms):
        return True
    for key in ("presence", "account_data", "to_device"):
        if response[key]["events"]:
            return True
    return bool(response["device_lists"]["changed"] or response["device_lists"]["left"])

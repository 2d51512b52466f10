"""/sync (client-server "Syncing"): rooms from the events stream, the rest from sync sources.

A sync token is the position of every stream, in a fixed order:
``s<events>_<source1>_<source2>...``. Each other stream (account data,
receipts, typing, to-device, device lists, presence, ...) is a ``SyncSource``
that adds its part of the response. A waiting sync sleeps on the notifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from homeserver.errors import MatrixError
from homeserver.http.router import Requester
from homeserver.services.filtering import SyncFilter
from homeserver.services.visibility import Timeline, visible
from homeserver.storage.events import EventStore, StoredEvent

MAX_TIMELINE_SCAN = 2000  # events looked at per room for one sync timeline (filters may skip most)

STRIPPED_STATE_TYPES = ("m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
                        "m.room.canonical_alias", "m.room.encryption", "m.room.topic")


@dataclass
class SyncContext:
    requester: Requester
    since: dict[str, int] | None
    to: dict[str, int]
    filter: SyncFilter
    full_state: bool
    joined_rooms: list[str] = field(default_factory=list)
    newly_joined: set[str] = field(default_factory=set)

    @property
    def user_id(self) -> str:
        return self.requester.user_id

    def since_of(self, stream: str) -> int | None:
        return None if self.since is None else self.since.get(stream, 0)


class SyncResponse(dict):
    def room(self, section: str, room_id: str) -> dict:
        rooms = self["rooms"][section]
        if room_id not in rooms:
            rooms[room_id] = _empty_room(section)
        return rooms[room_id]


class SyncSource(Protocol):
    name: str

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


def stripped(ev: StoredEvent) -> dict:
    """Spec "Stripped state"."""
    return {"type": ev.type, "state_key": ev.state_key, "content": ev.content, "sender": ev.sender}


class SyncService:
    def __init__(self, *, room_events, store: EventStore, serializer, notifier, clock):
        self._room_events = room_events
        self._store = store
        self._serializer = serializer
        self._notifier = notifier
        self._clock = clock
        self.sources: list[SyncSource] = []

    def add_source(self, source: SyncSource) -> None:
        self.sources.append(source)

    # -- tokens ---------------------------------------------------------------------
    def current_positions(self) -> dict[str, int]:
        positions = {"events": self._room_events.stream.current()}
        for source in self.sources:
            positions[source.name] = source.current()
        return positions

    def encode_token(self, positions: dict[str, int]) -> str:
        names = ["events"] + [s.name for s in self.sources]
        return "s" + "_".join(str(positions.get(n, 0)) for n in names)

    def parse_token(self, token: str) -> dict[str, int]:
        names = ["events"] + [s.name for s in self.sources]
        try:
            if not token.startswith("s"):
                raise ValueError
            values = [int(v) for v in token[1:].split("_")]
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid since token")
        return {name: (values[i] if i < len(values) else 0) for i, name in enumerate(names)}

    # -- sync --------------------------------------------------------------------------
    async def sync(self, requester: Requester, since_token: str | None, timeout_ms: int,
                   sync_filter: SyncFilter, full_state: bool) -> dict:
        since = self.parse_token(since_token) if since_token else None
        deadline = self._clock.seconds() + timeout_ms / 1000.0
        while True:
            to = self.current_positions()
            ctx = SyncContext(requester, since, dict(to), sync_filter, full_state)
            response = await self._build(ctx)
            remaining_ms = (deadline - self._clock.seconds()) * 1000
            if since is None or full_state or _has_content(response) or remaining_ms <= 0:
                return response
            if self.current_positions() != to:
                continue  # something committed while we were building: look again
            if not await self._notifier.wait(requester.user_id, ctx.joined_rooms, remaining_ms):
                return response  # timed out, or woken by shutdown: answer now with the empty response

    async def _build(self, ctx: SyncContext) -> SyncResponse:
        response = SyncResponse({
            "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
            "presence": {"events": []}, "account_data": {"events": []}, "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []}, "device_one_time_keys_count": {},
            "device_unused_fallback_key_types": [],
        })
        await self._rooms(ctx, response)
        for source in self.sources:
            await source.contribute(ctx, response)
        # After the sources: one may stop short of ctx.to (e.g. the to-device limit per sync).
        response["next_batch"] = self.encode_token(ctx.to)
        return response

    async def _rooms(self, ctx: SyncContext, response: SyncResponse) -> None:
        to_pos = ctx.to["events"]
        since_pos = ctx.since_of("events")
        memberships = await self._store.rooms_for_user(ctx.user_id)
        forgotten = await self._store.forgotten_rooms(ctx.user_id)
        changed = set()
        if since_pos is not None:
            joined_ids = [r for r, (m, _, so) in memberships.items() if m == "join"]
            changed = await self._store.rooms_with_events_between(joined_ids, since_pos, to_pos)
        for room_id, (membership, event_id, so) in memberships.items():
            if so > to_pos or not ctx.filter.allows_room(room_id):
                continue
            is_new = since_pos is None or so > since_pos
            if membership == "join":
                ctx.joined_rooms.append(room_id)
                if is_new or ctx.full_state:
                    if since_pos is not None and is_new:
                        ctx.newly_joined.add(room_id)
                    # Spec full_state: every state event, but the timeline still starts at since.
                    await self._room_timeline(ctx, response, "join", room_id, None if is_new else since_pos, to_pos)
                elif room_id in changed:
                    await self._room_timeline(ctx, response, "join", room_id, since_pos, to_pos)
            elif membership in ("invite", "knock") and is_new:
                await self._stripped_room(response, "invite" if membership == "invite" else "knock",
                                          room_id, event_id)
            elif membership in ("leave", "ban") and room_id not in forgotten:
                if since_pos is None and not ctx.filter.include_leave:
                    continue
                if is_new or ctx.full_state:
                    await self._room_timeline(ctx, response, "leave", room_id, since_pos, so)

    async def _stripped_room(self, response: SyncResponse, section: str, room_id: str, event_id: str) -> None:
        """Stripped state for an invite or knock: what the inviting server sent, or our own current state."""
        own = await self._room_events.get_event(event_id)
        carried = (own.pdu.get("unsigned") or {}).get(f"{section}_room_state") if own is not None else None
        if isinstance(carried, list):
            events = [e for e in carried if isinstance(e, dict)]
        else:
            state = await self._room_events.current_state(room_id, {(t, "") for t in STRIPPED_STATE_TYPES})
            events = [stripped(ev) for ev in state.values()]
        if own is not None:
            events.append(stripped(own))
        response.room(section, room_id)["invite_state" if section == "invite" else "knock_state"]["events"] = events

    async def _room_timeline(self, ctx: SyncContext, response: SyncResponse, section: str, room_id: str,
                             since_pos: int | None, to_pos: int) -> None:
        f = ctx.filter
        limit = f.timeline.limit if f.timeline.limit is not None else 10
        timeline, limited = await self._load_timeline(ctx, room_id, since_pos, to_pos, limit)
        start_pos = timeline[0].stream_ordering - 1 if timeline else to_pos
        state_ids = await self._state_for_timeline(room_id, None if ctx.full_state else since_pos, start_pos,
                                                   limited)
        if f.state.lazy_load_members:
            senders = {e.sender for e in timeline} | {ctx.user_id}
            state_ids = {k: v for k, v in state_ids.items() if k[0] != "m.room.member" or k[1] in senders}
        state_events = await self._room_events.get_events(state_ids.values())
        state = [ev for ev in state_events.values() if f.state.allows(ev.pdu | {"room_id": room_id})]
        room = response.room(section, room_id)
        prev_positions = dict(ctx.to, events=start_pos)
        room["timeline"] = {
            "events": await self._serializer.serialize(timeline, ctx.requester, event_fields=f.event_fields,
                                                       include_room_id=False),
            "limited": limited,
            "prev_batch": self.encode_token(prev_positions),
        }
        room["state"] = {"events": await self._serializer.serialize(
            state, ctx.requester, bundle=False, event_fields=f.event_fields, include_room_id=False)}
        if section == "join":
            room["summary"] = await self.room_summary(room_id, ctx.user_id)

    async def _load_timeline(self, ctx: SyncContext, room_id: str, since_pos: int | None, to_pos: int,
                             limit: int) -> tuple[list[StoredEvent], bool]:
        """The newest ``limit`` events in (since, to] that the filter allows (and, on an initial sync, the user
        may see), oldest first; and whether older such events were left out (``limited``)."""
        found: list[StoredEvent] = []
        position, batch_size, scanned = to_pos, limit + 1, 0
        while True:
            raw = await self._store.room_events_between(room_id, position, since_pos or 0, batch_size,
                                                        backwards=True)
            candidates = raw if since_pos is not None else await self.visible_events(ctx.user_id, room_id, raw)
            for ev in candidates:
                if ctx.filter.timeline.allows(ev.pdu | {"room_id": room_id}):
                    if len(found) == limit:
                        return found[::-1], True
                    self._room_events.cache.put(ev)
                    found.append(ev)
            scanned += batch_size
            if len(raw) < batch_size or scanned >= MAX_TIMELINE_SCAN:
                return found[::-1], len(raw) == batch_size
            position = raw[-1].stream_ordering - 1
            batch_size = min(batch_size * 2, MAX_TIMELINE_SCAN)

    async def _state_for_timeline(self, room_id: str, since_pos: int | None, start_pos: int,
                                  limited: bool) -> dict:
        """State at the start of the timeline; on an incremental sync only what changed since ``since``."""
        if since_pos is not None and not limited:
            return {}
        start_group = await self._store.state_group_at_position(room_id, start_pos)
        start_state = await self._store.get_state_group(start_group)
        if since_pos is None:
            return start_state
        since_state = await self._store.get_state_group(
            await self._store.state_group_at_position(room_id, since_pos))
        return {k: v for k, v in start_state.items() if since_state.get(k) != v}

    async def room_summary(self, room_id: str, user_id: str) -> dict:
        """Spec "m.heroes", joined and invited member counts."""
        state = await self._room_events.current_state_ids(room_id)
        members = await self._room_events.get_events(v for k, v in state.items() if k[0] == "m.room.member")
        joined = sorted(e.state_key for e in members.values() if e.content.get("membership") == "join")
        invited = sorted(e.state_key for e in members.values() if e.content.get("membership") == "invite")
        summary = {"m.joined_member_count": len(joined), "m.invited_member_count": len(invited)}
        if ("m.room.name", "") not in state and ("m.room.canonical_alias", "") not in state:
            summary["m.heroes"] = [u for u in joined + invited if u != user_id][:5]
        return summary

    async def visible_events(self, user_id: str, room_id: str, events: list[StoredEvent]) -> list[StoredEvent]:
        """Drop the events the user may not see under the room's history visibility."""
        if not events:
            return events
        members, visibilities = await self._store.visibility_timelines(room_id, user_id)
        mt, vt = Timeline.of(members), Timeline.of(visibilities)
        return [e for e in events if visible(e.stream_ordering, event_sender=e.sender, event_state_key=e.state_key,
                                             event_type=e.type, user_id=user_id, memberships=mt, visibilities=vt)]


def _has_content(response: dict) -> bool:
    rooms = response["rooms"]
    if any(rooms[s] for s in rooms):
        return True
    for key in ("presence", "account_data", "to_device"):
        if response[key]["events"]:
            return True
    return bool(response["device_lists"]["changed"] or response["device_lists"]["left"])

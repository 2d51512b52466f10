"""Reading a room: /messages, /context, /event, /state, /members, relations and threads.

Spec v1.19 client-server "Getting events for a room", "Room history
visibility", "Relationships". Positions in tokens are events-stream
positions: "after event N"; pagination backwards from P returns events <= P.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.builder import event_id_list
from homeserver.requester import Requester
from homeserver.services.filtering import EventFilter
from homeserver.services.room_events.heads import RoomHeads
from homeserver.storage.events import EventStore, StoredEvent

MAX_LIMIT = 1000
OLDEST_POSITION = -(2 ** 62)  # backfilled history has negative stream positions


class RoomHistoryService:
    def __init__(self, *, room_heads: RoomHeads, store: EventStore, serializer, sync,
                 backfill: Callable[[str, list[str] | None], Awaitable[bool]] | None = None):
        self._heads = room_heads
        self._store = store
        self._serializer = serializer
        self._sync = sync
        # async (room_id, the missing events to start from, or None: before the oldest) -> bool: fetch older
        # history from other servers
        self.backfill = backfill

    async def _check_room(self, room_id: str, user_id: str) -> str | None:
        """The user's current membership; 403 if they were never in a non-world-readable room."""
        if await self._heads.room_version(room_id) is None:
            raise forbidden("You are not in this room")
        membership = await self._heads.membership(room_id, user_id)
        if membership is None or membership in ("invite", "knock"):
            vis = await self._heads.current_state_event(room_id, "m.room.history_visibility")
            if vis is None or vis.content.get("history_visibility") != "world_readable":
                raise forbidden("You are not in this room")
        return membership

    async def _position_limit(self, room_id: str, user_id: str, membership: str | None) -> int:
        """A user who left sees the room up to their leave event."""
        current = self._heads.stream.current()
        if membership in ("leave", "ban"):
            ev = await self._heads.current_state_event(room_id, "m.room.member", user_id)
            if ev is not None:
                return min(current, ev.stream_ordering)
        return current

    def _position_of(self, token: str) -> int:
        return self._sync.parse_token(token)["events"]

    def _token(self, position: int) -> str:
        return self._sync.encode_token(dict(self._sync.current_positions(), events=position))

    async def messages(self, requester: Requester, room_id: str, *, from_token: str | None, to_token: str | None,
                       direction: str, limit: int, event_filter: EventFilter) -> dict:
        if direction not in ("b", "f"):
            raise MatrixError(400, "M_INVALID_PARAM", "dir must be b or f")
        membership = await self._check_room(room_id, requester.user_id)
        ceiling = await self._position_limit(room_id, requester.user_id, membership)
        backwards = direction == "b"
        if from_token is None:
            start = ceiling if backwards else 0
        else:
            start = min(self._position_of(from_token), ceiling)
        if to_token is not None:
            end_bound = self._position_of(to_token)
        else:
            end_bound = OLDEST_POSITION if backwards else ceiling
        limit = max(0, min(limit, MAX_LIMIT))
        chunk, position, more = await self._collect(requester.user_id, room_id, start, end_bound, limit,
                                                    backwards, event_filter)
        if backwards and self.backfill is not None:
            # a hole in the DAG within what the client reads, or just before the event it paginates from
            # (Synapse's backward extremities), else the room's beginning as we hold it
            newer = await self._store.room_events_between(room_id, start, ceiling, 1, backwards=False)
            gaps = await self._gaps(chunk + newer)
            fetched = False
            if gaps:
                fetched = await self.backfill(room_id, gaps)
            elif not more and to_token is None:
                fetched = await self.backfill(room_id, None)
            if fetched and not more and to_token is None:  # backfilled events come before all others
                extra, position, more = await self._collect(requester.user_id, room_id, position, end_bound,
                                                            limit - len(chunk), backwards, event_filter)
                chunk += extra
        result = {"chunk": await self._serializer.serialize(chunk, requester), "start": self._token(start)}
        # Spec: "end" is omitted when no further events are available (start of the timeline, or nothing more
        # the user may see). Going forwards without ``to``, the live end is not final: later events follow, so
        # a non-empty chunk gets "end" to continue from (as Synapse).
        if more or (not backwards and chunk and to_token is None):
            result["end"] = self._token(position)
        if event_filter.lazy_load_members and chunk:
            result["state"] = await self._member_state(room_id, {e.sender for e in chunk}, requester)
        return result

    async def _gaps(self, events: list[StoredEvent]) -> list[str]:
        """The prev events of ``events`` that this server lacks or holds only without state (an outlier).
        Those among ``events`` (timeline events, with state) are no gap: only the others are read (a page's
        events are not all read again, nor do they fill the event cache as a client pages back)."""
        prev_ids = {p for ev in events for p in event_id_list(ev.pdu.get("prev_events", []))}
        prev_ids -= {ev.event_id for ev in events}
        held = await self._heads.get_events(prev_ids)
        return sorted(p for p in prev_ids if p not in held or (held[p].outlier and held[p].state_group is None))

    async def _collect(self, user_id: str, room_id: str, start: int, end_bound: int, limit: int,
                       backwards: bool, event_filter: EventFilter) -> tuple[list[StoredEvent], int, bool]:
        """Walk the room from ``start`` towards ``end_bound`` until ``limit`` visible, matching events."""
        batch_size = limit * 2 + 1
        chunk: list[StoredEvent] = []
        position, more = start, True
        while len(chunk) < limit and more:
            if (position <= end_bound) if backwards else (position >= end_bound):
                return chunk, position, False
            batch = await self._store.room_events_between(room_id, position, end_bound, batch_size,
                                                          backwards=backwards)
            more = len(batch) == batch_size
            visible = {e.event_id: e for e in await self._sync.visible_events(user_id, room_id, batch)}
            for i, ev in enumerate(batch):
                position = ev.stream_ordering - 1 if backwards else ev.stream_ordering
                if ev.event_id in visible and event_filter.allows(ev.pdu | {"room_id": room_id}):
                    chunk.append(visible[ev.event_id])  # as the reader may see it (an erased sender's: redacted)
                    if len(chunk) == limit:
                        return chunk, position, more or i < len(batch) - 1
        return chunk, position, more

    async def _member_state(self, room_id: str, users: set[str], requester) -> list[dict]:
        state = await self._heads.current_state(room_id, {("m.room.member", u) for u in users})
        return await self._serializer.serialize(list(state.values()), requester, bundle=False)

    async def event(self, requester: Requester, room_id: str, event_id: str) -> dict:
        """Spec GET /rooms/{roomId}/event/{eventId}: 404 "not found or you do not have permission to read
        this event", for a non-member too (as Synapse)."""
        try:
            ev = await self._visible_event(requester.user_id, room_id, event_id)
        except MatrixError as e:
            if e.status == 403:
                raise not_found("Event not found") from None
            raise
        return await self._serializer.serialize_one(ev, requester)

    async def _visible_event(self, user_id: str, room_id: str, event_id: str) -> StoredEvent:
        membership = await self._check_room(room_id, user_id)
        ev = await self._heads.get_event(event_id)
        if ev is None or ev.room_id != room_id or ev.outlier:
            raise not_found("Event not found")
        if ev.stream_ordering > await self._position_limit(room_id, user_id, membership):
            raise not_found("Event not found")
        seen = await self._sync.visible_events(user_id, room_id, [ev])
        if not seen:
            raise not_found("Event not found")
        return seen[0]

    async def joined_visible_event(self, user_id: str, room_id: str, event_id: str) -> StoredEvent | None:
        """The event if ``user_id`` is joined to its room and may see it (spec "Reporting content"), else None."""
        if await self._heads.membership(room_id, user_id) != "join":
            return None
        try:
            return await self._visible_event(user_id, room_id, event_id)
        except MatrixError:
            return None

    async def context(self, requester: Requester, room_id: str, event_id: str, limit: int,
                      event_filter: EventFilter) -> dict:
        """Spec GET /rooms/{roomId}/context/{eventId}."""
        ev = await self._visible_event(requester.user_id, room_id, event_id)
        limit = max(0, min(limit, MAX_LIMIT))
        before_n, after_n = limit // 2, limit - limit // 2
        membership = await self._heads.membership(room_id, requester.user_id)
        ceiling = await self._position_limit(room_id, requester.user_id, membership)
        before = await self._store.room_events_between(room_id, ev.stream_ordering - 1, OLDEST_POSITION, before_n,
                                                       backwards=True)
        after = await self._store.room_events_between(room_id, ev.stream_ordering, ceiling, after_n, backwards=False)
        before = [e for e in await self._sync.visible_events(requester.user_id, room_id, before)
                  if event_filter.allows(e.pdu | {"room_id": room_id})]
        after = [e for e in await self._sync.visible_events(requester.user_id, room_id, after)
                 if event_filter.allows(e.pdu | {"room_id": room_id})]
        start = (before[-1].stream_ordering - 1) if before else ev.stream_ordering - 1
        end = after[-1].stream_ordering if after else ev.stream_ordering
        state_ids = await self._store.get_state_group(ev.state_group)
        if event_filter.lazy_load_members:
            senders = {e.sender for e in before + after + [ev]}
            state_ids = {k: v for k, v in state_ids.items() if k[0] != "m.room.member" or k[1] in senders}
        state = await self._heads.get_events(state_ids.values())
        return {
            "event": await self._serializer.serialize_one(ev, requester),
            "events_before": await self._serializer.serialize(before, requester),
            "events_after": await self._serializer.serialize(after, requester),
            "start": self._token(start), "end": self._token(end),
            "state": await self._serializer.serialize(list(state.values()), requester, bundle=False),
        }

    async def state(self, requester: Requester, room_id: str) -> list[StoredEvent]:
        """Current state for members; the state when they left for former members."""
        membership = await self._check_room(room_id, requester.user_id)
        if membership in ("leave", "ban"):
            own = await self._heads.current_state_event(room_id, "m.room.member", requester.user_id)
            ids = await self._store.get_state_group(own.state_group if own else None)
            return list((await self._heads.get_events(ids.values())).values())
        return list((await self._heads.current_state(room_id)).values())

    async def state_event(self, requester: Requester, room_id: str, event_type: str, state_key: str) -> StoredEvent:
        for ev in await self.state(requester, room_id):
            if ev.type == event_type and ev.state_key == state_key:
                return ev
        raise not_found("Event not found")

    async def members(self, requester: Requester, room_id: str, *, at: str | None, membership: str | None,
                      not_membership: str | None) -> list[dict]:
        """Spec GET /rooms/{roomId}/members."""
        if at is not None:
            await self._check_room(room_id, requester.user_id)
            group = await self._store.state_group_at_position(room_id, self._position_of(at))
            ids = await self._store.get_state_group(group)
            events = list((await self._heads.get_events(
                v for k, v in ids.items() if k[0] == "m.room.member")).values())
        else:
            events = [e for e in await self.state(requester, room_id) if e.type == "m.room.member"]
        events = [e for e in events
                  if (membership is None or e.content.get("membership") == membership)
                  and (not_membership is None or e.content.get("membership") != not_membership)]
        return await self._serializer.serialize(events, requester, bundle=False)

    async def joined_members(self, requester: Requester, room_id: str) -> dict:
        if await self._check_room(room_id, requester.user_id) != "join":
            raise forbidden("You are not in this room")
        state = await self._heads.current_state(room_id)
        joined = {}
        for (t, user_id), ev in state.items():
            if t == "m.room.member" and ev.content.get("membership") == "join":
                joined[user_id] = {"display_name": ev.content.get("displayname"),
                                   "avatar_url": ev.content.get("avatar_url")}
        return {"joined": joined}

    async def relations(self, requester: Requester, room_id: str, event_id: str, *, rel_type: str | None,
                        event_type: str | None, from_token: str | None, limit: int, direction: str,
                        recurse: bool = False) -> dict:
        """Spec GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]."""
        await self._visible_event(requester.user_id, room_id, event_id)
        backwards = direction != "f"
        from_pos = _position(from_token)
        limit = max(1, min(limit, MAX_LIMIT))
        found = await self._store.get_relations(event_id, rel_type, event_type, from_pos, limit + 1, backwards)
        found = [e for e in found if e.room_id == room_id]
        found = await self._sync.visible_events(requester.user_id, room_id, found)
        result = {"chunk": await self._serializer.serialize(found[:limit], requester)}
        if len(found) > limit:
            result["next_batch"] = str(found[limit - 1].stream_ordering)
        return result

    async def threads(self, requester: Requester, room_id: str, *, include: str, from_token: str | None,
                      limit: int) -> dict:
        """Spec GET /rooms/{roomId}/threads."""
        await self._check_room(room_id, requester.user_id)
        from_pos = _position(from_token)
        limit = max(1, min(limit, MAX_LIMIT))
        roots = await self._store.threads_of_room(room_id, from_pos, limit + 1)
        events = await self._heads.get_events(r for r, _ in roots)
        chunk = []
        for root_id, _ in roots[:limit]:
            ev = events.get(root_id)
            if ev is None:
                continue
            if include == "participated" and ev.sender != requester.user_id:
                replies = await self._store.get_relations(root_id, "m.thread", None, None, MAX_LIMIT, False)
                if not any(r.sender == requester.user_id for r in replies):
                    continue
            chunk.append(ev)
        chunk = await self._sync.visible_events(requester.user_id, room_id, chunk)
        result = {"chunk": await self._serializer.serialize(chunk, requester)}
        if len(roots) > limit:
            result["next_batch"] = str(roots[limit - 1][1])
        return result

    async def timestamp_to_event(self, requester: Requester, room_id: str, ts: int, direction: str) -> dict:
        """Spec GET /rooms/{roomId}/timestamp_to_event."""
        if direction not in ("f", "b"):
            raise MatrixError(400, "M_INVALID_PARAM", "dir must be f or b")
        await self._check_room(room_id, requester.user_id)
        found = await self._store.event_position_by_ts(room_id, ts, direction == "f")
        if found is None:
            raise not_found("No event found")
        return {"event_id": found[0], "origin_server_ts": found[1]}


def _position(token: str | None) -> int | None:
    """A pagination token of relations and threads: a stream position (ASCII digits, within 64 bits)."""
    return int(token) if token and token.isascii() and token.isdigit() and len(token) <= 18 else None

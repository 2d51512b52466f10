"""Answering other servers' reads (server-server "Retrieving events", "Backfilling",
"get_missing_events", "Querying for information", room directory and hierarchy)."""

from __future__ import annotations

from homeserver.bodies import RawBody, with_encoded_arrays
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.builder import event_id_list
from homeserver.events.identifiers import domain_of
from homeserver.services.room_events import RoomEventService, federation_form

MAX_EVENTS = 100


class FederationQueries:
    def __init__(self, *, room_events: RoomEventService, directory, profiles, server_name: str, clock):
        self._events = room_events
        self._directory = directory
        self._profiles = profiles
        self.server_name = server_name
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def _pdu(self, ev) -> dict:
        return federation_form(ev, await self._events.room_version(ev.room_id))

    async def check_server_in_room(self, origin: str, room_id: str) -> None:
        """The requesting server must have (or have had) a member in the room, unless it is world-readable."""
        if await self._events.room_version(room_id) is None:
            raise not_found("Unknown room")
        state = await self._events.current_state(room_id)
        if any(k[0] == "m.room.member" and domain_of(k[1]) == origin for k in state):
            return
        vis = state.get(("m.room.history_visibility", ""))
        if vis is None or vis.content.get("history_visibility") != "world_readable":
            raise forbidden("Your server is not in this room")

    async def event(self, origin: str, event_id: str) -> dict:
        ev = await self._events.get_event(event_id)
        if ev is None:
            raise not_found("Event not found")
        await self.check_server_in_room(origin, ev.room_id)
        return {"origin": self.server_name, "origin_server_ts": self._now(), "pdus": [await self._pdu(ev)]}

    async def _state_before(self, origin: str, room_id: str, event_id: str) -> dict:
        await self.check_server_in_room(origin, room_id)
        ev = await self._events.get_event(event_id)
        if ev is None or ev.room_id != room_id or ev.state_group is None:
            raise not_found("Event not found")
        state = await self._events.state_at_group(ev.state_group)
        if ev.state_key is not None:
            key = (ev.type, ev.state_key)
            if ev.replaces_state:
                state[key] = ev.replaces_state
            else:
                state.pop(key, None)
        return state

    async def state_ids(self, origin: str, room_id: str, event_id: str) -> dict:
        """Spec GET /state_ids: the state before the event and its auth chain, as ids."""
        state = await self._state_before(origin, room_id, event_id)
        chain = await self._events.auth_closure(state.values())
        return {"pdu_ids": sorted(state.values()), "auth_chain_ids": sorted(set(chain) - set(state.values()))}

    async def state(self, origin: str, room_id: str, event_id: str) -> RawBody:
        """Spec GET /state: the state before the event and its auth chain, as PDUs."""
        state_ids = set((await self._state_before(origin, room_id, event_id)).values())
        chain = await self._events.auth_closure(state_ids)
        chain_ids = [i for i in chain if i not in state_ids]
        encoded = await self._events.federation_json(chain, await self._events.room_version(room_id))
        return with_encoded_arrays({}, pdus=[encoded[i] for i in state_ids if i in encoded],
                                   auth_chain=[encoded[i] for i in chain_ids if i in encoded])

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> RawBody:
        await self.check_server_in_room(origin, room_id)
        ev = await self._events.get_event(event_id)
        if ev is None or ev.room_id != room_id:
            raise not_found("Event not found")
        chain = await self._events.auth_closure(event_id_list(ev.pdu.get("auth_events", [])))
        encoded = await self._events.federation_json(chain, await self._events.room_version(room_id))
        return with_encoded_arrays({}, auth_chain=[encoded[i] for i in chain if i in encoded])

    async def _walk_back(self, room_id: str, start: list[str], stop: set[str], limit: int,
                         min_depth: int = 0) -> list:
        """Events reachable backwards through prev_events from ``start``, newest first."""
        found, frontier, seen = [], list(start), set(start) | stop
        while frontier and len(found) < limit:
            events = await self._events.get_events(frontier)
            frontier = []
            for ev in sorted(events.values(), key=lambda e: -e.pdu.get("depth", 0)):
                if ev.room_id != room_id or len(found) >= limit:
                    continue
                found.append(ev)
                for prev in event_id_list(ev.pdu.get("prev_events", [])):
                    if prev not in seen:
                        seen.add(prev)
                        frontier.append(prev)
        return [e for e in found if e.pdu.get("depth", 0) >= min_depth]

    async def get_missing_events(self, origin: str, room_id: str, body: dict) -> dict:
        """Spec POST /get_missing_events: events between earliest_events and latest_events, oldest first."""
        await self.check_server_in_room(origin, room_id)
        earliest = [e for e in body.get("earliest_events") or [] if isinstance(e, str)]
        latest = [e for e in body.get("latest_events") or [] if isinstance(e, str)]
        limit = min(int(body.get("limit", 10)), MAX_EVENTS)
        min_depth = int(body.get("min_depth", 0))
        latest_events = await self._events.get_events(latest)
        start = [p for ev in latest_events.values() for p in event_id_list(ev.pdu.get("prev_events", []))]
        found = await self._walk_back(room_id, start, set(earliest) | set(latest), limit, min_depth)
        found.sort(key=lambda e: (e.pdu.get("depth", 0), e.stream_ordering))
        return {"events": [await self._pdu(e) for e in found]}

    async def backfill(self, origin: str, room_id: str, from_ids: list[str], limit: int) -> dict:
        """Spec GET /backfill: up to ``limit`` events before (and including) the given ones."""
        await self.check_server_in_room(origin, room_id)
        found = await self._walk_back(room_id, from_ids, set(), min(limit, MAX_EVENTS))
        return {"origin": self.server_name, "origin_server_ts": self._now(),
                "pdus": [await self._pdu(e) for e in found]}

    async def query_directory(self, alias: str) -> dict:
        room_id = await self._directory.resolve_local(alias)
        if room_id is None:
            raise not_found("Room alias not found")
        servers = {self.server_name}
        state = await self._events.current_state(room_id)
        servers |= {domain_of(k[1]) for k, ev in state.items()
                    if k[0] == "m.room.member" and ev.content.get("membership") == "join"}
        return {"room_id": room_id, "servers": [self.server_name] + sorted(servers - {self.server_name})}

    async def query_profile(self, user_id: str, field: str | None) -> dict:
        if domain_of(user_id) != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "User is not local")
        profile = await self._profiles.get(user_id)
        if field is not None:
            if field not in ("displayname", "avatar_url"):
                raise MatrixError(400, "M_INVALID_PARAM", "Unknown profile field")
            return {field: profile[field]} if field in profile else {}
        return profile

    async def hierarchy(self, origin: str, room_id: str, suggested_only: bool) -> dict:
        """Spec GET /hierarchy: the room and the rooms its m.space.child events name."""
        entry = await self._directory.room_entry(room_id)
        state = await self._events.current_state(room_id)
        children_state = [
            {"type": ev.type, "state_key": ev.state_key, "content": ev.content, "sender": ev.sender,
             "origin_server_ts": ev.pdu.get("origin_server_ts", 0)}
            for (t, _), ev in state.items()
            if t == "m.space.child" and ev.content.get("via") and (ev.content.get("suggested") or not suggested_only)]
        entry["children_state"] = children_state
        children = []
        inaccessible = []
        for child in children_state:
            child_id = child["state_key"]
            if await self._events.room_version(child_id) is None:
                inaccessible.append(child_id)
                continue
            child_entry = await self._directory.room_entry(child_id)
            if child_entry.get("join_rule") in ("public", "knock") or child_entry.get("world_readable"):
                children.append(child_entry)
            else:
                inaccessible.append(child_id)
        return {"room": entry, "children": children, "inaccessible_children": inaccessible}

    async def timestamp_to_event(self, origin: str, room_id: str, ts: int, direction: str) -> dict:
        await self.check_server_in_room(origin, room_id)
        found = await self._events.event_by_timestamp(room_id, ts, direction == "f")
        if found is None:
            raise not_found("No event found")
        return {"event_id": found[0], "origin_server_ts": found[1]}

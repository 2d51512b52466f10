"""Answering other servers' reads (server-server "Retrieving events", "Backfilling",
"get_missing_events", "Querying for information"); the room hierarchy is the spaces service's."""

from __future__ import annotations

from federation.room_servers import RoomServers
from homeserver.bodies import RawBody, with_encoded_arrays
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.builder import event_id_list
from homeserver.events.identifiers import domain_of
from homeserver.events.hashing import strip_convenience_keys
from homeserver.events.redaction import redact_event
from homeserver.services.room_events.heads import RoomHeads, federation_form
from homeserver.services.visibility import visible_to_server

MAX_EVENTS = 100
MAX_MISSING_EVENTS = 20  # Synapse's cap on one /get_missing_events answer


def _int_field(body: dict, key: str, default: int) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MatrixError(400, "M_BAD_JSON", f"{key} must be an integer")
    return value


def _event_ids_field(body: dict, key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise MatrixError(400, "M_BAD_JSON", f"{key} must be a list of event ids")
    return value


class FederationQueries:
    def __init__(self, *, room_heads: RoomHeads, directory, profiles, server_name: str, clock,
                 room_servers: RoomServers, erased):
        self._heads = room_heads
        self._directory = directory
        self._profiles = profiles
        self.server_name = server_name
        self._clock = clock
        self._room_servers = room_servers
        self._erased = erased  # async (user ids) -> the erased ones among them (their events go out redacted)

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def room_access(self, origin: str, room_id: str) -> bool:
        """Whether the origin may read the room at all (server-server "Retrieving events", "Server Access
        Control Lists"): never when the room's ACL denies it; else if one of its users is joined now (True),
        or, peeking, while the room is world-readable (False). A knock, invite, leave or ban gives nothing."""
        if await self._heads.room_version(room_id) is None:
            raise not_found("Unknown room")
        if not await self._room_servers.origin_allowed(origin, room_id):
            raise forbidden("Server is banned from this room by its server ACL")
        if "join" in await self._room_servers.memberships(room_id, origin):
            return True
        vis = await self._heads.current_state_event(room_id, "m.room.history_visibility")
        if vis is None or vis.content.get("history_visibility") != "world_readable":
            raise forbidden("Your server is not in this room")
        return False

    async def _for_server(self, origin: str, events: list, joined_now: bool) -> list[dict]:
        """The events as the origin may read them (Synapse's ``filter_events_for_server`` with redaction):
        each one it cannot see under the history visibility at the event, or whose sender was erased, comes
        pruned. The state at all
        the events is read in one query; an event stored without state (an outlier, a backfilled one) counts
        as ``shared`` (as Synapse does for outliers)."""
        views = await self._heads.server_view_of_state(
            {e.state_group for e in events if e.state_group is not None}, origin)
        ids = {v for view in views.values() for (t, k), v in view.items()
               if t == "m.room.history_visibility" or domain_of(k) == origin}
        state_events = await self._heads.get_events(ids)
        erased = await self._erased({e.sender for e in events if domain_of(e.sender) == self.server_name})
        out = []
        for ev in events:
            view = views.get(ev.state_group, {})
            vis_event = state_events.get(view.get(("m.room.history_visibility", "")))
            visibility = vis_event.content.get("history_visibility", "shared") if vis_event else "shared"
            memberships = [state_events[v].content.get("membership") for (t, k), v in view.items()
                           if t == "m.room.member" and domain_of(k) == origin and v in state_events]
            version = await self._heads.room_version(ev.room_id)
            if visible_to_server(visibility, memberships, joined_now=joined_now) and ev.sender not in erased:
                out.append(federation_form(ev, version))
            else:
                out.append(strip_convenience_keys(redact_event(ev.pdu, version), version))
        return out

    async def event(self, origin: str, event_id: str) -> dict:
        """Spec GET /event: the event, pruned if the origin could not see it."""
        ev = await self._heads.get_event(event_id)
        if ev is None:
            raise not_found("Event not found")
        joined_now = await self.room_access(origin, ev.room_id)
        return {"origin": self.server_name, "origin_server_ts": self._now(),
                "pdus": await self._for_server(origin, [ev], joined_now)}

    async def _state_before(self, origin: str, room_id: str, event_id: str) -> dict:
        await self.room_access(origin, room_id)
        ev = await self._heads.get_event(event_id)
        if ev is None or ev.room_id != room_id or ev.state_group is None:
            raise not_found("Event not found")
        state = await self._heads.state_at_group(ev.state_group)
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
        chain = await self._heads.auth_closure(state.values())
        return {"pdu_ids": sorted(state.values()), "auth_chain_ids": sorted(set(chain) - set(state.values()))}

    async def state(self, origin: str, room_id: str, event_id: str) -> RawBody:
        """Spec GET /state: the state before the event and its auth chain, as PDUs."""
        state_ids = set((await self._state_before(origin, room_id, event_id)).values())
        chain = await self._heads.auth_closure(state_ids)
        chain_ids = [i for i in chain if i not in state_ids]
        encoded = await self._heads.federation_json(chain, await self._heads.room_version(room_id))
        return with_encoded_arrays({}, pdus=[encoded[i] for i in state_ids if i in encoded],
                                   auth_chain=[encoded[i] for i in chain_ids if i in encoded])

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> RawBody:
        await self.room_access(origin, room_id)
        ev = await self._heads.get_event(event_id)
        if ev is None or ev.room_id != room_id:
            raise not_found("Event not found")
        chain = await self._heads.auth_closure(event_id_list(ev.pdu.get("auth_events", [])))
        encoded = await self._heads.federation_json(chain, await self._heads.room_version(room_id))
        return with_encoded_arrays({}, auth_chain=[encoded[i] for i in chain if i in encoded])

    async def _walk_back(self, room_id: str, start: list[str], stop: set[str], limit: int,
                         min_depth: int = 0) -> list:
        """Events reachable backwards through prev_events from ``start``, newest first."""
        found, frontier, seen = [], list(start), set(start) | stop
        while frontier and len(found) < limit:
            events = await self._heads.get_events(frontier)
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
        """Spec POST /get_missing_events: events between earliest_events and latest_events, oldest first
        (at most 20, as Synapse), pruned where the origin could not see them."""
        earliest, latest = _event_ids_field(body, "earliest_events"), _event_ids_field(body, "latest_events")
        limit, min_depth = _int_field(body, "limit", 10), _int_field(body, "min_depth", 0)
        if limit < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "limit must not be negative")
        joined_now = await self.room_access(origin, room_id)
        latest_events = await self._heads.get_events(latest)
        start = [p for ev in latest_events.values() if ev.room_id == room_id
                 for p in event_id_list(ev.pdu.get("prev_events", []))]
        found = await self._walk_back(room_id, start, set(earliest) | set(latest), min(limit, MAX_MISSING_EVENTS),
                                      min_depth)
        found.sort(key=lambda e: (e.pdu.get("depth", 0), e.stream_ordering))
        return {"events": await self._for_server(origin, found, joined_now)}

    async def backfill(self, origin: str, room_id: str, from_ids: list[str], limit: int) -> dict:
        """Spec GET /backfill: up to ``limit`` events before (and including) the given ones, pruned where
        the origin could not see them."""
        joined_now = await self.room_access(origin, room_id)
        found = await self._walk_back(room_id, from_ids, set(), min(limit, MAX_EVENTS))
        return {"origin": self.server_name, "origin_server_ts": self._now(),
                "pdus": await self._for_server(origin, found, joined_now)}

    async def query_directory(self, alias: str) -> dict:
        room_id = await self._directory.resolve_local(alias)
        if room_id is None:
            raise not_found("Room alias not found")
        servers = {self.server_name}
        state = await self._heads.current_state(room_id)
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

    async def timestamp_to_event(self, origin: str, room_id: str, ts: int, direction: str) -> dict:
        """Spec GET /timestamp_to_event: for a server that may read the room (see :meth:`room_access`)."""
        await self.room_access(origin, room_id)
        found = await self._heads.event_by_timestamp(room_id, ts, direction == "f")
        if found is None:
            raise not_found("No event found")
        return {"event_id": found[0], "origin_server_ts": found[1]}

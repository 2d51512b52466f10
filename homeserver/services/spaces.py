"""Spaces and room summaries: client-server ``GET /rooms/{roomId}/hierarchy`` ("Spaces", v1.19),
``GET /room_summary/{roomIdOrAlias}`` ("Room Summaries", v1.15, MSC3266) and server-server
``GET /hierarchy/{roomId}``.

A room this server is in (a local user joined) is summarised from its current state; any other room is asked
of the servers its ``m.space.child`` event names (``via``), through federation's ``/hierarchy``, which answers
a room and, for a space, its children one level down. Who may see a room follows Synapse: anyone when it is
joinable or knockable by anyone or world-readable; else a user joined or invited, or joined to a room its
restricted join rule names; over federation, a server with such a user.

The client walk is depth first, children in the spec's order; a page stops at ``limit`` rooms and its
``next_batch`` names a stored session (what is left to walk, which rooms are done) that expires after
five minutes; ``suggested_only`` and ``max_depth`` may not change along one walk.
"""

from __future__ import annotations

import secrets

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.spaces import SPACE_ROOM_TYPE, allowed_room_ids, previewable, space_children

MAX_ROOMS = 50  # per page, and children of one space over federation (Synapse's MAX_ROOMS, MAX_ROOMS_PER_SPACE)
SESSION_LIFETIME_MS = 5 * 60 * 1000
ACCESS_KEYS = {("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.create", "")}


class SpaceService:
    def __init__(self, *, room_heads, room_servers, directory, remote, sessions, events, server_name: str, clock):
        self._heads = room_heads
        self._events = events  # the event store: a user's memberships, those of rooms known by an invite too
        self._room_servers = room_servers
        self._directory = directory
        self._remote = remote  # federation's RemoteQueries
        self._sessions = sessions
        self.server_name = server_name
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def _is_resident(self, room_id: str) -> bool:
        return "join" in await self._room_servers.memberships(room_id, self.server_name)

    # -- who may see a room ----------------------------------------------------------------------
    async def _joined_any(self, room_ids: list[str], *, user_id: str | None = None, server: str | None = None) -> bool:
        for room_id in room_ids:
            if user_id is not None and await self._heads.membership(room_id, user_id) == "join":
                return True
            if server is not None and "join" in await self._room_servers.memberships(room_id, server):
                return True
        return False

    async def _local_accessible(self, room_id: str, user_id: str | None, origin: str | None = None) -> bool:
        """Whether the user (or the origin server) may see the summary of a room we hold the state of."""
        version = await self._heads.room_version(room_id)
        if version is None:
            return False
        state = await self._heads.current_state(room_id, ACCESS_KEYS)
        rules = state.get(("m.room.join_rules", ""))
        vis = state.get(("m.room.history_visibility", ""))
        join_rule = rules.content.get("join_rule") if rules is not None else None
        if (join_rule == "public" or (join_rule == "knock" and version.knock_join_rule)
                or (join_rule == "knock_restricted" and version.knock_restricted_join_rule)
                or (vis is not None and vis.content.get("history_visibility") == "world_readable")):
            return True
        restricted = (join_rule == "restricted" and version.restricted_join_rule) \
            or (join_rule == "knock_restricted" and version.knock_restricted_join_rule)
        allowed = allowed_room_ids(rules.content) if restricted else []
        if user_id is not None:
            return await self._heads.membership(room_id, user_id) in ("join", "invite") \
                or await self._joined_any(allowed, user_id=user_id)
        if origin is not None:
            return bool({"join", "invite"} & await self._room_servers.memberships(room_id, origin)) \
                or await self._joined_any(allowed, server=origin)
        return False

    async def _remote_accessible(self, user_id: str | None, room: dict) -> bool:
        """Whether the user may see a summary another server gave (it saw fit to show it to this server)."""
        if previewable(room):
            return True
        if user_id is None:
            return False
        allowed = room.get("allowed_room_ids")
        if isinstance(allowed, list) and await self._joined_any([r for r in allowed if isinstance(r, str)],
                                                                user_id=user_id):
            return True
        return await self._membership(room["room_id"], user_id) in ("join", "invite") \
            or await self._local_accessible(room["room_id"], user_id)

    async def _membership(self, room_id: str, user_id: str) -> str | None:
        """The user's membership, also in a room this server knows only by an invite (or a knock)."""
        membership = await self._heads.membership(room_id, user_id)
        if membership is None:
            membership = (await self._events.rooms_for_user(user_id)).get(room_id, (None,))[0]
        return membership

    # -- summaries ------------------------------------------------------------------------------
    async def _entry(self, room_id: str, for_federation: bool) -> dict:
        """A room's summary (spec ``RoomSummary``); over federation with ``allowed_room_ids``."""
        entry = await self._directory.room_entry(room_id)
        state = await self._heads.current_state(room_id, {("m.room.create", ""), ("m.room.encryption", ""),
                                                          ("m.room.join_rules", "")})
        create, encryption = state.get(("m.room.create", "")), state.get(("m.room.encryption", ""))
        entry["room_version"] = str(create.content.get("room_version", "1")) if create is not None else "1"
        if encryption is not None and isinstance(encryption.content.get("algorithm"), str):
            entry["encryption"] = encryption.content["algorithm"]
        rules = state.get(("m.room.join_rules", ""))
        allowed = allowed_room_ids(rules.content if rules is not None else None)
        if for_federation and allowed:
            entry["allowed_room_ids"] = allowed
        return entry

    async def _children_state(self, room_id: str, suggested_only: bool) -> list[dict]:
        state = await self._heads.current_state(room_id)
        return space_children([{"type": ev.type, "state_key": ev.state_key, "content": ev.content,
                                "sender": ev.sender, "origin_server_ts": ev.pdu.get("origin_server_ts", 0)}
                               for (t, _), ev in state.items() if t == "m.space.child"], suggested_only)

    async def _summarize_local(self, room_id: str, user_id: str | None, origin: str | None, suggested_only: bool,
                               with_children: bool = True) -> dict | None:
        """The room's summary with ``children_state`` (a space's children, when asked), or None when hidden."""
        if not await self._local_accessible(room_id, user_id, origin):
            return None
        entry = await self._entry(room_id, for_federation=origin is not None)
        is_space = entry.get("room_type") == SPACE_ROOM_TYPE
        entry["children_state"] = await self._children_state(room_id, suggested_only) \
            if is_space and with_children else []
        return entry

    async def _summarize_remote(self, room_id: str, via: list[str], suggested_only: bool) -> dict | None:
        """Another server's ``/hierarchy`` answer for the room, with ``children_state`` kept valid and ordered."""
        via = [s for s in via if s != self.server_name]
        answer = await self._remote.hierarchy(via, room_id, suggested_only) if via else None
        if answer is None:
            return None
        children_state = [c for c in answer["room"].get("children_state", [])
                          if isinstance(c, dict) and c.get("type") == "m.space.child"
                          and isinstance(c.get("content"), dict)]
        answer["room"]["children_state"] = space_children(children_state, suggested_only)
        return answer

    # -- client-server GET /hierarchy -----------------------------------------------------------
    async def hierarchy(self, user_id: str, room_id: str, *, suggested_only: bool, max_depth: int | None,
                        limit: int | None, from_token: str | None) -> dict:
        """Spec GET /rooms/{roomId}/hierarchy: a page of the space tree, depth first."""
        if await self._is_resident(room_id):
            if not await self._local_accessible(room_id, user_id):
                raise forbidden(f"User {user_id} not in room {room_id}, and room previews are disabled")
        else:
            answer = await self._summarize_remote(room_id, [], suggested_only)
            if answer is None or not await self._remote_accessible(user_id, answer["room"]):
                raise forbidden(f"User {user_id} not in room {room_id}, and room previews are disabled")
        params = {"user_id": user_id, "room_id": room_id, "suggested_only": suggested_only, "max_depth": max_depth}
        if from_token is not None:
            session = await self._sessions.get(from_token, self._now())
            if session is None or session["params"] != params:
                raise MatrixError(400, "M_INVALID_PARAM", "Unknown pagination token, or suggested_only or "
                                                          "max_depth changed since the first page")
            queue, done = session["queue"], set(session["done"])
        else:
            queue, done = [[room_id, [], 0, None]], set()
        rooms = await self._walk(user_id, queue, done, suggested_only, max_depth, min(limit or MAX_ROOMS, MAX_ROOMS))
        result: dict = {"rooms": rooms}
        if queue:
            token = secrets.token_urlsafe(18)
            await self._sessions.add(token, {"params": params, "queue": queue, "done": sorted(done)},
                                     self._now() + SESSION_LIFETIME_MS, self._now())
            result["next_batch"] = token
        return result

    async def _walk(self, user_id: str, queue: list, done: set, suggested_only: bool, max_depth: int | None,
                    limit: int) -> list[dict]:
        """Take rooms off ``queue`` (the next one last; entries ``[room id, via, depth, remote summary]``)
        until ``limit`` rooms are shown; ``queue`` and ``done`` are left as the next page needs them."""
        rooms: list[dict] = []
        while queue and len(rooms) < limit:
            room_id, via, depth, known = queue.pop()
            if room_id in done:
                continue
            done.add(room_id)
            child_summaries: dict[str, dict] = {}
            hidden: set[str] = set()
            if await self._is_resident(room_id):
                entry = await self._summarize_local(room_id, user_id, None, suggested_only)
            else:
                if known is not None and (known.get("room_type") != SPACE_ROOM_TYPE
                                          or (max_depth is not None and depth >= max_depth)):
                    entry = {**known, "children_state": []}
                else:
                    answer = await self._summarize_remote(room_id, via, suggested_only)
                    entry = answer["room"] if answer is not None else None
                    if answer is not None:
                        child_summaries = {c["room_id"]: c for c in answer["children"]}
                        hidden = set(answer["inaccessible_children"])
                if entry is not None and not await self._remote_accessible(user_id, entry):
                    entry = None
            if entry is None:
                continue
            entry.pop("allowed_room_ids", None)
            rooms.append(entry)
            if max_depth is None or depth < max_depth:
                queue.extend([child["state_key"], child["content"]["via"], depth + 1,
                              child_summaries.get(child["state_key"])]
                             for child in reversed(entry["children_state"]) if child["state_key"] not in hidden)
        return rooms

    # -- server-server GET /hierarchy -----------------------------------------------------------
    async def federation_hierarchy(self, origin: str, room_id: str, suggested_only: bool) -> dict:
        """Server-server GET /hierarchy/{roomId}: the room and its children one level down, as the origin may
        see them; rooms this server is not in are left out, hidden ones listed in ``inaccessible_children``.
        A room the origin may not see, or whose server ACL denies it, is 404 as an unknown one."""
        root = None
        if await self._is_resident(room_id) and await self._room_servers.origin_allowed(origin, room_id):
            root = await self._summarize_local(room_id, None, origin, suggested_only)
        if root is None:
            raise not_found(f"Unknown room: {room_id}")
        children, inaccessible = [], []
        for child in root["children_state"][:MAX_ROOMS]:
            child_id = child["state_key"]
            if not await self._is_resident(child_id):
                continue
            entry = await self._summarize_local(child_id, None, origin, suggested_only, with_children=False)
            if entry is None:
                inaccessible.append(child_id)
            else:
                del entry["children_state"]
                children.append(entry)
        return {"room": root, "children": children, "inaccessible_children": inaccessible}

    # -- client-server GET /room_summary --------------------------------------------------------
    async def summary(self, user_id: str | None, room_id_or_alias: str, via: list[str]) -> dict:
        """Spec GET /room_summary/{roomIdOrAlias}: the room's summary and the user's membership; 404 when
        the room is unknown or the user may not see it (an anonymous user sees only previewable rooms)."""
        if room_id_or_alias.startswith("#"):
            resolved = await self._directory.resolve(room_id_or_alias)
            room_id, via = resolved["room_id"], list(via) + list(resolved.get("servers", []))
        elif room_id_or_alias.startswith("!"):
            room_id = room_id_or_alias
        else:
            raise MatrixError(400, "M_INVALID_PARAM", "Expected a room id or alias")
        if await self._is_resident(room_id):
            room = await self._summarize_local(room_id, user_id, None, False, with_children=False)
            if room is not None:
                del room["children_state"]
        else:
            answer = await self._summarize_remote(room_id, via, suggested_only=True)
            room = answer["room"] if answer is not None else None
            if room is not None and not await self._remote_accessible(user_id, room):
                room = None
            if room is not None:
                room = {k: v for k, v in room.items() if k not in ("allowed_room_ids", "children_state")}
        if room is None:
            raise not_found("Room not found or is not accessible")
        if user_id is not None:
            room["membership"] = await self._membership(room_id, user_id) or "leave"
        return room


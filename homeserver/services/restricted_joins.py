"""Restricted rooms (client-server and server-server "Restricted rooms", room versions 8 and later).

A join to a restricted room names a local member who may invite (``join_authorised_via_users_server``). Both
local joins (``services/rooms.py``) and remote servers' joins through this one (``federation/handlers/
membership.py``) ask it; it reads only the rooms' current state, so both can be given it.
"""

from __future__ import annotations

from homeserver.errors import MatrixError, forbidden
from homeserver.events.auth_rules import get_named_level, get_power_level
from homeserver.events.identifiers import domain_of
from homeserver.events.room_versions import RoomVersion
from homeserver.services.room_events.heads import RoomHeads


class RestrictedJoins:
    def __init__(self, *, room_heads: RoomHeads, server_name: str):
        self._heads = room_heads
        self.server_name = server_name

    async def authoriser(self, room_id: str, version: RoomVersion, user_id: str) -> str | None:
        """Spec "Restricted rooms": a local member who may invite, when a join needs one; refuses joins
        the allow list does not permit."""
        if not version.restricted_join_rule:
            return None
        rules = await self._heads.current_state_event(room_id, "m.room.join_rules")
        if rules is None or rules.content.get("join_rule") not in ("restricted", "knock_restricted"):
            return None
        if await self._heads.membership(room_id, user_id) in ("join", "invite"):
            return None
        allowed = False
        for entry in rules.content.get("allow", []):
            if isinstance(entry, dict) and entry.get("type") == "m.room_membership" \
                    and await self._heads.membership(str(entry.get("room_id", "")), user_id) == "join":
                allowed = True
        if not allowed:
            raise forbidden("You are not allowed to join this restricted room")
        state = await self._heads.current_state(room_id)
        create = state.get(("m.room.create", ""))
        pl = state.get(("m.room.power_levels", ""))
        invite_level = get_named_level(version, pl.pdu if pl else None, "invite")
        for (t, member), ev in sorted(state.items()):
            if t == "m.room.member" and ":" in member and domain_of(member) == self.server_name \
                    and ev.content.get("membership") == "join" \
                    and get_power_level(version, create.pdu if create else None, pl.pdu if pl else None,
                                        member) >= invite_level:
                return member
        raise MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN", "No local user can authorise this join")

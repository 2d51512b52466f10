"""The servers of a room, read from its current state: who is in it, and whom its server ACL lets in.

Spec v1.19 server-server "Server Access Control Lists" (``m.room.server_acl``, enforced on everything a server
sends about a room) and "Sending events": the other servers with a joined member are a room's destinations.
Built first by the composition root and shared by the receiver, joins, queries and EDUs.
"""

from __future__ import annotations

from federation.policy import server_acl_allows
from homeserver.events.identifiers import domain_of
from homeserver.services.room_events.heads import RoomHeads


class RoomServers:
    def __init__(self, room_heads: RoomHeads):
        self._heads = room_heads

    async def joined(self, room_id: str) -> list[str]:
        """The servers with a joined member (this one included, if it has one), sorted."""
        return sorted((await self._heads.members(room_id)).joined)

    async def memberships(self, room_id: str, server: str) -> set[str]:
        """The current memberships of the server's users in the room."""
        ids = [v for (t, k), v in (await self._heads.current_state_ids(room_id)).items()
               if t == "m.room.member" and domain_of(k) == server]
        return {ev.content.get("membership") for ev in (await self._heads.get_events(ids)).values()}

    async def origin_allowed(self, origin: str, room_id: str) -> bool:
        acl = await self._heads.current_state_event(room_id, "m.room.server_acl")
        return server_acl_allows(acl.content if acl is not None else None, origin)

"""The federation side of a homeserver: receiving and answering room events (sending them:
``federation/outbox.py``).

Given by the composition root (``homeserver/server.py``) its parts, built there:
the PDU receiver, remote membership, queries, the rooms' servers and ACLs, and
the transport's client and sender.
"""

from __future__ import annotations

from federation.handlers.membership import FederationMembership
from federation.handlers.queries import FederationQueries
from federation.handlers.receive import PduReceiver
from federation.handlers.remote_queries import RemoteQueries
from federation.room_servers import RoomServers
from homeserver.services.room_events.gate import JoinGate
from homeserver.services.room_events.heads import RoomHeads
from homeserver.services.sync import STRIPPED_STATE_TYPES, stripped


class Federation:
    def __init__(self, *, room_heads: RoomHeads, join_gate: JoinGate, room_servers: RoomServers, receiver: PduReceiver,
                 membership: FederationMembership, queries: FederationQueries, remote: RemoteQueries,
                 server_name: str, client, sender):
        self._heads = room_heads
        self._join_gate = join_gate
        self._room_servers = room_servers
        self.server_name = server_name
        self.client = client
        self.sender = sender
        self.receiver = receiver
        self.membership = membership
        self.queries = queries
        self.remote = remote

    async def origin_allowed_in_room(self, origin: str, room_id: str) -> bool:
        """Spec "Server Access Control Lists": enforced on everything a server sends us about a room."""
        return await self._room_servers.origin_allowed(origin, room_id)

    async def backfill(self, room_id: str, from_ids: list[str] | None = None) -> bool:
        """Fetch older history of a room from the other servers in it: from ``from_ids`` (events we lack),
        else from before the oldest events we hold."""
        servers = [s for s in await self._room_servers.joined(room_id) if s != self.server_name]
        return await self.receiver.backfill(room_id, servers, from_ids)

    async def resume_partial_joins(self) -> None:
        """Joins accepted with partial state before a restart: their rooms' requests wait again while they
        complete (and any room's requests wait until the joins are read)."""
        self._join_gate.hold_until_partial_joins_known()
        try:
            for room_id, event_id, servers in await self._join_gate.partial_joins():
                version = await self._heads.room_version(room_id)
                if version is not None:
                    self._join_gate.complete_later(room_id)
                    self.membership.finish_partial_join(room_id, version, event_id, servers)
        finally:
            self._join_gate.partial_joins_known()

    def peer_is_up(self, origin: str) -> None:
        if self.sender is not None:
            self.sender.wake(origin)

    async def stripped_state(self, room_id: str) -> list[dict]:
        state = await self._heads.current_state(room_id, {(t, "") for t in STRIPPED_STATE_TYPES})
        return [stripped(ev) for ev in state.values()]

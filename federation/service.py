"""The federation side of a homeserver: receiving, answering, and sending room events.

Given by the composition root (``homeserver/server.py``) its parts, built there:
the PDU receiver, remote membership, queries, the rooms' servers and ACLs, and
the transport's client and sender.
"""

from __future__ import annotations

import logging

from twisted.internet import defer

from federation.handlers.membership import FederationMembership
from federation.handlers.queries import FederationQueries
from federation.handlers.receive import PduReceiver
from federation.handlers.remote_queries import RemoteQueries
from federation.policy import server_acl_allows
from federation.room_servers import RoomServers
from homeserver.events.hashing import strip_convenience_keys
from homeserver.events.identifiers import domain_of
from homeserver.services.room_events import RoomEventService
from homeserver.services.sync import STRIPPED_STATE_TYPES, stripped

logger = logging.getLogger(__name__)

CATCH_UP_BATCH = 500


class Federation:
    def __init__(self, *, room_events: RoomEventService, room_servers: RoomServers, receiver: PduReceiver,
                 membership: FederationMembership, queries: FederationQueries, remote: RemoteQueries,
                 server_name: str, client, sender):
        self._events = room_events
        self._room_servers = room_servers
        self.server_name = server_name
        self.client = client
        self.sender = sender
        self.receiver = receiver
        self.membership = membership
        self.queries = queries
        self.remote = remote
        self._outbox: list[list] = []
        self._drain: defer.Deferred | None = None  # the outbox being emptied, if it is
        self._handled = 0  # the stream ordering of the newest local event handled by the outbox
        self._stored = 0  # ... and the newest known stored as such (see catch_up)

    async def origin_allowed_in_room(self, origin: str, room_id: str) -> bool:
        """Spec "Server Access Control Lists": enforced on everything a server sends us about a room."""
        return await self._room_servers.origin_allowed(origin, room_id)

    async def backfill(self, room_id: str) -> bool:
        """Fetch older history of a room from the other servers in it."""
        servers = [s for s in await self._room_servers.joined(room_id) if s != self.server_name]
        return await self.receiver.backfill(room_id, servers)

    async def resume_partial_joins(self) -> None:
        """Joins accepted with partial state before a restart: their rooms' requests wait again while they
        complete (and any room's requests wait until the joins are read)."""
        self._events.hold_until_partial_joins_known()
        try:
            for room_id, event_id, servers in await self._events.partial_joins():
                version = await self._events.room_version(room_id)
                if version is not None:
                    self._events.complete_later(room_id)
                    self.membership.finish_partial_join(room_id, version, event_id, servers)
        finally:
            self._events.partial_joins_known()

    def peer_is_up(self, origin: str) -> None:
        if self.sender is not None:
            self.sender.wake(origin)

    async def stripped_state(self, room_id: str) -> list[dict]:
        state = await self._events.current_state(room_id, {(t, "") for t in STRIPPED_STATE_TYPES})
        return [stripped(ev) for ev in state.values()]

    # -- outbound -----------------------------------------------------------------------------------
    def on_new_events(self, events) -> None:
        """Queue local events for the other servers, strictly in the order they were persisted
        (a peer receiving an event before its parent would have to fetch the gap)."""
        local = [e for e in events if not e.outlier and domain_of(e.sender) == self.server_name]
        if local and self.sender is not None:
            self._outbox.append(local)
            self._start_draining()

    def _start_draining(self) -> None:
        if self._drain is None and self._outbox:
            self._run_outbox(self._drain_outbox())

    def _run_outbox(self, work) -> None:
        """Run ``work`` (which resets ``_drain`` when it ends) as the one outbox task."""
        d = defer.ensureDeferred(work)
        if not d.called:
            self._drain = d

    async def _drain_outbox(self) -> None:
        try:
            while self._outbox:
                batch = self._outbox.pop(0)
                try:
                    await self._send(batch)
                except Exception:
                    logger.exception("Queueing events for federation failed")
            if self._handled - self._stored >= CATCH_UP_BATCH:  # events of rooms with no other server
                try:
                    await self._store_handled()
                except Exception:
                    logger.exception("Storing the federation stream position failed")
        finally:
            self._drain = None

    def catch_up(self) -> None:
        """At start-up, queue the local events that a crash left persisted (and acknowledged to their
        senders) but not queued: those after the stream position stored with the last queued one, up to
        the newest event persisted before this start. Events sent meanwhile wait behind them, in order."""
        if self.sender is not None:
            self._run_outbox(self._catch_up(self._events.stream.current()))

    async def _catch_up(self, upto: int) -> None:
        try:
            after = await self.sender.stream_position()
            queued = 0
            while after is not None and after < upto:
                events = await self._events.timeline_events_after(after, upto, CATCH_UP_BATCH)
                if not events:
                    break
                local = [e for e in events if domain_of(e.sender) == self.server_name]
                await self._send(local)
                queued += len(local)
                after = events[-1].stream_ordering
            self._handled = max(self._handled, upto)
            await self._store_handled()
            if queued:
                logger.info("Federation catch-up: %d local events since the last queued one re-examined", queued)
        except Exception:
            logger.exception("Catching up the federation queues failed")
        finally:
            self._drain = None
        self._start_draining()

    async def flush(self) -> None:
        """Shutdown: queue what the outbox still holds, then store how far it got."""
        while self._drain is not None:
            await self._drain
        if self.sender is not None and self._handled > self._stored:
            await self._store_handled()

    async def _store_handled(self) -> None:
        """Store how far the outbox got, so that a catch-up after a crash reads no more than it must."""
        handled = self._handled
        await self.sender.advance_stream_position(handled)
        self._stored = max(self._stored, handled)

    async def _send(self, events) -> None:
        for ev in events:
            destinations = set(await self._room_servers.joined(ev.room_id))
            if ev.type == "m.room.member" and ev.state_key:
                destinations.add(domain_of(ev.state_key))
                if ev.replaces_state:  # a leave or ban still reaches the server that was in the room
                    prev = await self._events.get_event(ev.replaces_state)
                    if prev is not None:
                        destinations.add(domain_of(prev.state_key))
            destinations = await self._acl_filtered(ev.room_id, destinations - {self.server_name})
            if destinations:
                version = await self._events.room_version(ev.room_id)
                await self.sender.send_pdu(sorted(destinations), strip_convenience_keys(ev.pdu, version),
                                           ev.stream_ordering)
                self._stored = max(self._stored, ev.stream_ordering)
            self._handled = max(self._handled, ev.stream_ordering)

    async def _acl_filtered(self, room_id: str, destinations: set[str]) -> set[str]:
        acl = await self._events.current_state_event(room_id, "m.room.server_acl")
        if acl is None:
            return destinations
        return {d for d in destinations if server_acl_allows(acl.content, d)}

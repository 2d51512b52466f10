"""Local room events to the other servers of their rooms (server-server "Sending events", "Server Access
Control Lists"), through the federation sender's persisted per-destination queues, strictly in the order they
were persisted; after a crash, the events persisted but not queued are queued at start-up (:meth:`catch_up`).
"""

from __future__ import annotations

import logging

from twisted.internet import defer

from federation.policy import server_acl_allows
from federation.room_servers import RoomServers
from homeserver.events.hashing import strip_convenience_keys
from homeserver.events.identifiers import domain_of
from homeserver.services.room_events.heads import RoomHeads

logger = logging.getLogger(__name__)

CATCH_UP_BATCH = 500


class PduOutbox:
    def __init__(self, *, room_heads: RoomHeads, room_servers: RoomServers, server_name: str, sender):
        self._heads = room_heads
        self._room_servers = room_servers
        self.server_name = server_name
        self.sender = sender
        self._outbox: list[list] = []
        self._drain: defer.Deferred | None = None  # the outbox being emptied, if it is
        self._handled = 0  # the stream ordering of the newest local event handled by the outbox
        self._stored = 0  # ... and the newest known stored as such (see catch_up)

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
            self._run_outbox(self._catch_up(self._heads.stream.current()))

    async def _catch_up(self, upto: int) -> None:
        try:
            after = await self.sender.stream_position()
            queued = 0
            while after is not None and after < upto:
                events = await self._heads.timeline_events_after(after, upto, CATCH_UP_BATCH)
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
                destinations |= await self._member_target_server(ev)
            destinations = await self._acl_filtered(ev.room_id, destinations - {self.server_name})
            if destinations:
                version = await self._heads.room_version(ev.room_id)
                await self.sender.send_pdu(sorted(destinations), strip_convenience_keys(ev.pdu, version),
                                           ev.stream_ordering)
                self._stored = max(self._stored, ev.stream_ordering)
            self._handled = max(self._handled, ev.stream_ordering)

    async def _member_target_server(self, ev) -> set[str]:
        """The target's server, when a membership event must reach it though it may have no joined member now
        (as Synapse: the servers in the room before the event, plus the invitee's of a rescinded invite): a
        leave, kick or ban of a user who was joined; a leave rescinding their invite. Not an invite itself:
        it went by PUT /invite, and the invitee's server, not in the room, does not track it."""
        prev = await self._heads.get_event(ev.replaces_state) if ev.replaces_state else None
        if prev is None:
            return set()
        was = prev.content.get("membership")
        now = ev.content.get("membership")
        if was == "join" or (was == "invite" and now == "leave" and ev.sender != ev.state_key):
            return {domain_of(ev.state_key)}
        return set()

    async def _acl_filtered(self, room_id: str, destinations: set[str]) -> set[str]:
        acl = await self._heads.current_state_event(room_id, "m.room.server_acl")
        if acl is None:
            return destinations
        return {d for d in destinations if server_acl_allows(acl.content, d)}

"""The federation side of a homeserver: receiving, answering, and sending room events.

Built by the composition root with the transport pieces (client, key fetcher,
sender) and the room services it shares with the client-server API.
"""

from __future__ import annotations

import logging
import secrets

from twisted.internet import defer

from federation.handlers.membership import FederationMembership
from federation.handlers.queries import FederationQueries
from federation.handlers.receive import PduReceiver
from federation.policy import server_acl_allows
from federation.rejections import FederationRejections
from homeserver.events.hashing import strip_convenience_keys
from homeserver.events.identifiers import domain_of
from homeserver.services.room_events import RoomEventService
from homeserver.services.sync import STRIPPED_STATE_TYPES, stripped

logger = logging.getLogger(__name__)

OPENID_TOKEN_LIFETIME_MS = 3600 * 1000


class OpenIdTokens:
    """Spec "OpenID": short-lived tokens a user hands to a third party, checked by /openid/userinfo."""

    def __init__(self, clock):
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}

    def issue(self, user_id: str) -> tuple[str, int]:
        now = self._clock.seconds()
        self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (user_id, now + OPENID_TOKEN_LIFETIME_MS / 1000)
        return token, OPENID_TOKEN_LIFETIME_MS // 1000

    def user_for_token(self, token: str) -> str | None:
        entry = self._tokens.get(token)
        if entry is None or entry[1] < self._clock.seconds():
            return None
        return entry[0]


class Federation:
    def __init__(self, *, room_events: RoomEventService, rooms, directory, profiles, server_name: str,
                 signing_key, clock, client, key_fetcher, sender, rejections: FederationRejections):
        self._events = room_events
        self.server_name = server_name
        self.client = client
        self.sender = sender
        self.receiver = PduReceiver(room_events=room_events, key_fetcher=key_fetcher, client=client,
                                    server_name=server_name, acl=self.origin_allowed_in_room,
                                    rejections=rejections)
        self.membership = FederationMembership(room_events=room_events, rooms=rooms, receiver=self.receiver,
                                               client=client,
                                               server_name=server_name, signing_key=signing_key, sender=sender,
                                               clock=clock)
        self.queries = FederationQueries(room_events=room_events, directory=directory, profiles=profiles,
                                         server_name=server_name, clock=clock, acl=self.origin_allowed_in_room)
        self._outbox: list[list] = []
        self._draining = False
        room_events.listeners.append(self._on_new_events)

    async def origin_allowed_in_room(self, origin: str, room_id: str) -> bool:
        """Spec "Server Access Control Lists": enforced on everything a server sends us about a room."""
        acl = await self._events.current_state_event(room_id, "m.room.server_acl")
        return server_acl_allows(acl.content if acl is not None else None, origin)

    async def backfill(self, room_id: str) -> bool:
        """Fetch older history of a room from the other servers in it."""
        servers = [s for s in await self.membership.servers_in_room(room_id) if s != self.server_name]
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
    def _on_new_events(self, events) -> None:
        """Queue local events for the other servers, strictly in the order they were persisted
        (a peer receiving an event before its parent would have to fetch the gap)."""
        local = [e for e in events if not e.outlier and domain_of(e.sender) == self.server_name]
        if local and self.sender is not None:
            self._outbox.append(local)
            if not self._draining:
                self._draining = True
                defer.ensureDeferred(self._drain_outbox())

    async def _drain_outbox(self) -> None:
        try:
            while self._outbox:
                batch = self._outbox.pop(0)
                try:
                    await self._send(batch)
                except Exception:
                    logger.exception("Queueing events for federation failed")
        finally:
            self._draining = False

    async def _send(self, events) -> None:
        for ev in events:
            destinations = set(await self.membership.servers_in_room(ev.room_id))
            if ev.type == "m.room.member" and ev.state_key:
                destinations.add(domain_of(ev.state_key))
                if ev.replaces_state:  # a leave or ban still reaches the server that was in the room
                    prev = await self._events.get_event(ev.replaces_state)
                    if prev is not None:
                        destinations.add(domain_of(prev.state_key))
            destinations = await self._acl_filtered(ev.room_id, destinations - {self.server_name})
            if destinations:
                version = await self._events.room_version(ev.room_id)
                await self.sender.send_pdu(sorted(destinations), strip_convenience_keys(ev.pdu, version))

    async def _acl_filtered(self, room_id: str, destinations: set[str]) -> set[str]:
        acl = await self._events.current_state_event(room_id, "m.room.server_acl")
        if acl is None:
            return destinations
        return {d for d in destinations if server_acl_allows(acl.content, d)}

"""Client-server "Guest Access", server behaviour: when a room's ``m.room.guest_access`` stops being
``can_join``, the server makes its guests in the room leave.

The listener only queues the room (it runs while the event is announced); ``run`` makes the guests leave
afterwards, one room at a time, through the same membership path as a client's /leave.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from twisted.internet import defer

from homeserver.events.identifiers import domain_of

logger = logging.getLogger(__name__)


class GuestRevocations:
    def __init__(self, *, accounts, event_store, server_name: str):
        self._accounts = accounts   # guests_among(user_ids)
        self._events = event_store  # joined_members(room_id)
        self._server_name = server_name
        self._rooms: defer.DeferredQueue = defer.DeferredQueue()

    def on_room_events(self, events) -> None:
        for ev in events:
            if ev.type == "m.room.guest_access" and ev.state_key == "" \
                    and ev.content.get("guest_access") != "can_join":
                self._rooms.put(ev.room_id)

    async def run(self, leave: Callable[[str, str], Awaitable]) -> None:
        """Forever: for each room queued, ``leave(room_id, user_id)`` for each local guest still joined."""
        while True:
            room_id = await self._rooms.get()
            try:
                await self.revoke(room_id, leave)
            except Exception:
                logger.exception("Could not make the guests of %s leave", room_id)

    async def revoke(self, room_id: str, leave: Callable[[str, str], Awaitable]) -> None:
        local = [u for u in await self._events.joined_members(room_id) if domain_of(u) == self._server_name]
        for user_id in sorted(await self._accounts.guests_among(local)) if local else []:
            await leave(room_id, user_id)

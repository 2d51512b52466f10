"""Typing notifications (client-server "Typing Notifications"), in memory, and the typing sync stream.

Each change (start, stop, expiry) bumps an in-memory position and records it
for the room. The position restarts at 0 with the server, so a token ahead of
it comes from before a restart: such a sync gets the current typing state of
every room touched since start-up instead of an error.
"""

from __future__ import annotations

from typing import Callable

from homeserver.errors import forbidden
from homeserver.services.edu_outbox import EduOutbox, EphemeralFeed
from homeserver.services.room_events.heads import RoomHeads

DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000  # as Synapse: no silly long typing timeouts
FEDERATION_TIMEOUT_MS = 60_000  # a remote typer whose server goes quiet stops typing (as Synapse)


class TypingService:
    name = "typing"
    sync_phase = 0  # sync: needs the user's rooms only (services/sync.py SyncSource)
    token_key = "t"  # in sync tokens (services/sync.py)

    def __init__(self, *, reactor, room_heads: RoomHeads, notifier, federation: EduOutbox,
                 appservices: EphemeralFeed, on_changed: Callable[[str, list[str], int], None] | None = None):
        self._reactor = reactor
        self._heads = room_heads
        self._notifier = notifier
        self._position = 0
        self._room_positions: dict[str, int] = {}
        self._typers: dict[str, dict[str, object]] = {}  # room -> user -> expiry DelayedCall
        self._federation = federation  # told of every change and refresh of a typer
        self._appservices = appservices  # the application services' ephemeral events
        self._on_changed = on_changed  # told of each room's typers as they change (the other processes are)

    def current(self) -> int:
        return self._position

    def typing_users(self, room_id: str) -> list[str]:
        return sorted(self._typers.get(room_id, {}))

    async def set_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        """PUT /rooms/{roomId}/typing/{userId} for a joined user; refreshing a typer only moves its expiry."""
        if await self._heads.membership(room_id, user_id) != "join":
            raise forbidden("You are not joined to this room")
        self.update(room_id, user_id, typing, timeout_ms)

    def update(self, room_id: str, user_id: str, typing: bool, timeout_ms: int = FEDERATION_TIMEOUT_MS) -> None:
        """Start, refresh or stop a joined user's typing (a local request, or a remote server's m.typing)."""
        if not typing:
            self._stop(room_id, user_id)
            return
        typers = self._typers.setdefault(room_id, {})
        timer = typers.get(user_id)
        delay = min(timeout_ms, MAX_TIMEOUT_MS) / 1000.0
        if timer is not None:
            timer.reset(delay)
            self._federation.on_typing(room_id, user_id, True)  # still typing (other servers are pinged now and then)
            return
        typers[user_id] = self._reactor.callLater(delay, self._expire, room_id, user_id)
        self._changed(room_id, user_id)

    def on_room_events(self, events) -> None:
        """Room event listener: a member who leaves (or is kicked or banned) stops typing."""
        for ev in events:
            if ev.type == "m.room.member" and ev.state_key and ev.content.get("membership") != "join":
                self._stop(ev.room_id, ev.state_key)

    def _stop(self, room_id: str, user_id: str) -> None:
        timer = self._typers.get(room_id, {}).pop(user_id, None)
        if timer is None:
            return
        if timer.active():
            timer.cancel()
        self._changed(room_id, user_id)

    def _expire(self, room_id: str, user_id: str) -> None:
        self._typers.get(room_id, {}).pop(user_id, None)
        self._changed(room_id, user_id)

    def _changed(self, room_id: str, user_id: str) -> None:
        if not self._typers.get(room_id):
            self._typers.pop(room_id, None)
        self._position += 1
        self._room_positions[room_id] = self._position
        if self._on_changed is not None:
            self._on_changed(room_id, self.typing_users(room_id), self._position)
        self._notifier.notify(users=[user_id], rooms=[room_id])
        typing = user_id in self._typers.get(room_id, {})
        self._federation.on_typing(room_id, user_id, typing)
        self._appservices.on_typing(room_id, tuple(self.typing_users(room_id)))

    def replicated(self, room_id: str, user_ids: list[str], position: int) -> None:
        """The main process's typers of a room (a worker's view; they expire there, not here)."""
        if user_ids:
            self._typers[room_id] = dict.fromkeys(user_ids)
        else:
            self._typers.pop(room_id, None)
        self._position = max(self._position, position)
        self._room_positions[room_id] = position

    async def contribute(self, ctx, response) -> None:
        """Spec "m.typing" in ``ephemeral`` of each joined room whose typers changed since the token.

        An initial sync gets the rooms with typers; a token from before a restart gets every room
        touched since start-up.
        """
        since, to = ctx.since_of(self.name), ctx.to[self.name]
        for room_id in ctx.joined_rooms:
            if since is None or room_id in ctx.newly_joined:
                send = room_id in self._typers
            elif since > to:
                send = room_id in self._room_positions
            else:
                send = self._room_positions.get(room_id, 0) > since
            if send and ctx.filter.ephemeral.allows({"type": "m.typing", "room_id": room_id}):
                event = {"type": "m.typing", "content": {"user_ids": self.typing_users(room_id)}}
                response.room("join", room_id)["ephemeral"]["events"].append(event)

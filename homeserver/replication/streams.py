"""Stream positions and cache invalidations between processes (docs/workers.md).

The main process writes every stream. After each write is visible it publishes, on the
server's Redis channel, what changed: every stream's position with the users and rooms to
wake (``notify``), the rooms whose state changed and the events redacted (``events``), the
federation queue's new entries (``federation``), the remote servers it heard from
(``heard``: the federation sender stops backing off from them; an inbound federation worker
says it too), the rooms' typing users (``typing``), the users whose access tokens went
(``tokens``), the position up to which every event's push actions are stored (``push``), the
pushers set or removed (``pushers``) and the appservices' ephemeral queue's position
(``appservice``). Every other process applies these to its own view: its streams move on, its
caches drop what went stale, its notifier wakes the waiting ``/sync`` requests, its federation
sender, pushers and appservice sender send.

A message lost while a process was disconnected from Redis costs staleness, never a lost
event: positions are absolute (the next message catches up), and on (re)subscribing a
process drops its room and event caches and says ``hello``, which the writer answers with
every stream's position.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from homeserver.storage.streams import ChangeTracker, StreamIdGenerator

logger = logging.getLogger(__name__)

NOTIFY, EVENTS, FEDERATION, TOKENS, TYPING, HEARD, HELLO = (
    "notify", "events", "federation", "tokens", "typing", "heard", "hello")
PUSH, PUSHERS, APPSERVICE = "push", "pushers", "appservice"
HEARD_EVERY_S = 10  # at most one "heard from" message per remote server in this time


def channel_name(server_name: str) -> str:
    return f"hexagone.replication.{server_name}"


@dataclass(frozen=True)
class FollowedStream:
    """A stream this process reads and another writes; ``changes`` (keyed by user or room, ``by``) says
    which keys changed after a position."""

    generator: StreamIdGenerator
    changes: ChangeTracker | None = None
    by: str = "users"


class ReplicationPublisher:
    """The writer's side: each call publishes one message (``publish`` is the Redis connection's)."""

    def __init__(self, *, instance: str, publish: Callable[[bytes], None], positions: Callable[[], dict],
                 clock, push_stored: Callable[[], int] = lambda: 0, on_heard: Callable[[str], None] | None = None):
        self._instance = instance
        self._publish = publish
        self._positions = positions  # every stream's current position (SyncService.current_positions)
        self._push_stored = push_stored  # where every event's push actions are stored up to
        self._on_heard = on_heard  # main sends federation itself: a worker heard from a server
        self._clock = clock
        self._heard: dict[str, float] = {}  # remote server -> when its "heard from" message last went

    def _send(self, kind: str, **body) -> None:
        self._publish(json.dumps({"i": self._instance, "k": kind, **body}, separators=(",", ":")).encode())

    def on_message(self, payload: bytes) -> None:
        """A message on the channel: a process that just (re)subscribed says ``hello``, and is told every
        stream's position."""
        try:
            message = json.loads(payload)
            if message.get("k") == HELLO:
                self.notified((), ())
                self.push_stored(self._push_stored())
            elif message.get("k") == HEARD and self._on_heard is not None and message.get("i") != self._instance:
                self._on_heard(message["d"])
        except (ValueError, KeyError, AttributeError):
            logger.warning("Replication message not understood: %r", payload[:200])

    def notified(self, users: Iterable[str], rooms: Iterable[str]) -> None:
        """The notifier was told of a write: its positions, and whom it concerns."""
        self._send(NOTIFY, p=self._positions(), u=sorted(users), r=sorted(rooms))

    def on_room_events(self, events) -> None:
        """Room events just visible: the rooms whose state they change, the events they redact."""
        state_rooms = sorted({e.room_id for e in events if e.state_key is not None})
        redacted = [r for r in (_redacts(e) for e in events) if r]
        if state_rooms or redacted:
            self._send(EVENTS, s=state_rooms, x=redacted)

    def federation_queued(self, position: int, destinations: list[str]) -> None:
        self._send(FEDERATION, p=position, d=destinations)

    def tokens_forgotten(self, user_id: str) -> None:
        self._send(TOKENS, u=user_id)

    def heard_from(self, server_name: str) -> None:
        """A request came from ``server_name``: the federation sender retries it now if it was backing off."""
        now = self._clock.seconds()
        if now - self._heard.get(server_name, -HEARD_EVERY_S) < HEARD_EVERY_S:
            return
        if len(self._heard) > 10_000:
            self._heard.clear()
        self._heard[server_name] = now
        self._send(HEARD, d=server_name)

    def typing_changed(self, room_id: str, user_ids: list[str], position: int) -> None:
        """Typing lives in the main process's memory: each change goes out whole (the room's typers)."""
        self._send(TYPING, r=room_id, u=user_ids, p=position)

    def push_stored(self, position: int) -> None:
        """Every event up to ``position`` has its push actions in the database: a pusher worker sends them."""
        self._send(PUSH, p=position)

    def pushers_changed(self, keys) -> None:
        """Pushers set or removed (their (app_id, pushkey, user_id)): a pusher worker reads them again."""
        self._send(PUSHERS, y=[list(key) for key in keys])

    def appservice_queued(self, position: int) -> None:
        """Ephemeral events queued for the appservices up to ``position``."""
        self._send(APPSERVICE, p=position)


class ReplicationFollower:
    """A reader's side: applies the writer's messages to this process."""

    def __init__(self, *, instance: str, streams: dict[str, FollowedStream], notifier, room_heads, auth, typing,
                 publish: Callable[[bytes], None], federation_sender=None, pushers=None, appservices=None,
                 push=None, all_rooms: bool = False):
        """``pushers``, ``appservices``: this process's PusherService and AppServiceSender when it sends them;
        ``all_rooms``: drop the heads of the rooms each ``notify`` names (any new event, not only new state: an
        inbound federation worker builds events on the rooms' forward extremities)."""
        self._instance = instance
        self._publish = publish
        self._streams = streams
        self._notifier = notifier
        self._heads = room_heads
        self._auth = auth
        self._typing = typing
        self._sender = federation_sender  # this process sends the federation queue, or None
        self._pushers = pushers
        self._appservices = appservices
        self._push = push
        self._all_rooms = all_rooms
        self.received = 0

    def on_message(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            if message.get("i") == self._instance:
                return
            self.received += 1
            getattr(self, f"_on_{message['k']}")(message)
        except Exception:  # one bad message must not stop the channel
            logger.exception("Replication message not applied: %r", payload[:200])

    def on_connected(self) -> None:
        """(Re)subscribed: messages published while we were away are lost, so forget what they could have
        made stale, ask the writer for every stream's position, and send what was queued meanwhile."""
        self._heads.forget_all()
        self._publish(json.dumps({"i": self._instance, "k": HELLO}).encode())
        if self._sender is not None:
            self._sender.resume_queued_elsewhere()

    def _on_hello(self, message: dict) -> None:
        pass  # another worker's: the writer answers it

    def _on_notify(self, message: dict) -> None:
        for name, position in message["p"].items():
            stream = self._streams.get(name)
            if stream is None:
                continue
            if stream.changes is not None:
                for key in message["u" if stream.by == "users" else "r"]:
                    stream.changes.record(key, position)
            stream.generator.advance(position)
        self._notifier.notify(users=message["u"], rooms=message["r"])
        if self._all_rooms and message["r"]:
            self._heads.forget(message["r"])
        if self._appservices is not None:
            self._appservices.replicated(events=message["p"].get("events"))

    def _on_events(self, message: dict) -> None:
        self._heads.forget(message["s"], message["x"])

    def _on_push(self, message: dict) -> None:
        if self._push is not None:
            self._push.replicated_stored(message["p"])
        if self._pushers is not None:
            self._pushers.push_stored(message["p"])

    def _on_pushers(self, message: dict) -> None:
        if self._pushers is not None:
            self._pushers.reload([tuple(key) for key in message["y"]])

    def _on_appservice(self, message: dict) -> None:
        if self._appservices is not None:
            self._appservices.replicated(ephemeral=message["p"])

    def _on_federation(self, message: dict) -> None:
        if self._sender is not None:
            self._sender.queued_elsewhere(message["p"], message["d"])

    def _on_typing(self, message: dict) -> None:
        self._typing.replicated(message["r"], message["u"], message["p"])

    def _on_heard(self, message: dict) -> None:
        if self._sender is not None:
            self._sender.wake(message["d"])

    def _on_tokens(self, message: dict) -> None:
        self._auth.forget_cached_tokens(message["u"])


def _redacts(event) -> str | None:
    if event.type != "m.room.redaction":
        return None
    redacts = event.pdu.get("redacts") or event.content.get("redacts")
    return redacts if isinstance(redacts, str) else None

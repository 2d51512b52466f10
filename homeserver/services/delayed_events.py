"""Delayed events (MSC4140, unstable prefix ``org.matrix.msc4140``), as Synapse serves them.

A user schedules an event to be sent ``delay`` milliseconds later; until then it may ``restart`` the
delay (a heartbeat), ``cancel`` it or ``send`` it at once. MatrixRTC uses it so that a member whose
client vanished leaves the call: the client schedules its own "left" call-member state and keeps
restarting it while it lives.

Guarantees: a scheduled event is stored before its ``delay_id`` is returned, so it is sent after a
restart of the server (at once, if it fell due meanwhile). One reactor timer is armed for the earliest
due time; no polling. An event is removed once sent, so a crash between the two sends it twice at
worst. A state event set by another user cancels the delayed events that would overwrite it
(Synapse's rule: the newer state wins over a pending leave): :class:`DelayedStateCancels`, a room-event
listener that needs only the store (built before the event writers it listens to; a timer left armed for
an event it cancelled finds nothing due and re-arms).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Protocol

from twisted.internet import defer

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.lru import LruCache
from homeserver.services.background import ListenerWork
from homeserver.services.room_events.local import EventSpec
from homeserver.storage.delayed_events import DelayedEvent, DelayedEventStore, TooManyDelayedEvents

logger = logging.getLogger(__name__)

TXN_MEMORY = 10_000  # delayed sends remembered by transaction ID, so that a retried PUT schedules once


class EventSender(Protocol):
    """What sends a local event (the room-event writer)."""

    async def send(self, room_id: str, spec: EventSpec) -> Any: ...


class DelayedStateCancels:
    """Room-event listener: state set by a user cancels the other users' delayed events for the same state."""

    def __init__(self, store: DelayedEventStore):
        self._store = store
        # Rooms where a delayed state event was scheduled (since the start): events of the others cost nothing.
        self._rooms: set[str] = set()
        self.work = ListenerWork("cancelling delayed state events")

    async def load(self) -> None:
        self._rooms = await self._store.rooms_with_state()

    def watch(self, room_id: str) -> None:
        self._rooms.add(room_id)

    def on_room_events(self, events) -> None:
        for ev in events:
            if ev.state_key is not None and ev.room_id in self._rooms:
                self.work.start(self._store.cancel_state(ev.room_id, ev.type, ev.state_key, ev.sender),
                                 ev.stream_ordering)

    async def flush(self) -> None:
        await self.work.wait()


class DelayedEventService:
    def __init__(self, *, store: DelayedEventStore, cancels: DelayedStateCancels, appends: EventSender, reactor,
                 max_delay_ms: int | None, max_per_user: int):
        self._store = store
        self._cancels = cancels
        self._appends = appends
        self._reactor = reactor
        self._max_delay_ms = max_delay_ms
        self._max_per_user = max_per_user
        self._timer = None  # the armed IDelayedCall, for the earliest send_ts
        self._timer_ts: int | None = None
        self._sending: set[str] = set()
        self._txns: LruCache[tuple, str] = LruCache(TXN_MEMORY)

    @property
    def enabled(self) -> bool:
        return bool(self._max_delay_ms) and self._max_per_user > 0

    def now_ms(self) -> int:
        return int(self._reactor.seconds() * 1000)

    async def start(self) -> None:
        """Arm the timer for what was scheduled before this process started (due ones go at once)."""
        await self._cancels.load()
        await self._rearm()

    async def schedule(self, user_id: str, device_id: str | None, room_id: str, event_type: str,
                       content: dict, state_key: str | None, delay_ms: int, txn: tuple | None = None) -> str:
        """Store an event to send ``delay_ms`` from now; returns its ``delay_id`` (the same one again for a
        request retried with the same transaction ID ``txn``).

        403 M_FORBIDDEN when delayed events are off or the delay is above ``max_event_delay_duration``,
        429 M_LIMIT_EXCEEDED when the user has ``msc4140_max_delayed_events_per_user`` pending."""
        if not self.enabled:
            raise forbidden("Sending delayed events has been disallowed")
        if delay_ms > self._max_delay_ms:
            raise forbidden(f"The requested delay ({delay_ms}ms) exceeds the allowed maximum "
                            f"({self._max_delay_ms}ms)")
        if txn is not None and txn in self._txns:
            return self._txns.get(txn)
        now = self.now_ms()
        event = DelayedEvent(f"syd_{secrets.token_urlsafe(15)}", user_id, device_id, room_id, event_type,
                             state_key, content, delay_ms, now + delay_ms)
        try:
            await self._store.add(event, self._max_per_user, now)
        except TooManyDelayedEvents as e:
            raise MatrixError(429, "M_LIMIT_EXCEEDED", "The maximum number of delayed events has been reached.",
                              retry_after_ms=e.retry_after_ms)
        if state_key is not None:
            self._cancels.watch(room_id)
        if txn is not None:
            self._txns.put(txn, event.delay_id)
        self._arm(event.send_ts)
        return event.delay_id

    async def pending(self, user_id: str) -> list[dict]:
        """The user's scheduled events, soonest first, in Synapse's listing shape."""
        return [_listed(e) for e in await self._store.for_user(user_id)]

    async def _owned(self, delay_id: str, user_id: str | None) -> DelayedEvent:
        """The delayed event; with a requester, only one of its own (the delay ID alone is the capability
        otherwise, as on Synapse's per-action endpoints)."""
        event = await self._store.get(delay_id)
        if event is None or delay_id in self._sending or (user_id is not None and event.user_id != user_id):
            raise not_found("No such delayed event")
        return event

    async def restart(self, delay_id: str, user_id: str | None) -> None:
        await self._owned(delay_id, user_id)
        if not await self._store.restart(delay_id, self.now_ms()):
            raise not_found("No such delayed event")
        await self._rearm()

    async def cancel(self, delay_id: str, user_id: str | None) -> None:
        await self._owned(delay_id, user_id)
        if not await self._store.delete(delay_id):
            raise not_found("No such delayed event")
        await self._rearm()

    async def send_now(self, delay_id: str, user_id: str | None) -> None:
        event = await self._owned(delay_id, user_id)
        await self._send(event)
        await self._rearm()

    # -- delivery --------------------------------------------------------------------------------
    def _arm(self, send_ts: int) -> None:
        """Make the timer fire no later than ``send_ts``."""
        if self._timer is not None and self._timer.active() and self._timer_ts <= send_ts:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer_ts = send_ts
        delay_s = max(send_ts - self.now_ms(), 0) / 1000
        self._timer = self._reactor.callLater(delay_s, lambda: defer.ensureDeferred(self._fire()))

    async def _rearm(self) -> None:
        """Set the timer for the earliest pending event (or none)."""
        next_ts = await self._store.next_send_ts(frozenset(self._sending))
        if self._timer is not None and self._timer.active():
            if next_ts == self._timer_ts:
                return
            self._timer.cancel()
        self._timer = None
        if next_ts is not None:
            self._arm(next_ts)

    async def _fire(self) -> None:
        try:
            for event in await self._store.due(self.now_ms()):
                if event.delay_id not in self._sending:
                    await self._send(event)
        except Exception:
            logger.exception("Sending delayed events failed")
        await self._rearm()

    async def _send(self, event: DelayedEvent) -> None:
        """Send the event as its user (a refusal, e.g. the user left the room, drops it), then forget it."""
        self._sending.add(event.delay_id)
        try:
            await self._appends.send(event.room_id, EventSpec(event.user_id, event.type, event.content,
                                                                  event.state_key))
        except MatrixError as e:
            logger.info("Delayed event %s of %s not sent: %s", event.delay_id, event.user_id, e)
        finally:
            await self._store.delete(event.delay_id)
            self._sending.discard(event.delay_id)


def _listed(e: DelayedEvent) -> dict:
    """One row of GET /delayed_events (Synapse: ``running_since`` is when the current delay started)."""
    row = {"delay_id": e.delay_id, "room_id": e.room_id, "type": e.type, "delay": e.delay_ms,
           "running_since": e.send_ts - e.delay_ms, "content": e.content}
    if e.state_key is not None:
        row["state_key"] = e.state_key
    return row

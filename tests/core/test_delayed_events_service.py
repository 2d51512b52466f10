"""The delayed-events service on a fake clock (MSC4140): one reactor timer for the earliest due event, no
polling; restart, cancel and state set by another user move or drop it; a new service (a restarted server)
arms itself from what is stored. The store is an in-memory stand-in with the real store's contract."""

from __future__ import annotations

import dataclasses

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from homeserver.errors import MatrixError
from homeserver.services.delayed_events import DelayedEventService, DelayedStateCancels
from homeserver.storage.delayed_events import DelayedEvent, TooManyDelayedEvents


class MemoryStore:
    def __init__(self):
        self.rows: dict[str, DelayedEvent] = {}

    async def add(self, event, limit, now_ms):
        mine = [e for e in self.rows.values() if e.user_id == event.user_id]
        if len(mine) >= limit:
            raise TooManyDelayedEvents(min(e.send_ts for e in mine) - now_ms)
        self.rows[event.delay_id] = event

    async def get(self, delay_id):
        return self.rows.get(delay_id)

    async def for_user(self, user_id):
        return sorted((e for e in self.rows.values() if e.user_id == user_id), key=lambda e: e.send_ts)

    async def restart(self, delay_id, now_ms):
        e = self.rows.get(delay_id)
        if e is None:
            return False
        self.rows[delay_id] = dataclasses.replace(e, send_ts=now_ms + e.delay_ms)
        return True

    async def delete(self, delay_id):
        return self.rows.pop(delay_id, None) is not None

    async def due(self, now_ms):
        return sorted((e for e in self.rows.values() if e.send_ts <= now_ms), key=lambda e: e.send_ts)

    async def next_send_ts(self, excluding=frozenset()):
        return min((e.send_ts for e in self.rows.values() if e.delay_id not in excluding), default=None)

    async def rooms_with_state(self):
        return {e.room_id for e in self.rows.values() if e.state_key is not None}

    async def cancel_state(self, room_id, event_type, state_key, except_user):
        for e in list(self.rows.values()):
            if (e.room_id, e.type, e.state_key) == (room_id, event_type, state_key) and e.user_id != except_user:
                del self.rows[e.delay_id]


class Room:
    """Stands in for LocalAppends.send: records (time, sender, type, content)."""

    def __init__(self, clock):
        self.clock, self.sent = clock, []

    async def send(self, room_id, spec):
        self.sent.append((self.clock.seconds(), spec.sender, spec.type, spec.content))


def run(coro):
    """The coroutine's result (the fakes never wait), or its exception raised."""
    outcome = []
    defer.ensureDeferred(coro).addBoth(outcome.append)
    assert outcome, "the fakes never wait"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def service(clock, store, max_per_user=3) -> tuple[DelayedEventService, Room, DelayedStateCancels]:
    room, cancels = Room(clock), DelayedStateCancels(store)
    svc = DelayedEventService(store=store, cancels=cancels, appends=room, reactor=clock, max_delay_ms=60_000,
                              max_per_user=max_per_user)
    return svc, room, cancels


def test_one_timer_at_the_earliest_due_time():
    clock, store = Clock(), MemoryStore()
    svc, room, cancels = service(clock, store)
    run(svc.schedule("@a:x", "D", "!r:x", "m.room.message", {"n": 2}, None, 2000))
    run(svc.schedule("@a:x", "D", "!r:x", "m.room.message", {"n": 1}, None, 1000))
    assert [round(c.getTime(), 3) for c in clock.getDelayedCalls()] == [1.0]
    clock.advance(0.999)
    assert room.sent == []
    clock.advance(0.001)
    assert [s[3] for s in room.sent] == [{"n": 1}]
    assert [round(c.getTime(), 3) for c in clock.getDelayedCalls()] == [2.0]
    clock.advance(1)
    assert [s[3] for s in room.sent] == [{"n": 1}, {"n": 2}] and clock.getDelayedCalls() == []


def test_restart_moves_the_timer_and_cancel_disarms_it():
    clock, store = Clock(), MemoryStore()
    svc, room, cancels = service(clock, store)
    delay_id = run(svc.schedule("@a:x", "D", "!r:x", "m.call.member", {}, "_@a:x_D_m.call", 1000))
    clock.advance(0.8)
    run(svc.restart(delay_id, "@a:x"))  # a heartbeat
    assert [round(c.getTime(), 3) for c in clock.getDelayedCalls()] == [1.8]
    with pytest.raises(MatrixError) as e:
        run(svc.restart(delay_id, "@b:x"))  # not bob's
    assert e.value.errcode == "M_NOT_FOUND"
    run(svc.cancel(delay_id, None))  # the delay ID alone is enough
    assert clock.getDelayedCalls() == [] and store.rows == {}


def test_limits():
    clock, store = Clock(), MemoryStore()
    svc, _, _ = service(clock, store, max_per_user=2)
    for ms in (5000, 3000):
        run(svc.schedule("@a:x", "D", "!r:x", "t", {}, None, ms))
    with pytest.raises(MatrixError) as e:
        run(svc.schedule("@a:x", "D", "!r:x", "t", {}, None, 1000))
    assert (e.value.status, e.value.errcode, e.value.extra) == (429, "M_LIMIT_EXCEEDED", {"retry_after_ms": 3000})
    with pytest.raises(MatrixError) as e:
        run(svc.schedule("@b:x", "D", "!r:x", "t", {}, None, 60_001))
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")


def test_state_set_by_another_user_cancels_and_a_new_service_picks_up_the_rest():
    clock, store = Clock(), MemoryStore()
    svc, room, cancels = service(clock, store)
    run(svc.start())
    run(svc.schedule("@a:x", "D", "!r:x", "m.room.topic", {"topic": "a"}, "", 4000))
    kept = run(svc.schedule("@a:x", "D", "!r:x", "m.room.name", {"name": "a"}, "", 5000))
    own = type("Ev", (), {"room_id": "!r:x", "type": "m.room.topic", "state_key": "", "sender": "@a:x",
                          "stream_ordering": 1})
    cancels.on_room_events([own])  # alice's own topic change leaves her delayed topic
    assert len(store.rows) == 2
    other = type("Ev", (), {"room_id": "!r:x", "type": "m.room.topic", "state_key": "", "sender": "@b:x",
                            "stream_ordering": 2})
    cancels.on_room_events([other])
    assert list(store.rows) == [kept]
    # the server stops; 10 s later a new process starts on the same store: the overdue event goes at once
    restarted = Clock()  # the old process and its timer are gone
    restarted.advance(clock.seconds() + 10)
    later, later_room, _ = service(restarted, store)
    run(later.start())
    restarted.advance(0)
    assert [s[2] for s in later_room.sent] == ["m.room.name"] and store.rows == {}

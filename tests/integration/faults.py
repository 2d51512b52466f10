"""Load and checks for the fault tests: clients sending while a process dies, and what must survive it.

:class:`Senders` runs threads that send as fast as they can (each its own
connection and transaction ids) and notes every answer: what was
acknowledged (200 with an event id), and what was attempted and not
acknowledged. :func:`check_room_intact` then checks a room after a fault:
every acknowledged event is there once, unacknowledged transactions retried
with the same id are never duplicated, the state at the newest event is the
room's current state, and the room still takes new events that /sync shows.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from tests.integration.harness import User, q, unique

# How many kill trials each fault test runs: a few in CI, more on demand.
TRIALS = int(os.environ.get("HEXAGONE_FAULT_TRIALS", "5"))
FAULT_STATE_TYPE = "org.example.fault"


@dataclass
class Answer:
    status: int | None  # None: no HTTP answer (connection refused or cut)
    body: object
    seconds: float


@dataclass
class Sender:
    """One thread's record: txn id -> (kind, key, body) attempted, txn id -> event id acknowledged."""

    user: User
    attempted: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    acked: dict[str, str] = field(default_factory=dict)
    failures: list[Answer] = field(default_factory=list)


class Senders:
    """``threads`` senders per user in ``room_id``; each ``state_every``-th request is a state event
    (type :data:`FAULT_STATE_TYPE`, one state key per thread) instead of a message."""

    def __init__(self, users: list[User], room_id: str, *, threads: int = 2, state_every: int = 4,
                 timeout_s: float = 30.0):
        self.room_id = room_id
        self.state_every = state_every
        self.timeout_s = timeout_s
        self.senders = [Sender(u) for u in users for _ in range(threads)]
        self._stop = threading.Event()
        self._acks = threading.Condition()
        self._on_ack: tuple[int, Callable[[], None]] | None = None
        self._threads = [threading.Thread(target=self._run, args=(s,), daemon=True) for s in self.senders]

    def __enter__(self) -> "Senders":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout_s + 5)
        assert not any(t.is_alive() for t in self._threads), "a sender is stuck in a request"

    @property
    def acked(self) -> dict[str, str]:
        """txn id -> event id, every sender."""
        return {txn: ev for s in self.senders for txn, ev in s.acked.items()}

    def failures(self) -> list[Answer]:
        return [f for s in self.senders for f in s.failures]

    def wait_acked(self, count: int, deadline_s: float = 30.0, then: Callable[[], None] | None = None) -> None:
        """Block until at least ``count`` sends were acknowledged since the senders started; ``then`` is
        called by the sender that got the ``count``-th acknowledgement, the moment it got it (a kill lands
        while the server is still busy with what follows that answer)."""
        if then is not None:
            with self._acks:
                self._on_ack = (count, then)
        end = time.monotonic() + deadline_s
        with self._acks:
            while sum(len(s.acked) for s in self.senders) < count:
                remaining = end - time.monotonic()
                assert remaining > 0, f"fewer than {count} sends acknowledged within {deadline_s}s: " \
                                      f"{self.failures()[:3]}"
                self._acks.wait(remaining)

    def _run(self, s: Sender) -> None:
        key = unique("key")
        n = 0
        while not self._stop.is_set():
            n += 1
            txn = unique("ftxn")
            body = f"{txn} {n}"
            if self.state_every and n % self.state_every == 0:
                s.attempted[txn] = ("state", key, body)
                path, content = f"/rooms/{q(self.room_id)}/state/{FAULT_STATE_TYPE}/{q(key)}", {"body": body, "n": n}
            else:
                s.attempted[txn] = ("message", "", body)
                path = f"/rooms/{q(self.room_id)}/send/m.room.message/{q(txn)}"
                content = {"msgtype": "m.text", "body": body}
            start = time.monotonic()
            try:
                status, resp = s.user.request("PUT", path, content, timeout=self.timeout_s)
            except OSError as e:
                s.failures.append(Answer(None, type(e).__name__, time.monotonic() - start))
                self._stop.wait(0.05)  # the server is gone: do not spin
                continue
            if status == 200:
                with self._acks:
                    s.acked[txn] = resp["event_id"]
                    if self._on_ack and sum(len(x.acked) for x in self.senders) >= self._on_ack[0]:
                        action, self._on_ack = self._on_ack[1], None
                        action()
                    self._acks.notify_all()
            else:
                s.failures.append(Answer(status, resp, time.monotonic() - start))
                self._stop.wait(0.05)  # a client backs off after an error


def room_history(user: User, room_id: str) -> list[dict]:
    """Every event of the room visible to ``user``, oldest first (paginating /messages backwards)."""
    events: list[dict] = []
    token = None
    while True:
        page = user.messages(room_id, dir="b", limit=500, **({"from": token} if token else {}))
        events.extend(page["chunk"])
        token = page.get("end")
        if not page["chunk"] or token is None:
            return events[::-1]


def check_room_intact(senders: Senders, reader: User) -> dict[str, int]:
    """After a fault and a restart: nothing acknowledged lost, nothing half-written. Returns counts."""
    room_id = senders.room_id
    acked = senders.acked
    for event_id in acked.values():
        status, event = reader.request("GET", f"/rooms/{q(room_id)}/event/{q(event_id)}")
        assert status == 200, (event_id, status, event)
    # Retrying every transaction id that got no answer: a message persisted before the fault is
    # recognised (its event id again), one that was not is sent now; either way it ends up there once.
    for s in senders.senders:
        for txn, (kind, _, body) in s.attempted.items():
            if kind == "message":
                event_id = s.user.send(room_id, body, txn_id=txn)
                assert acked.get(txn, event_id) == event_id, (txn, acked.get(txn), event_id)
    history = room_history(reader, room_id)
    ids = [e["event_id"] for e in history]
    assert len(ids) == len(set(ids)), "an event is listed twice in /messages"
    assert set(acked.values()) <= set(ids), set(acked.values()) - set(ids)
    messages = [e["content"]["body"] for e in history if e["type"] == "m.room.message"]
    assert len(messages) == len(set(messages)), "a message transaction was persisted twice"
    attempted_messages = {body for s in senders.senders for kind, _, body in s.attempted.values() if kind == "message"}
    assert attempted_messages <= set(messages)
    _check_state(senders, reader, history)
    # The room takes new events, and /sync sees them.
    since = reader.sync()["next_batch"]
    after = senders.senders[0].user.send(room_id, unique("after"))
    reader.timeline_until(room_id, lambda e: e["event_id"] == after, since)
    return {"acknowledged": len(acked), "attempted": sum(len(s.attempted) for s in senders.senders),
            "events": len(ids)}


def _check_state(senders: Senders, reader: User, history: list[dict]) -> None:
    """The current state is the state at the newest event, and holds each key's newest acknowledged value."""
    room_id = senders.room_id
    current = {(e["type"], e["state_key"]): e["event_id"]
               for e in reader.ok("GET", f"/rooms/{q(room_id)}/state")}
    newest = history[-1]["event_id"]
    context = reader.ok("GET", f"/rooms/{q(room_id)}/context/{q(newest)}", params={"limit": 0})
    at_newest = {(e["type"], e["state_key"]): e["event_id"] for e in context["state"]}
    assert at_newest == current, "the current state is not the state at the newest event"
    in_history = {e["event_id"]: e for e in history}
    for s in senders.senders:
        acked_n = [int(body.rsplit(" ", 1)[1]) for txn, (kind, _, body) in s.attempted.items()
                   if kind == "state" and txn in s.acked]
        keys = {key for kind, key, _ in s.attempted.values() if kind == "state"}
        for key in keys:
            event_id = current.get((FAULT_STATE_TYPE, key))
            if acked_n:
                assert event_id in in_history, (key, event_id)
                assert in_history[event_id]["content"]["n"] >= max(acked_n), (key, in_history[event_id]["content"])

"""Wakes waiting /sync requests when something for their user commits.

Nothing polls: writers call ``notify`` after their transaction commits; each
waiting request registered the user and rooms it listens to.
"""

from __future__ import annotations

from typing import Callable, Iterable

from twisted.internet import defer


class Notifier:
    def __init__(self, reactor, on_notify: Callable[[Iterable[str], Iterable[str]], None] | None = None):
        self._reactor = reactor
        self._on_notify = on_notify  # told of every notification (the other processes are: replication)
        self._by_user: dict[str, set[defer.Deferred]] = {}
        self._by_room: dict[str, set[defer.Deferred]] = {}
        self._all: set[defer.Deferred] = set()
        self._stopping = False

    def notify(self, *, users=(), rooms=()) -> None:
        if self._on_notify is not None:
            users, rooms = list(users), list(rooms)  # read twice
            self._on_notify(users, rooms)
        woken: set[defer.Deferred] = set()
        for user_id in users:
            woken |= self._by_user.get(user_id, set())
        for room_id in rooms:
            woken |= self._by_room.get(room_id, set())
        for d in woken:
            if not d.called:
                d.callback(True)

    def wake_all(self) -> None:
        """Release every waiter, and make later waits return at once (server shutdown)."""
        self._stopping = True
        for d in list(self._all):
            if not d.called:
                d.callback(False)

    async def wait(self, user_id: str, room_ids, timeout_ms: int) -> bool:
        """Wait until notified for the user or one of the rooms, or until the timeout. True if notified."""
        if self._stopping:
            return False
        d: defer.Deferred = defer.Deferred()
        rooms = list(room_ids)
        self._by_user.setdefault(user_id, set()).add(d)
        for room_id in rooms:
            self._by_room.setdefault(room_id, set()).add(d)
        self._all.add(d)
        timer = self._reactor.callLater(timeout_ms / 1000.0, lambda: d.called or d.callback(False))
        try:
            return await d
        finally:
            if timer.active():
                timer.cancel()
            self._all.discard(d)
            _discard(self._by_user, user_id, d)
            for room_id in rooms:
                _discard(self._by_room, room_id, d)

    def waiting_count(self) -> int:
        return len(self._all)


def _discard(index: dict, key: str, d) -> None:
    waiters = index.get(key)
    if waiters is not None:
        waiters.discard(d)
        if not waiters:
            del index[key]

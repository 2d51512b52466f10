"""Stream position generators (DEVELOPERS.md "Small, explicit streams").

A writer takes a position before its transaction and marks it done after it
commits (or fails); readers only see ``current()``, the highest position below
which every position is done, so a reader never skips a row that commits late.
With several database connections, transactions commit out of order: a
position done early stays invisible until every lower one is done, and
``when_visible`` defers work (waking readers) until then.

A generator lives on the reactor thread; nothing here is thread-safe.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Callable

logger = logging.getLogger(__name__)


class StreamIdGenerator:
    def __init__(self, start: int):
        self._current = start   # highest position handed out
        self._persisted = start  # every position <= this is done
        self._unfinished: set[int] = set()
        self._waiting: list[tuple[int, int, Callable[[], None]]] = []  # heap of (position, seq, callback)
        self._seq = itertools.count()

    def allocate(self, count: int = 1) -> list[int]:
        first = self._current + 1
        self._current += count
        positions = list(range(first, self._current + 1))
        self._unfinished.update(positions)
        return positions

    def done(self, positions) -> None:
        """Mark positions finished (committed or abandoned), then run the callbacks they made visible."""
        self._unfinished.difference_update(positions)
        self._persisted = (min(self._unfinished) - 1) if self._unfinished else self._current
        while self._waiting and self._waiting[0][0] <= self._persisted:
            _run(heapq.heappop(self._waiting)[2])

    def current(self) -> int:
        return self._persisted

    def advance(self, position: int) -> None:
        """Another process (the stream's writer) committed every position up to ``position``: a follower's
        view of the stream moves on (it never allocates)."""
        if position > self._current:
            self._current = position
            self.done(())

    def when_visible(self, position: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once ``current()`` reaches ``position`` (now, if it already has)."""
        if position <= self._persisted:
            _run(callback)
        else:
            heapq.heappush(self._waiting, (position, next(self._seq), callback))


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # one failing listener must not stop the others, nor fail the write
        logger.exception("Stream visibility callback failed")


def max_position(txn, table: str, column: str) -> int:
    """The highest stored position of a stream (start-up only)."""
    return int(txn.select_value(f"SELECT MAX({column}) FROM {table}", default=0))


class ChangeTracker:
    """Which keys (users, rooms) had a stream write after a position, remembered since start-up.

    Nothing is known before ``start``, so a position older than it counts every key as changed.
    """

    def __init__(self, start: int):
        self._start = start
        self._last: dict[str, int] = {}

    def record(self, key: str, position: int) -> None:
        self._last[key] = max(position, self._last.get(key, 0))

    def changed_since(self, key: str, since: int) -> bool:
        return since < self._start or self._last.get(key, 0) > since

"""Stream position generators (DEVELOPERS.md "Small, explicit streams").

A writer takes a position before its transaction and marks it done after;
readers only see ``current()``, the highest position below which every
position is done, so a reader never skips a row that commits late.
"""

from __future__ import annotations


class StreamIdGenerator:
    def __init__(self, start: int):
        self._current = start   # highest position handed out
        self._persisted = start  # every position <= this is done
        self._unfinished: set[int] = set()

    def allocate(self, count: int = 1) -> list[int]:
        first = self._current + 1
        self._current += count
        positions = list(range(first, self._current + 1))
        self._unfinished.update(positions)
        return positions

    def done(self, positions) -> None:
        self._unfinished.difference_update(positions)
        self._persisted = (min(self._unfinished) - 1) if self._unfinished else self._current

    def current(self) -> int:
        return self._persisted


def max_position(txn, table: str, column: str) -> int:
    """The highest stored position of a stream (start-up only)."""
    return int(txn.select_value(f"SELECT MAX({column}) FROM {table}", default=0))

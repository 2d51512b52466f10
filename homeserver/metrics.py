"""In-process counters, kept until the server exports metrics (Prometheus comes later).

Built by the composition root and handed by constructor to what counts; no module-level state.
"""

from __future__ import annotations


class Counter:
    """A count per value of one label, only ever increasing (the shape of a Prometheus counter)."""

    def __init__(self, name: str, label: str):
        self.name = name
        self.label = label
        self._counts: dict[str, int] = {}

    def inc(self, value: str) -> int:
        """Count one more for ``value``; returns the new count."""
        count = self._counts.get(value, 0) + 1
        self._counts[value] = count
        return count

    def get(self, value: str) -> int:
        return self._counts.get(value, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)

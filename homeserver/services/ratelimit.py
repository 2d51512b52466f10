"""Token-bucket rate limiting (Synapse's ``rc_*`` settings: per_second, burst_count)."""

from __future__ import annotations

from homeserver.errors import limit_exceeded


class Ratelimiter:
    """One bucket per key: ``burst_count`` actions at once, refilled at ``per_second``."""

    def __init__(self, clock, per_second: float, burst_count: int):
        self._clock = clock
        self.per_second = per_second
        self.burst_count = burst_count
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (level, last time)

    def check(self, key: str, *, cost: float = 1.0, update: bool = True) -> None:
        """Take one action for ``key`` or raise M_LIMIT_EXCEEDED with retry_after_ms.

        ``update=False`` only checks that ``cost`` actions would be allowed, taking none (Synapse's ``update``)."""
        if self.per_second <= 0 and self.burst_count <= 0:
            return
        now = self._clock.seconds()
        level, last = self._buckets.get(key, (0.0, now))
        level = max(0.0, level - (now - last) * self.per_second)
        if level + cost > self.burst_count:
            wait = (level + cost - self.burst_count) / self.per_second if self.per_second > 0 else 60.0
            raise limit_exceeded(int(wait * 1000) + 1)
        if not update:
            return
        self._buckets[key] = (level + cost, now)
        if len(self._buckets) > 100_000:
            self._prune(now)

    def _prune(self, now: float) -> None:
        for key, (level, last) in list(self._buckets.items()):
            if level - (now - last) * self.per_second <= 0:
                del self._buckets[key]

"""Reads of keyed values shared by concurrent readers: a key another reader is reading now is waited for, not
read again, and a read of other keys never waits for it."""

from __future__ import annotations

from typing import Awaitable, Callable, Generic, Hashable, Iterable, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _result_of(load: defer.Deferred) -> defer.Deferred:
    """A Deferred with ``load``'s result that leaves that result in ``load`` for its other readers."""
    mine: defer.Deferred = defer.Deferred()

    def passed_on(result):
        if isinstance(result, Failure):
            mine.errback(result)
        else:
            mine.callback(result)
        return result

    load.addBoth(passed_on)
    return mine


class SharedReads(Generic[K, V]):
    """``read(keys)`` returns the values found of the keys (those missing have no value), from ``load`` or
    from a load of them already under way. ``keep(values)`` is given what each load found unless
    :meth:`invalidate` was called while it ran (the caller's cache then keeps nothing stale)."""

    def __init__(self, load: Callable[[list[K]], Awaitable[dict[K, V]]], keep: Callable[[dict[K, V]], None]):
        self._load = load
        self._keep = keep
        self._epoch = 0  # how many times ``invalidate`` ran
        self._loading: dict[K, tuple[defer.Deferred, int]] = {}  # key -> its load under way, and its epoch

    def invalidate(self) -> None:
        """The values changed: the loads under way are neither joined nor kept."""
        self._epoch += 1

    async def read(self, keys: Iterable[K]) -> dict[K, V]:
        found: dict[K, V] = {}
        missing = []
        joined: dict[defer.Deferred, list[K]] = {}  # another reader's load -> the keys wanted from it
        for key in keys:
            load = self._loading.get(key)
            if load is not None and load[1] == self._epoch:
                joined.setdefault(load[0], []).append(key)
            else:
                missing.append(key)
        if missing:
            epoch = self._epoch
            load = defer.ensureDeferred(self._load(missing))
            for key in missing:
                self._loading[key] = (load, epoch)
            try:
                loaded = await _result_of(load)
            finally:
                for key in missing:
                    if self._loading.get(key, (None,))[0] is load:
                        del self._loading[key]
                load.addErrback(lambda _: None)  # its failure was raised here, and to each reader that waited
            if epoch == self._epoch:
                self._keep(loaded)
            found.update(loaded)
        for load, wanted in joined.items():
            loaded = await _result_of(load)
            found.update((key, loaded[key]) for key in wanted if key in loaded)
        return found

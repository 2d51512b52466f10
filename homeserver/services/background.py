"""Background work started by room-event listeners, and batched writes."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from twisted.internet import defer

logger = logging.getLogger(__name__)


class ListenerWork:
    """Work that a room event listener (synchronous) starts in the background and readers wait for.

    Each piece of work is tagged with the highest stream position it handles, so a reader can wait for
    what concerns the positions it is about to read. Failures are logged.
    """

    def __init__(self, what: str):
        self._what = what
        self._running: dict[defer.Deferred, int] = {}

    def start(self, coro, position: int) -> None:
        d = defer.ensureDeferred(coro)
        d.addErrback(lambda f: logger.error("%s up to %d failed: %s", self._what, position, f.getTraceback()))
        if not d.called:
            self._running[d] = position
            d.addBoth(lambda _: self._running.pop(d, None))

    async def wait(self, upto: int | None = None) -> None:
        """Return once the work started for positions up to ``upto`` (all, if None) is over."""
        waiters = []
        for d, position in list(self._running.items()):
            if upto is None or position <= upto:
                waiter: defer.Deferred = defer.Deferred()
                d.addBoth(lambda result, w=waiter: (w.callback(None), result)[1])
                waiters.append(waiter)
        for waiter in waiters:
            await waiter


class BatchWriter:
    """Coalesces the rows that concurrent listeners write into one transaction at a time.

    Under load, the rows queued while a transaction runs go together in the next one, instead of
    each event's rows taking a transaction of its own on the (single-writer) database.
    """

    def __init__(self, write: Callable[[list], Awaitable[None]]):
        self._write = write
        self._rows: list = []
        self._waiters: list[defer.Deferred] = []
        self._writing = False

    async def write(self, rows: list) -> None:
        """Return once ``rows`` are committed (or raise what their transaction raised)."""
        if not rows:
            return
        done: defer.Deferred = defer.Deferred()
        self._rows += rows
        self._waiters.append(done)
        if not self._writing:
            self._writing = True
            defer.ensureDeferred(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._rows:
                rows, waiters = self._rows, self._waiters
                self._rows, self._waiters = [], []
                try:
                    await self._write(rows)
                except Exception as e:
                    for waiter in waiters:
                        waiter.errback(e)
                else:
                    for waiter in waiters:
                        waiter.callback(None)
        finally:
            self._writing = False

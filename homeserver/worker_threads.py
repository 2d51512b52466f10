"""The one pool of worker threads for blocking work off the reactor thread (not the database's: it has its own).

Built by the composition root and passed by constructor to what needs it: password hashing (bcrypt),
host name resolution (``getaddrinfo``) and the signature checks of large PDU batches.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

# Twisted's own default for the reactor's pool: a few slow name lookups (each may wait out the resolver's
# timeout) must not hold up a login's bcrypt, while CPU-bound work is bounded by the cores anyway.
WORKER_THREADS = 10


class WorkerThreads:
    """``run(fn, *args)``: a Deferred of ``fn(*args)`` called on one of this pool's threads.

    Threads are started on demand (none until the first call) and ended by ``stop``."""

    def __init__(self, reactor, size: int = WORKER_THREADS):
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=size, name="workers")
        self._pool.start()

    def run(self, fn: Callable[..., Any], *args, **kwargs) -> defer.Deferred:
        return threads.deferToThreadPool(self._reactor, self._pool, fn, *args, **kwargs)

    def stop(self) -> None:
        """Wait for the work under way, then end the threads (they would keep the process alive)."""
        self._pool.stop()

"""The global Twisted reactor running on a thread, for tests that drive this process's own Twisted code
(clients, scanners, storage providers) against real servers, and the condition wait they share."""

from __future__ import annotations

import threading

import pytest
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from tests.integration.harness import wait_for  # noqa: F401 (shared with the modules that import it here)



@pytest.fixture(scope="session")
def reactor():
    """The global reactor, running on a thread for the rest of the session."""
    from twisted.internet import reactor as global_reactor

    thread = None
    if not global_reactor.running:
        thread = threading.Thread(target=global_reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
        thread.start()
        wait_for(lambda: global_reactor.running, "the reactor to start")
    yield global_reactor
    if thread is not None:
        global_reactor.callFromThread(global_reactor.stop)
        thread.join(10)


def on_reactor(reactor, make_coroutine):
    """Run ``make_coroutine()`` on the reactor thread and return its result here."""
    return threads.blockingCallFromThread(reactor, lambda: defer.ensureDeferred(make_coroutine()))


@pytest.fixture(scope="session")
def run_in_thread(reactor):
    """A ``run_in_thread(fn, *args)`` on a small thread pool of its own, as the composition root gives one."""
    pool = ThreadPool(minthreads=1, maxthreads=2, name="test-run-in-thread")
    pool.start()
    yield lambda fn, *args: threads.deferToThreadPool(reactor, pool, fn, *args)
    pool.stop()

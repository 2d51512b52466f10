"""Background work: the periodic jobs (with Synapse's background updates admin API over them), work started
by room-event listeners, and batched writes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from twisted.internet import defer, task

from homeserver.errors import MatrixError

logger = logging.getLogger(__name__)


class ListenerWork:
    """Work that a room event listener (synchronous) starts in the background and readers wait for.

    Each piece of work is tagged with the highest stream position it handles, so a reader can wait for
    what concerns the positions it is about to read. Failures are logged.
    """

    def __init__(self, what: str):
        self._what = what
        self._running: dict[defer.Deferred, int] = {}
        self.started = self.failed = 0  # since start-up, for the background updates admin API's status

    def pending(self) -> int:
        return len(self._running)

    def _failed(self, failure, position: int) -> None:
        self.failed += 1
        logger.error("%s up to %d failed: %s", self._what, position, failure.getTraceback())

    def start(self, coro, position: int) -> None:
        self.started += 1
        d = defer.ensureDeferred(coro)
        d.addErrback(self._failed, position)
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


@dataclass(frozen=True)
class ScheduledJob:
    """One periodic job: ``run()`` does one pass and returns how many items it handled (events purged, files
    deleted); every ``interval_ms``, the first at once when ``first_now``."""

    name: str
    interval_ms: int
    run: Callable[[], Awaitable[int]]
    first_now: bool = False


@dataclass
class _JobState:
    runs: int = 0
    items: int = 0  # over every finished run
    duration_ms: float = 0.0
    running_since: float | None = None  # seconds, while a run is under way
    last_run_ts: int | None = None
    last_error: str | None = None


class BackgroundJobs:
    """The server's periodic jobs (message retention purges, media retention) run by one scheduler, which
    Synapse's ``/_synapse/admin/v1/background_updates`` API reads and steers: disabled, the periodic runs are
    skipped (a run under way finishes; an admin's ``start_job`` still runs), as Synapse pauses its background
    updates; ``status`` shows the runs under way and each job's totals since start-up (kept in memory, like
    Synapse's flag). A job never runs twice at once."""

    def __init__(self, clock, jobs: list[ScheduledJob], listener_work: dict[str, ListenerWork]):
        self.clock = clock
        self.jobs = jobs
        self._listener_work = listener_work  # shown in the status only: it follows the events, never paused
        self.enabled = True
        self._by_name = {job.name: job for job in jobs}
        self._state = {job.name: _JobState() for job in jobs}
        self._loops: list[task.LoopingCall] = []

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled

    def start(self) -> None:
        logger.info("Periodic jobs run by this process: %s", ", ".join(j.name for j in self.jobs) or "none")
        for job in self.jobs:
            loop = task.LoopingCall(lambda job=job: defer.ensureDeferred(self._run(job, periodic=True)))
            loop.clock = self.clock
            loop.start(job.interval_ms / 1000.0, now=job.first_now)
            self._loops.append(loop)

    def stop(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()

    async def _run(self, job: ScheduledJob, *, periodic: bool) -> None:
        state = self._state[job.name]
        if (periodic and not self.enabled) or state.running_since is not None:
            return
        state.running_since = self.clock.seconds()
        state.last_run_ts = int(state.running_since * 1000)
        try:
            state.items += await job.run() or 0
            state.last_error = None
        except Exception as e:
            logger.exception("Background job %s failed", job.name)
            state.last_error = str(e)
        finally:
            state.duration_ms += (self.clock.seconds() - state.running_since) * 1000
            state.runs += 1
            state.running_since = None

    def start_job(self, name: str) -> None:
        """POST .../background_updates/start_job: run the job now, in the background."""
        if name not in self._by_name:
            raise MatrixError(400, "M_UNKNOWN", f"Invalid job_name: {name!r} (jobs: {', '.join(self._by_name)})")
        if self._state[name].running_since is not None:
            raise MatrixError(400, "M_UNKNOWN", f"Job {name} is already running")
        defer.ensureDeferred(self._run(self._by_name[name], periodic=False))

    def status(self) -> dict:
        """GET .../background_updates/status: Synapse's ``current_updates`` (the run under way on the one
        database, ``main``), every job (Hexagone's ``jobs``) and the work started by new room events
        (``listener_work``: batches under way, started and failed since start-up)."""
        now = self.clock.seconds()
        jobs, current = [], {}
        for job in self.jobs:
            state = self._state[job.name]
            running_ms = None if state.running_since is None else (now - state.running_since) * 1000
            jobs.append({"name": job.name, "interval_ms": job.interval_ms, "running": running_ms is not None,
                         "runs": state.runs, "total_item_count": state.items,
                         "total_duration_ms": state.duration_ms, "last_run_ts": state.last_run_ts,
                         "last_error": state.last_error})
            if running_ms is not None:
                duration = state.duration_ms + running_ms
                current["main"] = {"name": job.name, "total_item_count": state.items,
                                   "total_duration_ms": duration,
                                   "average_items_per_ms": state.items / duration if duration else 0.0}
        listener_work = [{"name": name, "pending": work.pending(), "started": work.started, "failed": work.failed}
                         for name, work in self._listener_work.items()]
        return {"enabled": self.enabled, "current_updates": current, "jobs": jobs, "listener_work": listener_work}

"""The workloads: each one async function registered with ``@workload(size=default, ...)``.

A workload gets a :class:`Bench` (the server under test, fresh clients) and an
:class:`Outcome` to fill with figures. Every failed request is counted in the
outcome; a workload with any error is reported as FAILED, never as a figure.
Its keyword arguments are its sizes; ``run.py`` turns each into a
``--<workload>-<size>`` flag. Adding a workload (federation ones later) is
one more decorated function here.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from tests.bench import servers
from tests.bench.client import MatrixClient, RequestFailed

ROOM_VERSION = "12"  # created explicitly, so both servers run the same room version
LONG_POLL_MS = 30_000
DELIVERY_TIMEOUT_S = 30.0
PASSWORD = "correct horse battery staple"
HIGHER, LOWER, INFO = "higher", "lower", "info"  # which way a figure is better


@dataclass(frozen=True)
class Figure:
    label: str
    unit: str
    better: str


@dataclass
class Outcome:
    """What one workload measured on one server in one repetition."""

    values: dict[Figure, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    first_error: str | None = None

    def add(self, label: str, unit: str, better: str, value: float) -> None:
        self.values[Figure(label, unit, better)] = value

    def fail(self, message: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or message

    async def timed(self, series: str, call: Awaitable):
        """Await one request, keeping its latency in ms under ``series``; a failure is counted, giving None."""
        start = time.perf_counter()
        try:
            result = await call
        except RequestFailed as e:
            self.fail(str(e))
            return None
        self.samples.setdefault(series, []).append((time.perf_counter() - start) * 1000)
        return result

    def add_percentiles(self, series: str, label: str) -> None:
        values = self.samples.get(series, [])
        for p in (50, 95, 99):
            if values:
                self.add(f"{label} p{p}", "ms", LOWER, percentile(values, p))


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Phase:
    """Wall time and server CPU time of the measured part of a workload."""

    def __init__(self, pid: int):
        self._pid = pid
        self.wall_s = self.cpu_ms = 0.0

    def __enter__(self) -> Phase:
        self._wall, self._cpu = time.perf_counter(), servers.cpu_ms(self._pid)
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_ms = servers.cpu_ms(self._pid) - self._cpu

    def report(self, out: Outcome, operation: str, operations: int, rate: str | None = None) -> None:
        """Add the server CPU ms per ``operation`` and, when ``rate`` names it, the operations per second."""
        if rate is not None:
            out.add(rate, f"{operation}/s", HIGHER, operations / self.wall_s)
        out.add(f"server CPU per {operation}", "ms", LOWER, self.cpu_ms / max(operations, 1))


class Bench:
    """The server under test, seen from the workloads."""

    def __init__(self, server: servers.RunningServer, prefix: str):
        self.server = server
        self.prefix = prefix
        self._clients: list[MatrixClient] = []
        self._names = 0

    def client(self, like: MatrixClient | None = None) -> MatrixClient:
        """A new client (closed by :meth:`close`); ``like`` makes it the same user on its own connection."""
        c = like.clone() if like else MatrixClient(self.server.base_url)
        self._clients.append(c)
        return c

    def name(self) -> str:
        self._names += 1
        return f"{self.prefix}-{self._names}"

    async def user(self) -> MatrixClient:
        """A newly registered user (Synapse requires a password, so setup pays one bcrypt hash too)."""
        c = self.client()
        await c.register(self.name(), PASSWORD)
        return c

    async def users(self, count: int, concurrency: int = 4) -> list[MatrixClient]:
        return await bounded(concurrency, [self.user() for _ in range(count)])

    def phase(self) -> Phase:
        return Phase(self.server.pid)

    def close(self) -> None:
        for c in self._clients:
            c.close()


async def bounded(concurrency: int, calls: list[Awaitable]) -> list:
    """Await ``calls`` with at most ``concurrency`` in flight, results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call):
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def public_room(owner: MatrixClient) -> str:
    return await owner.create_room(preset="public_chat", room_version=ROOM_VERSION)


# -- the registry ----------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    doc: str
    sizes: dict[str, int]
    run: Callable[..., Awaitable[None]]


WORKLOADS: dict[str, Workload] = {}


def workload(fn):
    """Register ``fn(bench, out, **sizes)``; its keyword defaults are the default sizes."""
    sizes = {name: p.default for name, p in inspect.signature(fn).parameters.items()
             if p.kind is p.KEYWORD_ONLY}
    WORKLOADS[fn.__name__] = Workload(fn.__name__, inspect.getdoc(fn).splitlines()[0], sizes, fn)
    return fn


async def run_workload(w: Workload, server: servers.RunningServer, sizes: dict[str, int]) -> Outcome:
    """One workload on one server: its own users and rooms, its own peak RSS; never raises."""
    out = Outcome()
    if server.process.poll() is not None:
        out.fail(f"server exited with {server.process.returncode}")
        return out
    bench = Bench(server, w.name.replace("_", ""))
    servers.reset_peak_rss(server.pid)
    try:
        await w.run(bench, out, **sizes)
    except (RequestFailed, KeyError, TypeError, ValueError, OSError, asyncio.TimeoutError) as e:
        out.fail(f"{type(e).__name__}: {e}")
    finally:
        bench.close()
    if server.process.poll() is None:
        out.add("server peak RSS", "MB", LOWER, servers.peak_rss_mb(server.pid))
    else:
        out.fail(f"server exited with {server.process.returncode}")
    return out


# -- the workloads ---------------------------------------------------------------------


@workload
async def send(bench: Bench, out: Outcome, *, rooms: int = 4, senders: int = 2, messages: int = 40):
    """Concurrent senders in several rooms: messages/s and per-request latency."""
    writers: list[tuple[MatrixClient, str]] = []
    for _ in range(rooms):
        owner, *others = await bench.users(senders)
        room_id = await public_room(owner)
        for other in others:
            await other.join(room_id)
        writers += [(c, room_id) for c in (owner, *others)]

    async def sender(c: MatrixClient, room_id: str):
        for i in range(messages):
            await out.timed("send", c.send_text(room_id, f"message {i} from {c.user_id}"))

    with bench.phase() as phase:
        await asyncio.gather(*(sender(c, r) for c, r in writers))
    phase.report(out, "msg", len(writers) * messages, rate="send throughput")
    out.add_percentiles("send", "send latency")


@workload
async def delivery(bench: Bench, out: Outcome, *, messages: int = 30):
    """One user long-polls /sync while another sends one message at a time: send-to-receive latency."""
    sender, receiver = await bench.users(2)
    room_id = await public_room(sender)
    await receiver.join(room_id)
    since = (await receiver.sync()).json["next_batch"]
    waiting: dict[str, asyncio.Future] = {}

    async def receive(since: str):
        """Long-poll until cancelled; a failed /sync ends it (the sender then stops too)."""
        while True:
            reply = await out.timed("sync", receiver.sync(since, LONG_POLL_MS))
            if reply is None:
                return
            since = reply.json["next_batch"]
            room = reply.json.get("rooms", {}).get("join", {}).get(room_id, {})
            for event in room.get("timeline", {}).get("events", []):
                future = waiting.get(event.get("content", {}).get("body"))
                if future is not None and not future.done():
                    future.set_result(time.perf_counter())

    task = asyncio.create_task(receive(since))
    try:
        with bench.phase() as phase:
            for i in range(messages):
                body = f"delivery {i}"
                waiting[body] = asyncio.get_running_loop().create_future()
                start = time.perf_counter()
                await out.timed("send", sender.send_text(room_id, body))
                await asyncio.wait([waiting[body], task], timeout=DELIVERY_TIMEOUT_S,
                                   return_when=asyncio.FIRST_COMPLETED)
                if not waiting[body].done():
                    out.fail(f"{body!r} not delivered by /sync within {DELIVERY_TIMEOUT_S:.0f}s")
                    break
                out.samples.setdefault("delivery", []).append((waiting[body].result() - start) * 1000)
    finally:
        task.cancel()
    out.add_percentiles("delivery", "send-to-receive")
    phase.report(out, "msg", messages)


@workload
async def initial_sync(bench: Bench, out: Outcome, *, rooms: int = 20, history: int = 10, syncs: int = 5):
    """A user in many rooms with history does fresh (initial) /sync requests: time and size."""
    owner = await bench.user()
    room_ids = [await public_room(owner) for _ in range(rooms)]

    async def fill(writer: MatrixClient, some_rooms: list[str]):
        for room_id in some_rooms:
            for i in range(history):
                await writer.send_text(room_id, f"history {i}")

    await asyncio.gather(*(fill(bench.client(owner), room_ids[k::4]) for k in range(4)))
    sizes = []
    with bench.phase() as phase:
        for _ in range(syncs):
            reply = await out.timed("sync", owner.sync())
            if reply is None:
                continue
            sizes.append(reply.size)
            joined = reply.json.get("rooms", {}).get("join", {})
            missing = [r for r in room_ids if not joined.get(r, {}).get("timeline", {}).get("events")]
            if missing:
                out.fail(f"initial /sync lacks the timeline of {len(missing)} of {rooms} rooms")
    times = out.samples.get("sync", [])
    if times:
        out.add("first initial sync", "ms", LOWER, times[0])
        out.add("initial sync (median)", "ms", LOWER, percentile(times, 50))
        out.add("initial sync size", "KB", INFO, percentile(sizes, 50) / 1024)
    phase.report(out, "sync", syncs)


@workload
async def joins(bench: Bench, out: Outcome, *, users: int = 30, concurrency: int = 4, member_lists: int = 5):
    """Many users join one public room: joins/s, then the time of /members."""
    owner = await bench.user()
    room_id = await public_room(owner)
    joiners = await bench.users(users)
    with bench.phase() as phase:
        await bounded(concurrency, [out.timed("join", c.join(room_id)) for c in joiners])
    phase.report(out, "join", users, rate="join throughput")
    out.add_percentiles("join", "join latency")
    for _ in range(member_lists):
        reply = await out.timed("members", owner.members(room_id))
        if reply is None:
            continue
        joined = [e for e in reply.json.get("chunk", []) if e.get("content", {}).get("membership") == "join"]
        if len(joined) != users + 1:
            out.fail(f"/members lists {len(joined)} joined members, expected {users + 1}")
    if out.samples.get("members"):
        out.add("/members (median)", "ms", LOWER, percentile(out.samples["members"], 50))


@workload
async def register_login(bench: Bench, out: Outcome, *, registrations: int = 8, logins: int = 8,
                         concurrency: int = 2):
    """Registrations/s and logins/s with passwords hashed at the same bcrypt cost on both servers."""
    names = [bench.name() for _ in range(registrations)]
    with bench.phase() as phase:
        await bounded(concurrency, [out.timed("register", bench.client().register(n, PASSWORD)) for n in names])
    phase.report(out, "registration", registrations, rate="registration throughput")
    with bench.phase() as phase:
        await bounded(concurrency, [out.timed("login", bench.client().login(names[i % len(names)], PASSWORD))
                                    for i in range(logins)])
    phase.report(out, "login", logins, rate="login throughput")

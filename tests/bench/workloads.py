"""The workloads: each one async function registered with ``@workload(size=default, ...)``.

A workload gets a :class:`Bench` (the server under test, fresh clients) and an
:class:`Outcome` to fill with figures. Every failed request is counted in the
outcome; a workload with any error is reported as FAILED, never as a figure.
Its keyword arguments are its sizes; ``run.py`` turns each into a
``--<workload>-<size>`` flag. A ``@federation_workload`` gets a :class:`Pair`
instead: two servers of the same kind federating (A and B), each measured.
Adding a workload is one more decorated function here.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from tests.bench import servers
from tests.bench.client import MatrixClient, RequestFailed

ROOM_VERSION = "12"  # created explicitly, so both servers run the same room version
LONG_POLL_MS = 30_000
DELIVERY_TIMEOUT_S = 30.0
FEDERATION_TIMEOUT_S = 600.0  # a join of a big room over federation, the full member list after it
MEMBERS_POLL_S = 0.05
BASE_STATE = 8  # at least the state events createRoom writes itself on either server
SETTLE_WINDOW_S, SETTLE_CPU_SHARE, SETTLE_TIMEOUT_S = 0.5, 0.05, 120.0
PASSWORD = "correct horse battery staple"
MIB = 1024 * 1024
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
    """Wall time and the CPU time of each server (figure prefix -> pid) over the measured part of a workload;
    with ``profile`` (a path prefix), py-spy samples each server over that part into ``<prefix>-<server>.txt``."""

    def __init__(self, pids: dict[str, int], profile: str | None = None):
        self._pids = pids
        self._profile = profile
        self._profilers: list[subprocess.Popen] = []
        self.wall_s = 0.0
        self.cpu_ms = dict.fromkeys(pids, 0.0)

    def __enter__(self) -> Phase:
        if self._profile:
            self._profilers = [servers.start_profiler(pid, f"{self._profile}-{name.replace(' ', '')}.txt")
                               for name, pid in self._pids.items()]
        self._wall = time.perf_counter()
        self._cpu = {name: servers.cpu_ms(pid) for name, pid in self._pids.items()}
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_ms = {name: servers.cpu_ms(pid) - self._cpu[name] for name, pid in self._pids.items()}
        for profiler in self._profilers:
            servers.stop_profiler(profiler)

    def report(self, out: Outcome, operation: str, operations: int, rate: str | None = None) -> None:
        """Add each server's CPU ms per ``operation`` and, when ``rate`` names it, the operations per second."""
        if rate is not None:
            out.add(rate, f"{operation}/s", HIGHER, operations / self.wall_s)
        for name, cpu in self.cpu_ms.items():
            out.add(f"{name} CPU per {operation}", "ms", LOWER, cpu / max(operations, 1))


class Bench:
    """The server under test, seen from the workloads."""

    def __init__(self, server: servers.RunningServer, prefix: str, profile: str | None = None):
        self.server = server
        self.prefix = prefix
        self.profile = profile  # where phase() has py-spy write its samples, if anywhere
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

    async def member(self, room_id: str) -> None:
        """A new user who joins ``room_id`` and hangs up (setup of big rooms: no connection kept)."""
        c = await self.user()
        await c.join(room_id)
        c.close()

    def phase(self) -> Phase:
        return Phase({"server": self.server.pid}, self.profile)

    def close(self) -> None:
        for c in self._clients:
            c.close()


@dataclass
class Pair:
    """Two servers of one kind federating: ``a`` hosts the rooms, ``b`` joins them."""

    a: Bench
    b: Bench

    def phase(self) -> Phase:
        return Phase({f"server {side}": bench.server.pid for side, bench in (("A", self.a), ("B", self.b))},
                     self.a.profile)

    async def settle(self) -> None:
        """Wait until both servers are idle: what the setup left them to do in the background is done before a
        timed phase starts."""
        await settle([self.a.server.pid, self.b.server.pid])


async def settle(pids: list[int]) -> None:
    """Wait (at most SETTLE_TIMEOUT_S) until every process of ``pids`` is idle (under SETTLE_CPU_SHARE of a CPU
    over SETTLE_WINDOW_S)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        before = [servers.cpu_ms(pid) for pid in pids]
        await asyncio.sleep(SETTLE_WINDOW_S)
        if all(servers.cpu_ms(pid) - cpu <= SETTLE_WINDOW_S * 1000 * SETTLE_CPU_SHARE
               for pid, cpu in zip(pids, before)):
            return


async def bounded(concurrency: int, calls: list[Awaitable]) -> list:
    """Await ``calls`` with at most ``concurrency`` in flight, results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call):
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def public_room(owner: MatrixClient) -> str:
    return await owner.create_room(preset="public_chat", room_version=ROOM_VERSION)


def joined_count(members: dict) -> int:
    return sum(1 for e in members.get("chunk", []) if e.get("content", {}).get("membership") == "join")


async def members_listed(client: MatrixClient, room_id: str, expected: int, timeout_s: float) -> int:
    """Poll /members until it lists ``expected`` joined members or time runs out; the last count.

    (Synapse answers /members of a room it joined with partial state only once it has the full state.)"""
    deadline = time.perf_counter() + timeout_s
    while True:
        reply = await client.members(room_id, timeout_s=max(deadline - time.perf_counter(), 1.0))
        joined = joined_count(reply.json)
        if joined >= expected or time.perf_counter() >= deadline:
            return joined
        await asyncio.sleep(MEMBERS_POLL_S)


async def timed_federated_join(pair: Pair, out: Outcome, joiner: MatrixClient, room_id: str, expected: int) -> bool:
    """A user of B joins A's room through A, timed with both servers' CPU: ``join (POST /join to 200)``, ``join
    until B lists every member`` (``expected`` joined members in B's /members) and CPU per join. False, the
    failure counted, if B never lists them all."""
    with pair.phase() as phase:
        start = time.perf_counter()
        await joiner.join(room_id, via=(pair.a.server.server_name,), timeout_s=FEDERATION_TIMEOUT_S)
        joined = time.perf_counter()
        listed = await members_listed(joiner, room_id, expected, FEDERATION_TIMEOUT_S)
        complete = time.perf_counter()
    if listed != expected:
        out.fail(f"B's /members lists {listed} joined members, expected {expected}")
        return False
    out.add("join (POST /join to 200)", "s", LOWER, joined - start)
    out.add("join until B lists every member", "s", LOWER, complete - start)
    phase.report(out, "join", 1)
    return True


class Receiver:
    """One user long-polling /sync, noting when each awaited message body first shows in one room's timeline."""

    def __init__(self, out: Outcome, client: MatrixClient, room_id: str, sync_filter: dict | None = None):
        self._out, self._client, self._room_id, self._filter = out, client, room_id, sync_filter
        self.arrivals: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        since = (await self._client.sync(sync_filter=self._filter)).json["next_batch"]
        self._task = asyncio.create_task(self._poll(since))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def expect(self, body: str) -> asyncio.Future:
        """The future arrival time (perf_counter) of a message with this body."""
        future = self.arrivals[body] = asyncio.get_running_loop().create_future()
        return future

    async def _poll(self, since: str) -> None:
        """Long-poll until cancelled; a failed /sync ends it (and the waits on it)."""
        while True:
            reply = await self._out.timed("sync", self._client.sync(since, LONG_POLL_MS, self._filter))
            if reply is None:
                return
            since = reply.json["next_batch"]
            room = reply.json.get("rooms", {}).get("join", {}).get(self._room_id, {})
            for event in room.get("timeline", {}).get("events", []):
                future = self.arrivals.get(event.get("content", {}).get("body"))
                if future is not None and not future.done():
                    future.set_result(time.perf_counter())

    async def arrived(self, bodies: list[str], timeout_s: float) -> bool:
        """Wait until every one of ``bodies`` arrived (True), or time ran out or /sync failed (False)."""
        deadline = time.perf_counter() + timeout_s
        for body in bodies:
            future = self.arrivals[body]
            remaining = deadline - time.perf_counter()
            if not future.done() and remaining > 0:
                await asyncio.wait([future, self._task], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if not future.done():
                return False
        return True


# -- the registry ----------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    doc: str
    sizes: dict[str, int]
    run: Callable[..., Awaitable[None]]
    servers: int  # 1: one server (a Bench); 2: a federating pair (a Pair)


WORKLOADS: dict[str, Workload] = {}


def _register(fn, server_count: int):
    sizes = {name: p.default for name, p in inspect.signature(fn).parameters.items()
             if p.kind is p.KEYWORD_ONLY}
    WORKLOADS[fn.__name__] = Workload(fn.__name__, inspect.getdoc(fn).splitlines()[0], sizes, fn, server_count)
    return fn


def workload(fn):
    """Register ``fn(bench, out, **sizes)``; its keyword defaults are the default sizes."""
    return _register(fn, 1)


def federation_workload(fn):
    """Register ``fn(pair, out, **sizes)``, run on two servers of one kind federating."""
    return _register(fn, 2)


def _server_names(count: int) -> list[str]:
    return ["server"] if count == 1 else [f"server {side}" for side in "AB"[:count]]


async def run_workload(w: Workload, running: list[servers.RunningServer], sizes: dict[str, int],
                       profile: str | None = None) -> Outcome:
    """One workload on its server(s): its own users and rooms, its own peak RSS; never raises.
    ``profile``: a path prefix for py-spy samples of the measured phase."""
    out = Outcome()
    names = _server_names(len(running))
    for name, server in zip(names, running):
        if server.process.poll() is not None:
            out.fail(f"{name} exited with {server.process.returncode}")
    if out.errors:
        return out
    benches = [Bench(server, w.name.replace("_", ""), profile) for server in running]
    for server in running:
        servers.reset_peak_rss(server.pid)
    try:
        await w.run(benches[0] if w.servers == 1 else Pair(*benches), out, **sizes)
    except (RequestFailed, KeyError, TypeError, ValueError, OSError, asyncio.TimeoutError) as e:
        out.fail(f"{type(e).__name__}: {e}")
    finally:
        for bench in benches:
            bench.close()
    for name, server in zip(names, running):
        if server.process.poll() is None:
            out.add(f"{name} peak RSS", "MB", LOWER, servers.peak_rss_mb(server.pid))
        else:
            out.fail(f"{name} exited with {server.process.returncode}")
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
    sender, user = await bench.users(2)
    room_id = await public_room(sender)
    await user.join(room_id)
    with bench.phase() as phase:
        await deliveries(out, sender, user, room_id, messages)
    out.add_percentiles("delivery", "send-to-receive")
    phase.report(out, "msg", messages)


async def deliveries(out: Outcome, sender: MatrixClient, user: MatrixClient, room_id: str, messages: int) -> None:
    """``sender`` sends ``messages`` messages one at a time while ``user`` long-polls /sync: each one's time from
    just before its PUT to the /sync answer carrying it, in ``out.samples["delivery"]``."""
    receiver = Receiver(out, user, room_id)
    await receiver.start()
    try:
        for i in range(messages):
            body = f"delivery {i}"
            arrival = receiver.expect(body)
            start = time.perf_counter()
            await out.timed("send", sender.send_text(room_id, body))
            if not await receiver.arrived([body], DELIVERY_TIMEOUT_S):
                out.fail(f"{body!r} not delivered by /sync within {DELIVERY_TIMEOUT_S:.0f}s")
                return
            out.samples.setdefault("delivery", []).append((arrival.result() - start) * 1000)
    finally:
        receiver.stop()


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
async def joins(bench: Bench, out: Outcome, *, users: int = 100, concurrency: int = 4, member_lists: int = 5):
    """Many users join one public room: joins/s, then the time of /members (100 joins by default: 30 took a
    fraction of a second on Hexagone, a figure the machine's noise swung from 5x to 13x Synapse's)."""
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
        if joined_count(reply.json) != users + 1:
            out.fail(f"/members lists {joined_count(reply.json)} joined members, expected {users + 1}")
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


# -- federation: two servers of one kind --------------------------------------------------


@workload
async def media(bench: Bench, out: Outcome, *, files: int = 10, megabytes: int = 20, big_megabytes: int = 100,
                thumbnails: int = 10):
    """Uploads then downloads of `files` files of `megabytes` MB (MiB/s each way), time to first byte of a
    `big_megabytes` MB download, thumbnail latency."""
    user = await bench.user()
    data = os.urandom(megabytes * MIB)
    uris = []
    with bench.phase() as phase:
        for _ in range(files):
            uri = await out.timed("upload", user.upload(data))
            if uri is not None:
                uris.append(uri)
    out.add("upload throughput", "MiB/s", HIGHER, len(uris) * megabytes / phase.wall_s)
    phase.report(out, "upload", files)
    with bench.phase() as phase:
        for uri in uris:
            reply = await out.timed("download", user.download(uri, "download/{}"))
            if reply is not None and reply.raw != data:
                out.fail("a download differs from its upload")
    out.add("download throughput", "MiB/s", HIGHER, len(uris) * megabytes / phase.wall_s)
    phase.report(out, "download", files)
    big = await user.upload(os.urandom(big_megabytes * MIB))
    first_bytes = [await user.first_byte_s(big) for _ in range(3)]
    out.add(f"time to first byte, {big_megabytes} MB download (median of 3)", "ms", LOWER,
            percentile(first_bytes, 50) * 1000)
    image = await user.upload(_jpeg(1600, 1200), "image/jpeg")
    for i in range(thumbnails):
        size = 32 + 16 * i  # a different size each time: generated (or chosen) afresh
        await out.timed("thumbnail", user.download(image, f"thumbnail/{{}}?width={size}&height={size}&method=crop"))
    out.add_percentiles("thumbnail", "thumbnail latency")


def _jpeg(width: int, height: int) -> bytes:
    from PIL import Image  # only the media workload needs it

    out = io.BytesIO()
    Image.effect_noise((width, height), 64).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


@federation_workload
async def federation_send(pair: Pair, out: Outcome, *, messages: int = 200):
    """A user of A sends messages back to back into a room a user of B long-polls: msg/s crossing, latency."""
    alice, bob = await pair.a.user(), await pair.b.user()
    room_id = await public_room(alice)
    await bob.join(room_id, via=(pair.a.server.server_name,), timeout_s=FEDERATION_TIMEOUT_S)
    if await members_listed(bob, room_id, 2, FEDERATION_TIMEOUT_S) != 2:
        out.fail("B does not list both members after joining")
        return
    receiver = Receiver(out, bob, room_id, {"room": {"timeline": {"limit": messages}}})
    await receiver.start()
    await pair.settle()
    bodies = [f"federated {i}" for i in range(messages)]
    sent_at: dict[str, float] = {}
    try:
        with pair.phase() as phase:
            for body in bodies:
                receiver.expect(body)
                sent_at[body] = time.perf_counter()
                await out.timed("send", alice.send_text(room_id, body))
            complete = await receiver.arrived(bodies, DELIVERY_TIMEOUT_S)
    finally:
        receiver.stop()
    arrivals = {b: receiver.arrivals[b].result() for b in bodies if receiver.arrivals[b].done()}
    if not complete:
        out.fail(f"{messages - len(arrivals)} of {messages} messages not in B's /sync "
                 f"{DELIVERY_TIMEOUT_S:.0f}s after the last send")
        return
    out.add("messages crossing", "msg/s", HIGHER, messages / (max(arrivals.values()) - sent_at[bodies[0]]))
    out.samples["delivery"] = [(arrivals[b] - sent_at[b]) * 1000 for b in bodies]
    out.add_percentiles("delivery", "send-to-receive")
    phase.report(out, "msg", messages)


async def _put_custom_state(writer: MatrixClient, room_id: str, keys: range) -> None:
    for i in keys:
        await writer.put_state(room_id, "org.example.state", f"key {i}", {"n": i})


@federation_workload
async def federation_join(pair: Pair, out: Outcome, *, members: int = 2000, state: int = 5000,
                          concurrency: int = 8):
    """A user of B joins a big room of A (members member events, state events in all): join time, full list."""
    owner = await pair.a.user()
    room_id = await public_room(owner)
    writers = [pair.a.client(owner) for _ in range(concurrency)]
    custom = max(0, state - members - BASE_STATE)
    # Custom state first, while the room is small (cheaper for both servers), then the members.
    await asyncio.gather(*(_put_custom_state(w, room_id, range(k, custom, concurrency))
                           for k, w in enumerate(writers)))
    await bounded(concurrency, [pair.a.member(room_id) for _ in range(members - 1)])
    have = len((await owner.state(room_id)).json)
    await _put_custom_state(owner, room_id, range(custom, custom + state - have))  # to exactly ``state``
    out.add("room state events", "events", INFO, max(have, state))
    joiner = await pair.b.user()
    await pair.settle()
    await timed_federated_join(pair, out, joiner, room_id, members + 1)


"""How each cost grows with the work (issue 20), Hexagone against Synapse, plotted to PNG.

    .venv/bin/python -m tests.bench.growth [--quick] [--servers hexagone,synapse] [--database sqlite|postgresql]
        [--sync-rooms 20,200,1000] [--room-members 50,1000] [--history 10000] [--plots DIR] [--json OUT]
    .venv/bin/python -m tests.bench.growth --fill DIR [the same sizes and servers]   # build the points, keep them
    .venv/bin/python -m tests.bench.growth --measure DIR [--servers ...] [--curves ...] [--plots DIR] [--json OUT]
    .venv/bin/python -m tests.bench.growth --drop DIR     # drop the points' PostgreSQL databases, remove DIR

Each point is filled through the client-server API, then measured. In one run (the default), each server kind
is started afresh once for all its points, each point with its own users and rooms, peak RSS reset before each
point (its fill and its measurement). ``--fill DIR`` only builds the points, each on a server of its own whose
state is kept (``DIR/<curve>-<size>-<server>/``: the server's work dir, and its PostgreSQL database
``growth_<curve><size>_<server>_<tag of DIR>``), and ``--measure DIR`` starts each server again on a point's kept
state and takes only the figures (peak RSS then covers the measurement alone, from a restarted server): big points
are built once, in the background, and measured later on a quiet machine (each server left to settle after its
start first).

Curves:

- ``sync``: a user in N rooms: the first initial /sync (built from the database), then incremental /syncs
  after one new message in one of the rooms (median of 5).
- ``room``: a public room of N members: send latency (median of 30 sends), send-to-receive latency of a member
  long-polling /sync (median of 10), user directory search among the N members (median of 5, once the
  directory lists the searched user).
- ``messages``: a room with N messages: /messages paged backwards 100 at a time to the room's creation (median
  page, and the whole walk).
- ``directory``: N users registered (the bulk path: 64 connections registering one user after another with
  ``inhibit_login``, no room joined: both servers run with ``user_directory.search_all_users``): user directory
  search for one of them by a word of their id (median of 5), and for a word all of them share (a full page of
  10, median of 5).

Both servers get ``bcrypt_rounds: 4`` (thousands of setup users) and the suite's raised rate limits; every
failed request, a /sync lacking a room, or a walk short of the history counts as an error and the point shows
no figure (a fill retries a request that got no answer or a 5xx, at most 3 times). ``--quick`` runs tiny sizes
(the CI smoke test, Hexagone only in about 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import sys
import time

from tests.bench import servers
from tests.bench.client import MatrixClient, RequestFailed, quote
from tests.bench.workloads import HIGHER, LOWER, PASSWORD, Bench, Outcome, deliveries, public_room, settle

GROWTH_CONFIG = {"bcrypt_rounds": servers.PAIR_BCRYPT_ROUNDS,
                 "rc_user_directory": {"per_second": 10000, "burst_count": 10000},
                 "user_directory": {"enabled": True, "search_all_users": True}}
SETUP_CONCURRENCY = 8
BULK_CONCURRENCY = 64  # connections registering the users of the directory curve
RETRIES = 3  # attempts at a request of a fill
PROGRESS_FROM = 1000  # items of a fill from which its progress is printed
PAGE = 100
DIRECTORY_WAIT_S = 60.0
SEARCHES = 20  # user directory searches per figure (a few ms each: their median)
SETUP_TIMEOUT_S = 600.0
SIZES = {"sync": [20, 200, 1000], "room": [50, 1000], "messages": [10000], "directory": [1000, 10000]}
QUICK = {"sync": [2, 6], "room": [3, 8], "messages": [150], "directory": [5, 20]}
PLOTTED = {  # curve -> the figures drawn (one PNG per curve, one panel per figure)
    "sync": ["initial sync", "incremental sync", "peak RSS"],
    "room": ["send latency", "send-to-receive", "user directory search", "peak RSS"],
    "messages": ["/messages page", "peak RSS"],
    "directory": ["search for one user", "search for a shared word", "peak RSS"],
}
X_LABELS = {"sync": "rooms the user is in", "room": "members of the room", "messages": "messages in the room",
            "directory": "users on the server"}


async def _split(clients: list[MatrixClient], items: list, call, progress: str | None = None) -> list:
    """``call(client, item)`` for every item, the items shared out among ``clients`` (one request at a time each);
    with ``progress`` (a name), the count done and the rate so far printed every tenth of a long list."""
    results: list = [None] * len(items)
    done, started, step = 0, time.monotonic(), max(len(items) // 10, 1)

    async def worker(k: int):
        nonlocal done
        for i in range(k, len(items), len(clients)):
            results[i] = await call(clients[k], items[i])
            done += 1
            if progress and len(items) >= PROGRESS_FROM and done % step == 0:
                rate = done / (time.monotonic() - started)
                print(f"    {progress}: {done}/{len(items)}, {rate:.1f}/s", file=sys.stderr, flush=True)

    await asyncio.gather(*(worker(k) for k in range(len(clients))))
    return results


async def _again(make_call):
    """``make_call()`` awaited, again after a failure without an answer or with a 5xx (at most RETRIES times in
    all): one lost request must not waste the hour a big fill takes."""
    for attempt in range(1, RETRIES + 1):
        try:
            return await make_call()
        except RequestFailed as e:
            if attempt == RETRIES or (e.status is not None and e.status < 500):
                raise


def _who(client: MatrixClient) -> list[str]:
    return [client.user_id, client.access_token]


def _as(bench: Bench, who: list[str]) -> MatrixClient:
    """A client of the user a fill registered (its access token kept in the state)."""
    client = bench.client()
    client.user_id, client.access_token = who
    return client


# Each curve: fill(bench, size) builds the point through the client-server API and returns what the measurement
# needs (JSON: user ids and access tokens, room ids); measure(bench, out, size, state) takes the figures.

async def sync_fill(bench: Bench, rooms: int) -> dict:
    """A user who created ``rooms`` public rooms."""
    owner = await bench.user()
    writers = [bench.client(owner) for _ in range(SETUP_CONCURRENCY)]
    room_ids = await _split(writers, list(range(rooms)), lambda c, _: public_room(c), f"{bench.prefix} rooms")
    return {"owner": _who(owner), "rooms": room_ids}


async def sync_measure(bench: Bench, out: Outcome, rooms: int, state: dict) -> None:
    """The first initial /sync, then incremental /syncs after one message."""
    owner, room_ids = _as(bench, state["owner"]), state["rooms"]
    reply = await out.timed("initial", owner.sync())
    if reply is None:
        return
    joined = reply.json.get("rooms", {}).get("join", {})
    if len([r for r in room_ids if r in joined]) != rooms:
        out.fail(f"initial /sync lists {len(joined)} of {rooms} rooms")
    since = reply.json["next_batch"]
    for i in range(5):
        await owner.send_text(room_ids[i % rooms], f"new {i}")
        reply = await out.timed("incremental", owner.sync(since))
        if reply is None:
            return
        since = reply.json["next_batch"]
    out.add("initial sync", "ms", LOWER, out.samples["initial"][0])
    out.add("incremental sync", "ms", LOWER, statistics.median(out.samples["incremental"]))


async def _member(bench: Bench, room_id: str, name: str) -> None:
    """A new user ``name`` who joins ``room_id`` and hangs up."""
    c = bench.client()
    try:
        await _again(lambda: c.register(name, PASSWORD))
        await _again(lambda: c.join(room_id))
    finally:
        c.close()


async def room_fill(bench: Bench, members: int) -> dict:
    """A public room of ``members`` members: its owner, a reader, the others joined 8 at once."""
    owner, reader = await bench.users(2)
    room_id = await public_room(owner)
    await reader.join(room_id)
    joiners = [bench.client() for _ in range(SETUP_CONCURRENCY)]
    names = [f"{bench.prefix}-m{i}" for i in range(members - 2)]
    await _split(joiners, names, lambda _, name: _member(bench, room_id, name), f"{bench.prefix} members")
    return {"owner": _who(owner), "reader": _who(reader), "room": room_id}


async def room_measure(bench: Bench, out: Outcome, members: int, state: dict) -> None:
    """Send, send-to-receive, user directory search among the members."""
    owner, reader, room_id = _as(bench, state["owner"]), _as(bench, state["reader"]), state["room"]
    reader.timeout_s = SETUP_TIMEOUT_S  # its first /sync (not a figure) lists every member of a big room
    for i in range(20):
        await out.timed("send", owner.send_text(room_id, f"send {i}"))
    await deliveries(out, owner, reader, room_id, 10)
    if out.errors:
        return
    term = reader.user_id.split(":")[0].lstrip("@")
    deadline = time.monotonic() + DIRECTORY_WAIT_S
    while not await _finds(owner, term, reader.user_id):  # the directory may be updated in the background
        if time.monotonic() > deadline:
            out.fail(f"the user directory never listed {reader.user_id}")
            return
        await asyncio.sleep(0.2)
    await settle([bench.server.pid])  # the sends' background work (push actions of every member) done first
    for _ in range(SEARCHES):
        await out.timed("search", owner.search_users(term))
    out.add("send latency", "ms", LOWER, statistics.median(out.samples["send"]))
    out.add("send-to-receive", "ms", LOWER, statistics.median(out.samples["delivery"]))
    out.add("user directory search", "ms", LOWER, statistics.median(out.samples["search"]))


async def _finds(client: MatrixClient, term: str, user_id: str) -> bool:
    results = (await client.search_users(term)).json.get("results", [])
    return any(r.get("user_id") == user_id for r in results)


async def messages_fill(bench: Bench, history: int) -> dict:
    """A room with ``history`` messages, sent 8 at once (each with its own transaction id, so a retry is
    idempotent)."""
    owner = await bench.user()
    room_id = await public_room(owner)
    writers = [bench.client(owner) for _ in range(SETUP_CONCURRENCY)]
    path = f"/rooms/{quote(room_id)}/send/m.room.message/{bench.prefix}-"

    def send(c: MatrixClient, i: int):
        return _again(lambda: c.call("PUT", f"{path}{i}", {"msgtype": "m.text", "body": f"history {i}"}))

    await _split(writers, list(range(history)), send, f"{bench.prefix} messages")
    return {"owner": _who(owner), "room": room_id}


async def messages_measure(bench: Bench, out: Outcome, history: int, state: dict) -> None:
    """/messages paged back :data:`PAGE` at a time to the room's creation."""
    owner, room_id = _as(bench, state["owner"]), state["room"]
    seen, token = 0, None
    start = time.perf_counter()
    while True:
        reply = await out.timed("page", owner.messages(room_id, token, PAGE))
        if reply is None:
            return
        chunk = reply.json.get("chunk", [])
        seen += sum(1 for e in chunk if e.get("type") == "m.room.message")
        token = reply.json.get("end")
        if not chunk or token is None:
            break
    walk = time.perf_counter() - start
    if seen != history:
        out.fail(f"/messages walked back through {seen} of {history} messages")
        return
    out.add("/messages page", "ms", LOWER, statistics.median(out.samples["page"]))
    out.add("whole walk", "s", LOWER, walk)
    out.add("events per second paged", "events/s", HIGHER, history / walk)


async def _register_again(client: MatrixClient, name: str) -> None:
    """Register another user on this connection, without logging in (``inhibit_login``: the user needs no
    device; /register refuses a request with an access token). A retry may find the user made."""
    body = {"username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"}, "inhibit_login": True}
    try:
        await client.call("POST", "/register", body)
    except RequestFailed as e:
        if e.status is not None and e.status < 500:
            raise
        try:
            await client.call("POST", "/register", body)
        except RequestFailed as again:
            if "M_USER_IN_USE" not in str(again):
                raise


async def directory_fill(bench: Bench, users: int) -> dict:
    """A searcher and ``users`` users registered in bulk (in no room), sharing one word."""
    searcher = await bench.user()
    shared = f"{bench.prefix}dir"
    names = [f"{shared}-{i}" for i in range(users)]
    registrars = [bench.client() for _ in range(BULK_CONCURRENCY)]
    await _split(registrars, names, _register_again, f"{bench.prefix} users")
    return {"searcher": _who(searcher), "shared": shared, "target": names[users // 2]}


async def directory_measure(bench: Bench, out: Outcome, users: int, state: dict) -> None:
    """User directory search for one of the users, and for the word they all share."""
    searcher, shared, target = _as(bench, state["searcher"]), state["shared"], state["target"]
    target_id = f"@{target}:{bench.server.server_name}"
    deadline = time.monotonic() + DIRECTORY_WAIT_S
    while not await _finds(searcher, target, target_id):  # Synapse adds new users in the background
        if time.monotonic() > deadline:
            out.fail(f"the user directory never listed {target_id}")
            return
        await asyncio.sleep(0.2)
    for _ in range(SEARCHES):
        reply = await out.timed("one", searcher.search_users(target))
        if reply is not None and not any(r.get("user_id") == target_id for r in reply.json.get("results", [])):
            out.fail(f"a search for {target} did not find {target_id}")
    for _ in range(SEARCHES):
        reply = await out.timed("shared", searcher.search_users(shared))
        if reply is not None and len(reply.json.get("results", [])) != min(10, users):
            out.fail(f"a search for {shared} found {len(reply.json.get('results', []))} of {users} users")
    if out.errors:
        return
    out.add("search for one user", "ms", LOWER, statistics.median(out.samples["one"]))
    out.add("search for a shared word", "ms", LOWER, statistics.median(out.samples["shared"]))


CURVES = {"sync": (sync_fill, sync_measure), "room": (room_fill, room_measure),
          "messages": (messages_fill, messages_measure), "directory": (directory_fill, directory_measure)}


async def _point(curve: str, server: servers.RunningServer, size: int, state: dict | None = None) -> Outcome:
    """One point on ``server``: filled first, unless ``state`` (what a fill built there) is given; peak RSS
    reset first, so it covers what runs here."""
    out = Outcome()
    bench = Bench(server, f"{curve}{size}")
    servers.reset_peak_rss(server.pid)
    fill, measure = CURVES[curve]
    try:
        if state is None:
            state = await fill(bench, size)
        await measure(bench, out, size, state)
    except Exception as e:  # a broken point is an error of that point, never a crash of the run
        out.fail(f"{type(e).__name__}: {e}")
    finally:
        bench.close()
    if server.process.poll() is None:
        out.add("peak RSS", "MB", LOWER, servers.peak_rss_mb(server.pid))
    else:
        out.fail(f"server exited with {server.process.returncode}")
    return out


def _report(label: str, curve: str, size: int, out: Outcome, started: float) -> None:
    status = f"{out.errors} errors ({out.first_error})" if out.errors else "ok"
    print(f"  {label} {curve} {size}: {time.monotonic() - started:.1f}s, {status}", file=sys.stderr, flush=True)


def run(labels: list[str], database: str, sizes: dict[str, list[int]]) -> dict:
    """{curve: {server: {size: Outcome}}}, each server kind started once for all its points, each point filled
    then measured."""
    results: dict = {curve: {label: {} for label in labels} for curve in sizes}
    for label in labels:
        with servers.running(label, database, config=GROWTH_CONFIG) as server:
            for curve, points in sizes.items():
                for size in points:
                    started = time.monotonic()
                    results[curve][label][size] = out = asyncio.run(_point(curve, server, size))
                    _report(label, curve, size, out, started)
    return results


# -- fill once, measure later -----------------------------------------------------------
# DIR/<curve>-<size>-<server>/ holds one point: ``server/`` (the server's work dir: config, signing key, SQLite
# database or media) and ``point.json`` (its PostgreSQL database; once the fill is done, what it built).

def _point_file(directory: str, curve: str, size: int, label: str) -> str:
    return os.path.join(directory, f"{curve}-{size}-{label}", "point.json")


def _write(path: str, data: dict) -> None:
    with open(path + ".new", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".new", path)


def fill(directory: str, labels: list[str], database: str, sizes: dict[str, list[int]]) -> int:
    """Build every point in ``directory``, each on a server of its own (stopped afterwards, its state kept);
    points filled before are left as they are. The number of points that failed."""
    tag = hashlib.sha256(os.path.abspath(directory).encode()).hexdigest()[:6]
    failed = 0
    for label in labels:
        for curve, points in sizes.items():
            for size in points:
                path = _point_file(directory, curve, size, label)
                if os.path.exists(path):
                    with open(path) as f:
                        if json.load(f)["filled"] is not None:
                            print(f"  {label} {curve} {size}: filled before", file=sys.stderr, flush=True)
                            continue
                    failed += 1
                    print(f"  {label} {curve} {size}: an unfinished fill is in {os.path.dirname(path)}; --drop "
                          f"{directory} removes every point there", file=sys.stderr, flush=True)
                    continue
                os.makedirs(os.path.dirname(path))
                point = {"curve": curve, "size": size, "server": label, "database": database,
                         "pg_name": f"growth_{curve}{size}_{label}_{tag}" if database == "postgresql" else None,
                         "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "filled": None}
                _write(path, point)
                started = time.monotonic()
                workdir = os.path.join(os.path.dirname(path), "server")
                try:
                    with servers.kept(label, database, workdir, point["pg_name"], config=GROWTH_CONFIG) as server:
                        point["filled"] = asyncio.run(CURVES[curve][0](Bench(server, f"{curve}{size}"), size))
                except Exception as e:  # a failed fill is reported, the other points still filled
                    failed += 1
                    print(f"  {label} {curve} {size}: fill failed: {type(e).__name__}: {e}", file=sys.stderr,
                          flush=True)
                    continue
                point["fill_s"] = time.monotonic() - started
                point["ended"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                _write(path, point)
                print(f"  {label} {curve} {size}: filled in {point['fill_s']:.0f}s", file=sys.stderr, flush=True)
    return failed


def _points(directory: str) -> list[dict]:
    found = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name, "point.json")
        if os.path.exists(path):
            with open(path) as f:
                found.append(json.load(f) | {"dir": os.path.join(directory, name)})
    return found


def measure(directory: str, labels: list[str], curves: list[str]) -> tuple[dict, dict[str, list[int]], str]:
    """Every filled point of ``directory`` (of these servers and curves): its server started again on the kept
    state, the figures taken, the server stopped. The results, the sizes found and the database kind."""
    results: dict = {}
    database = "sqlite"
    points = [p for p in _points(directory) if p["server"] in labels and p["curve"] in curves]
    points.sort(key=lambda p: (labels.index(p["server"]), curves.index(p["curve"]), p["size"]))
    for p in points:
        curve, size, label = p["curve"], p["size"], p["server"]
        if p["filled"] is None:
            print(f"  {label} {curve} {size}: not filled (yet), left out", file=sys.stderr, flush=True)
            continue
        database = p["database"]
        started = time.monotonic()
        if p["pg_name"]:
            servers.analyze(p["pg_name"])
        with servers.kept(label, database, os.path.join(p["dir"], "server"), p["pg_name"]) as server:
            asyncio.run(settle([server.pid]))  # what the server does after a start, done before the figures
            out = asyncio.run(_point(curve, server, size, p["filled"]))
        results.setdefault(curve, {}).setdefault(label, {})[size] = out
        _report(label, curve, size, out, started)
    sizes = {curve: sorted({s for pts in by.values() for s in pts}) for curve, by in results.items()}
    return results, sizes, database


def drop(directory: str) -> None:
    """Drop the PostgreSQL database of every point of ``directory`` and remove the directory."""
    for p in _points(directory):
        if p["pg_name"]:
            servers.drop_database(p["pg_name"])
    shutil.rmtree(directory)


def table(results: dict) -> str:
    """A markdown table, a column per server (a curve measured on some servers only has "—" for the others)."""
    labels = list(dict.fromkeys(label for by_server in results.values() for label in by_server))
    lines = ["| curve | size | figure | unit | " + " | ".join(labels) + " |", "|---|---|---|---|" + "---|" * len(labels)]
    for curve, by_server in results.items():
        by_server = {label: by_server.get(label, {}) for label in labels}
        for size in sorted({s for points in by_server.values() for s in points}):
            figures = {f: None for out in (by_server[lb].get(size) for lb in labels) if out for f in out.values}
            for f in figures:
                cells = []
                for lb in labels:
                    out = by_server[lb].get(size)
                    cells.append("—" if out is None else f"FAILED ({out.errors} errors)" if out.errors
                                 else f"{out.values.get(f, float('nan')):.3g}")
                lines.append(f"| {curve} | {size} | {f.label} | {f.unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw_panel(ax, by_server: dict, label: str, x_label: str) -> None:
    """One figure's panel: a line per server over the sizes (failed points left out), log scale for a wide range."""
    unit = ""
    for server, points in by_server.items():
        xy = [(size, v) for size, out in sorted(points.items()) if not out.errors
              for f, v in out.values.items() if f.label == label]
        unit = next((f.unit for out in points.values() for f in out.values if f.label == label), unit)
        if xy:
            ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=server)
    ax.set_title(label)
    sizes = sorted({size for points in by_server.values() for size in points})
    if sizes and sizes[-1] >= 10 * sizes[0]:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.set_xlabel(x_label)
    ax.set_ylabel(unit)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()


def plot(results: dict, out_dir: str, title: str) -> list[str]:
    """One PNG per curve (``growth-<curve>.png``), a panel per figure, a line per server; failed points left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for curve, by_server in results.items():
        labels = PLOTTED[curve]
        fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.6), squeeze=False)
        for ax, label in zip(axes[0], labels):
            draw_panel(ax, by_server, label, X_LABELS[curve])
        fig.suptitle(f"{curve}: {title}")
        fig.tight_layout()
        path = os.path.join(out_dir, f"growth-{curve}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def _outcomes(saved: dict) -> dict:
    """The results as --json wrote them, back into Outcomes (units and directions from the figures' labels)."""
    units = {"peak RSS": ("MB", LOWER), "whole walk": ("s", LOWER), "events per second paged": ("events/s", HIGHER)}
    results: dict = {}
    for curve, by_server in saved.items():
        for label, points in by_server.items():
            for size, point in points.items():
                out = Outcome(errors=point["errors"], first_error=point["first_error"])
                for figure, value in point["figures"].items():
                    out.add(figure, *units.get(figure, ("ms", LOWER)), value)
                results.setdefault(curve, {}).setdefault(label, {})[int(size)] = out
    return results


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _save(path: str, database: str, sizes: dict, results: dict) -> None:
    with open(path, "w") as f:
        json.dump({"database": database, "date": time.strftime('%Y-%m-%d'), "sizes": sizes, "results": {
            c: {lb: {str(s): {"errors": o.errors, "first_error": o.first_error,
                              "figures": {f.label: v for f, v in o.values.items()}}
                     for s, o in sorted(pts.items())} for lb, pts in by.items()} for c, by in results.items()}},
                  f, indent=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.growth", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"tiny sizes, a smoke test: {QUICK}")
    p.add_argument("--servers", default="hexagone,synapse", help="comma-separated, of: hexagone, synapse")
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--curves", default=",".join(SIZES), help=f"comma-separated, of: {', '.join(SIZES)}")
    p.add_argument("--sync-rooms", type=_sizes, help=f"rooms of the sync curve (default {SIZES['sync']})")
    p.add_argument("--room-members", type=_sizes, help=f"members of the room curve (default {SIZES['room']})")
    p.add_argument("--history", type=_sizes, help=f"messages of the messages curve (default {SIZES['messages']})")
    p.add_argument("--directory-users", type=_sizes,
                   help=f"users of the directory curve (default {SIZES['directory']})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fill", metavar="DIR", help="only build the points, each server's state kept in DIR")
    mode.add_argument("--measure", metavar="DIR", help="only measure the points filled in DIR (sizes from there)")
    mode.add_argument("--drop", metavar="DIR", help="drop the databases of the points in DIR and remove DIR")
    mode.add_argument("--from-json", metavar="IN", help="run nothing: print and plot what --json wrote")
    p.add_argument("--plots", metavar="DIR", help="write growth-<curve>.png there")
    p.add_argument("--json", metavar="OUT", help="also write every figure to this file")
    args = p.parse_args(argv)
    labels, curves = args.servers.split(","), args.curves.split(",")
    if args.drop:
        drop(args.drop)
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        results = _outcomes(saved["results"])
        print(table(results))
        for path in plot(results, args.plots or ".", f"{saved['database']}, {saved.get('date', '')}"):
            print(f"wrote {path}")
        return 0
    base = QUICK if args.quick else SIZES
    chosen = {"sync": args.sync_rooms, "room": args.room_members, "messages": args.history,
              "directory": args.directory_users}
    sizes = {c: chosen[c] or base[c] for c in curves}
    started = time.monotonic()
    if args.fill:
        failed = fill(args.fill, labels, args.database, sizes)
        print(f"filled {sizes} in {time.monotonic() - started:.0f}s, {failed} failed")
        return 1 if failed else 0
    if args.measure:
        results, sizes, database = measure(args.measure, labels, curves)
    else:
        results, database = run(labels, args.database, sizes), args.database
    print(table(results))
    if args.plots:
        for path in plot(results, args.plots, f"{database}, {time.strftime('%Y-%m-%d')}"):
            print(f"wrote {path}")
    failed = [(c, lb, s) for c, by in results.items() for lb, pts in by.items() for s, o in pts.items() if o.errors]
    print(f"\nsizes {sizes}, database {database}, {time.monotonic() - started:.0f}s, "
          f"1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        _save(args.json, database, sizes, results)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())

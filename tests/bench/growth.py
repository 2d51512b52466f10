"""How each cost grows with the work (issue 20), Hexagone against Synapse, plotted to PNG.

    .venv/bin/python -m tests.bench.growth [--quick] [--servers hexagone,synapse] [--database sqlite|postgresql]
        [--sync-rooms 20,200,1000] [--room-members 50,1000] [--history 10000] [--plots DIR] [--json OUT]

Curves, each point on the same running server (one per kind, started afresh, with its own users and rooms
for every point; peak RSS reset before each point):

- ``sync``: a user in N rooms: the first initial /sync (built from the database), then incremental /syncs
  after one new message in one of the rooms (median of 5).
- ``room``: a public room of N members: send latency (median of 30 sends), send-to-receive latency of a member
  long-polling /sync (median of 10), user directory search among the N members (median of 5, once the
  directory lists the searched user).
- ``messages``: a room with N messages: /messages paged backwards 100 at a time to the room's creation (median
  page, and the whole walk).
- ``directory``: N users registered (the bulk path: 16 connections registering one user after another, no
  room joined: both servers run with ``user_directory.search_all_users``): user directory search for one of
  them by a word of their id (median of 5), and for a word all of them share (a full page of 10, median of 5).

Both servers get ``bcrypt_rounds: 4`` (thousands of setup users) and the suite's raised rate limits; every
failed request, a /sync lacking a room, or a walk short of the history counts as an error and the point shows
no figure. ``--quick`` runs tiny sizes (the CI smoke test, Hexagone only in about 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

from tests.bench import servers
from tests.bench.client import MatrixClient
from tests.bench.workloads import HIGHER, LOWER, PASSWORD, Bench, Outcome, bounded, deliveries, public_room

GROWTH_CONFIG = {"bcrypt_rounds": servers.PAIR_BCRYPT_ROUNDS,
                 "rc_user_directory": {"per_second": 10000, "burst_count": 10000},
                 "user_directory": {"enabled": True, "search_all_users": True}}
SETUP_CONCURRENCY = 8
BULK_CONCURRENCY = 16  # connections registering the users of the directory curve
PAGE = 100
DIRECTORY_WAIT_S = 60.0
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


async def _split(clients: list[MatrixClient], items: list, call) -> list:
    """``call(client, item)`` for every item, the items shared out among ``clients`` (one request at a time each)."""
    results: list = [None] * len(items)

    async def worker(k: int):
        for i in range(k, len(items), len(clients)):
            results[i] = await call(clients[k], items[i])

    await asyncio.gather(*(worker(k) for k in range(len(clients))))
    return results


async def sync_point(bench: Bench, out: Outcome, rooms: int) -> None:
    """A user in ``rooms`` rooms: first initial /sync, then incremental /syncs after one message."""
    owner = await bench.user()
    writers = [bench.client(owner) for _ in range(SETUP_CONCURRENCY)]
    room_ids = await _split(writers, list(range(rooms)), lambda c, _: public_room(c))
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


async def room_point(bench: Bench, out: Outcome, members: int) -> None:
    """A public room of ``members`` members: send, send-to-receive, user directory search among them."""
    owner, reader = await bench.users(2)
    room_id = await public_room(owner)
    await reader.join(room_id)
    await bounded(SETUP_CONCURRENCY, [bench.member(room_id) for _ in range(members - 2)])
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
    for _ in range(5):
        await out.timed("search", owner.search_users(term))
    out.add("send latency", "ms", LOWER, statistics.median(out.samples["send"]))
    out.add("send-to-receive", "ms", LOWER, statistics.median(out.samples["delivery"]))
    out.add("user directory search", "ms", LOWER, statistics.median(out.samples["search"]))


async def _finds(client: MatrixClient, term: str, user_id: str) -> bool:
    results = (await client.search_users(term)).json.get("results", [])
    return any(r.get("user_id") == user_id for r in results)


async def messages_point(bench: Bench, out: Outcome, history: int) -> None:
    """A room with ``history`` messages, paged back :data:`PAGE` at a time to its creation."""
    owner = await bench.user()
    room_id = await public_room(owner)
    writers = [bench.client(owner) for _ in range(SETUP_CONCURRENCY)]
    await _split(writers, list(range(history)), lambda c, i: c.send_text(room_id, f"history {i}"))
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
    """Register another user on this connection (no access token: /register refuses one)."""
    client.access_token = None
    await client.register(name, PASSWORD)


async def directory_point(bench: Bench, out: Outcome, users: int) -> None:
    """``users`` users on the server (registered in bulk, in no room): user directory search for one of them,
    and for the word they all share."""
    searcher = await bench.user()
    shared = f"{bench.prefix}dir"
    names = [f"{shared}-{i}" for i in range(users)]
    registrars = [bench.client() for _ in range(BULK_CONCURRENCY)]
    await _split(registrars, names, lambda c, name: _register_again(c, name))
    target = names[users // 2]
    target_id = f"@{target}:{bench.server.server_name}"
    deadline = time.monotonic() + DIRECTORY_WAIT_S
    while not await _finds(searcher, target, target_id):  # Synapse adds new users in the background
        if time.monotonic() > deadline:
            out.fail(f"the user directory never listed {target_id}")
            return
        await asyncio.sleep(0.2)
    for _ in range(5):
        reply = await out.timed("one", searcher.search_users(target))
        if reply is not None and not any(r.get("user_id") == target_id for r in reply.json.get("results", [])):
            out.fail(f"a search for {target} did not find {target_id}")
    for _ in range(5):
        reply = await out.timed("shared", searcher.search_users(shared))
        if reply is not None and len(reply.json.get("results", [])) != min(10, users):
            out.fail(f"a search for {shared} found {len(reply.json.get('results', []))} of {users} users")
    if out.errors:
        return
    out.add("search for one user", "ms", LOWER, statistics.median(out.samples["one"]))
    out.add("search for a shared word", "ms", LOWER, statistics.median(out.samples["shared"]))


POINTS = {"sync": sync_point, "room": room_point, "messages": messages_point, "directory": directory_point}


async def _point(curve: str, server: servers.RunningServer, size: int) -> Outcome:
    out = Outcome()
    bench = Bench(server, f"{curve}{size}")
    servers.reset_peak_rss(server.pid)
    try:
        await POINTS[curve](bench, out, size)
    except Exception as e:  # a broken point is an error of that point, never a crash of the run
        out.fail(f"{type(e).__name__}: {e}")
    finally:
        bench.close()
    if server.process.poll() is None:
        out.add("peak RSS", "MB", LOWER, servers.peak_rss_mb(server.pid))
    else:
        out.fail(f"server exited with {server.process.returncode}")
    return out


def run(labels: list[str], database: str, sizes: dict[str, list[int]]) -> dict:
    """{curve: {server: {size: Outcome}}}, each server kind started once for all its points."""
    results: dict = {curve: {label: {} for label in labels} for curve in sizes}
    for label in labels:
        with servers.running(label, database, config=GROWTH_CONFIG) as server:
            for curve, points in sizes.items():
                for size in points:
                    started = time.monotonic()
                    out = asyncio.run(_point(curve, server, size))
                    results[curve][label][size] = out
                    status = f"{out.errors} errors ({out.first_error})" if out.errors else "ok"
                    print(f"  {label} {curve} {size}: {time.monotonic() - started:.1f}s, {status}",
                          file=sys.stderr, flush=True)
    return results


def table(results: dict) -> str:
    lines = ["| curve | size | figure | unit | " + " | ".join(next(iter(results.values()))) + " |",
             "|---|---|---|---|" + "---|" * len(next(iter(results.values())))]
    for curve, by_server in results.items():
        labels = list(by_server)
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
            ax.set_xlabel(X_LABELS[curve])
            ax.set_ylabel(unit)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend()
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
    p.add_argument("--plots", metavar="DIR", help="write growth-<curve>.png there")
    p.add_argument("--json", metavar="OUT", help="also write every figure to this file")
    p.add_argument("--from-json", metavar="IN", help="run nothing: print and plot what --json wrote")
    args = p.parse_args(argv)
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
    sizes = {c: chosen[c] or base[c] for c in args.curves.split(",")}
    labels = args.servers.split(",")
    started = time.monotonic()
    results = run(labels, args.database, sizes)
    print(table(results))
    title = f"{args.database}, {time.strftime('%Y-%m-%d')}"
    if args.plots:
        for path in plot(results, args.plots, title):
            print(f"wrote {path}")
    failed = [(c, lb, s) for c, by in results.items() for lb, pts in by.items() for s, o in pts.items() if o.errors]
    print(f"\nsizes {sizes}, database {args.database}, {time.monotonic() - started:.0f}s, "
          f"1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"database": args.database, "date": time.strftime('%Y-%m-%d'), "sizes": sizes, "results": {
                c: {lb: {str(s): {"errors": o.errors, "first_error": o.first_error,
                                  "figures": {f.label: v for f, v in o.values.items()}}
                         for s, o in pts.items()} for lb, pts in by.items()} for c, by in results.items()}},
                      f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

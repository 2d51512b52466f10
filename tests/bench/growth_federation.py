"""Growth curves over federation (issue 20): a room of N members with members on a second server,
Hexagone against Synapse, plotted to PNG.

    .venv/bin/python -m tests.bench.growth_federation [--quick] [--servers hexagone,synapse]
        [--database sqlite|postgresql] [--members 50,1000,10000] [--plots DIR] [--json OUT]

One federation pair per server kind (``servers.running_pair``: two servers of that kind, PAIR_CONFIG, fresh
databases), started once for all the sizes; for each size N, server A hosts a new public room of N local members
(registered and joined 8 at once), then:

- ``join`` (the federated join): a fresh user of server B joins the room through A: time of POST /join to its
  200, and until B's /members lists all N + 1 members; the CPU of A and of B over it, and their peak RSS.
- ``send`` (members on a second server): min(N / 10, 100) more users of B join (B is resident by then: B-local
  joins that it sends to A), then a member of A sends 20 messages (median send latency), and 10 more one at a
  time, each awaited in /sync by the user of B long-polling it (median send-to-receive over federation), and 10
  more awaited by a member of A (median local send-to-receive, for comparison); the CPU of A and of B per
  message and their peak RSS. Both long-poll with lazy-loaded members, their first /sync before the timing.

Both servers of a pair are idle (``Pair.settle``) before each measured part; VmHWM is reset at its start. Every
failed request or wrong answer (a member list short of a member, a message /sync never delivered) counts as an
error, and that part of the point shows FAILED, not a figure (a failed join fails the point's send part too).
``--quick``: tiny sizes, Hexagone only (the CI smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Callable

from tests.bench import servers
from tests.bench.client import MatrixClient
from tests.bench.growth import draw_panel, table
from tests.bench.workloads import (
    DELIVERY_TIMEOUT_S, FEDERATION_TIMEOUT_S, INFO, LOWER, Bench, Outcome, Pair, Receiver, bounded, members_listed,
    public_room, timed_federated_join)

SIZES = [50, 1000, 10000]
QUICK = [3, 8]
SETUP_CONCURRENCY = 8
SECOND_SERVER_SHARE, SECOND_SERVER_CAP = 10, 100  # users of B in the room: N / 10, at most 100
SENDS, DELIVERIES = 20, 10
# The long-polling members' filter, as clients of big rooms use: their first /sync (before the measured part) does
# not carry thousands of member events.
LAZY_MEMBERS = {"room": {"state": {"lazy_load_members": True}}}
PLOTTED = {  # curve -> the figures drawn (one PNG each, growth-federation-<curve>.png)
    "join": ["join (POST /join to 200)", "join until B lists every member", "server A CPU per join",
             "server B CPU per join", "server A peak RSS", "server B peak RSS"],
    "send": ["send latency", "send-to-receive on B", "send-to-receive on A", "server A CPU per msg",
             "server A peak RSS", "server B peak RSS"],
}
TITLES = {"join": "a user of B joins a room of A over federation",
          "send": "a room of A with members on B: sends at A"}


def second_server_users(members: int) -> int:
    """How many users of B join the room of ``members`` for the send part (the first joiner aside)."""
    return max(1, min(SECOND_SERVER_CAP, members // SECOND_SERVER_SHARE))


async def _deliveries(out: Outcome, series: str, sender: MatrixClient, receiver: Receiver, room_id: str) -> None:
    """``sender`` sends DELIVERIES messages one at a time, each awaited in ``receiver``'s /sync: the time from just
    before its PUT to the /sync answer carrying it, in ``out.samples[series]``."""
    for i in range(DELIVERIES):
        body = f"{series} {i}"
        arrival = receiver.expect(body)
        start = time.perf_counter()
        await out.timed(f"send {series}", sender.send_text(room_id, body))
        if not await receiver.arrived([body], DELIVERY_TIMEOUT_S):
            out.fail(f"{body!r} not delivered by /sync within {DELIVERY_TIMEOUT_S:.0f}s")
            return
        out.samples.setdefault(series, []).append((arrival.result() - start) * 1000)


def _peaks(pair: Pair, out: Outcome) -> None:
    """Each server's peak RSS since :func:`_reset_peaks`, or an error if it exited."""
    for side, bench in (("A", pair.a), ("B", pair.b)):
        if bench.server.process.poll() is None:
            out.add(f"server {side} peak RSS", "MB", LOWER, servers.peak_rss_mb(bench.server.pid))
        else:
            out.fail(f"server {side} exited with {bench.server.process.returncode}")


def _reset_peaks(pair: Pair) -> None:
    for bench in (pair.a, pair.b):
        servers.reset_peak_rss(bench.server.pid)


async def _b_member(pair: Pair, room_id: str) -> None:
    """A new user of B who joins ``room_id`` (B is in it already) and hangs up."""
    c = await pair.b.user()
    await c.join(room_id, via=(pair.a.server.server_name,), timeout_s=FEDERATION_TIMEOUT_S)
    c.close()


async def federated_join(pair: Pair, out: Outcome, members: int) -> tuple[str, MatrixClient, MatrixClient,
                                                                          MatrixClient] | None:
    """A room of ``members`` users of A, then a user of B joins it: the ``join`` figures. The room, its owner, a
    member of A and the joiner of B, or None when it failed."""
    owner, reader = await pair.a.users(2)
    room_id = await public_room(owner)
    await reader.join(room_id)
    await bounded(SETUP_CONCURRENCY, [pair.a.member(room_id) for _ in range(members - 2)])
    joiner = await pair.b.user()
    await pair.settle()
    _reset_peaks(pair)
    if not await timed_federated_join(pair, out, joiner, room_id, members + 1):
        return None
    return room_id, owner, reader, joiner


async def members_on_b(pair: Pair, out: Outcome, members: int, room_id: str, owner: MatrixClient,
                       reader: MatrixClient, joiner: MatrixClient) -> None:
    """More users of B join the room, then sends at A: the ``send`` figures."""
    extra = second_server_users(members)
    await bounded(SETUP_CONCURRENCY, [_b_member(pair, room_id) for _ in range(extra)])
    expected = members + 1 + extra
    listed = await members_listed(owner, room_id, expected, FEDERATION_TIMEOUT_S)
    if listed != expected:
        out.fail(f"A's /members lists {listed} joined members, expected {expected}")
        return
    on_b, on_a = Receiver(out, joiner, room_id, LAZY_MEMBERS), Receiver(out, reader, room_id, LAZY_MEMBERS)
    await on_b.start()
    await on_a.start()
    try:
        await pair.settle()
        _reset_peaks(pair)
        with pair.phase() as phase:
            for i in range(SENDS):
                await out.timed("send", owner.send_text(room_id, f"send {i}"))
            for receiver, series in ((on_b, "on B"), (on_a, "on A")):
                await _deliveries(out, series, owner, receiver, room_id)
    finally:
        on_b.stop()
        on_a.stop()
    if out.errors:
        return
    out.add("send latency", "ms", LOWER, statistics.median(out.samples["send"]))
    out.add("send-to-receive on B", "ms", LOWER, statistics.median(out.samples["on B"]))
    out.add("send-to-receive on A", "ms", LOWER, statistics.median(out.samples["on A"]))
    phase.report(out, "msg", SENDS + 2 * DELIVERIES)
    out.add("users of B in the room", "users", INFO, 1 + extra)


async def _point(a: servers.RunningServer, b: servers.RunningServer, members: int) -> dict[str, Outcome]:
    """Both parts of one size; a broken part is an error of that part, never a crash of the run."""
    join, send = Outcome(), Outcome()
    pair = Pair(Bench(a, f"fed{members}a"), Bench(b, f"fed{members}b"))
    try:
        try:
            joined = await federated_join(pair, join, members)
        except Exception as e:
            join.fail(f"{type(e).__name__}: {e}")
            joined = None
        _peaks(pair, join)
        if joined is None:
            send.fail(f"the federated join failed: {join.first_error}")
            return {"join": join, "send": send}
        try:
            await members_on_b(pair, send, members, *joined)
        except Exception as e:
            send.fail(f"{type(e).__name__}: {e}")
        _peaks(pair, send)
    finally:
        pair.a.close()
        pair.b.close()
    return {"join": join, "send": send}


def run(labels: list[str], database: str, sizes: list[int], after_point: Callable[[dict], None]) -> dict:
    """{curve: {server: {size: Outcome}}}, one pair of each server kind for all its sizes; ``after_point`` gets
    the results so far after each size (a long run leaves what it measured even if it is stopped)."""
    results: dict = {curve: {label: {} for label in labels} for curve in PLOTTED}
    for label in labels:
        with servers.running_pair(label, database) as (a, b):
            for size in sizes:
                started = time.monotonic()
                for curve, out in asyncio.run(_point(a, b, size)).items():
                    results[curve][label][size] = out
                    status = f"{out.errors} errors ({out.first_error})" if out.errors else "ok"
                    print(f"  {label} {curve} {size}: {status}", file=sys.stderr, flush=True)
                print(f"  {label} {size}: {time.monotonic() - started:.1f}s, load average "
                      f"{os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
                after_point(results)
    return results


def plot(results: dict, out_dir: str, title: str) -> list[str]:
    """``growth-federation-<curve>.png`` per curve: a panel per figure, a line per server; failed points left
    out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for curve, by_server in results.items():
        labels = PLOTTED[curve]
        columns = (len(labels) + 1) // 2
        fig, axes = plt.subplots(2, columns, figsize=(4.2 * columns, 7.2), squeeze=False)
        for ax, label in zip(axes.flat, labels):
            draw_panel(ax, by_server, label, "members of the room on A")
        fig.suptitle(f"{TITLES[curve]}: {title}")
        fig.tight_layout()
        path = os.path.join(out_dir, f"growth-federation-{curve}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def _saved(results: dict) -> dict:
    """The results as --json writes them: each figure with its unit and direction."""
    def point(out: Outcome) -> dict:
        return {"errors": out.errors, "first_error": out.first_error,
                "figures": {f.label: {"value": v, "unit": f.unit, "better": f.better} for f, v in out.values.items()}}

    return {curve: {label: {str(size): point(out) for size, out in points.items()}
                    for label, points in by_server.items()} for curve, by_server in results.items()}


def _outcomes(saved: dict) -> dict:
    """The results as --json wrote them, back into Outcomes."""
    results: dict = {}
    for curve, by_server in saved.items():
        for label, points in by_server.items():
            for size, point in points.items():
                out = Outcome(errors=point["errors"], first_error=point["first_error"])
                for figure, f in point["figures"].items():
                    out.add(figure, f["unit"], f["better"], f["value"])
                results.setdefault(curve, {}).setdefault(label, {})[int(size)] = out
    return results


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.growth_federation", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK}, Hexagone only: a smoke test")
    p.add_argument("--servers", default="hexagone,synapse", help="comma-separated, of: hexagone, synapse")
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--members", type=_sizes, help=f"members of A's room, one point each (default {SIZES})")
    p.add_argument("--plots", metavar="DIR", help="write growth-federation-<curve>.png there")
    p.add_argument("--json", metavar="OUT", help="also write every figure to this file")
    p.add_argument("--from-json", metavar="IN[,IN...]", help="run nothing: print and plot what --json wrote (several "
                   "files: their points together, a later file's point replacing an earlier one's)")
    args = p.parse_args(argv)
    if args.from_json:
        runs = []
        for path in args.from_json.split(","):
            with open(path) as f:
                runs.append(json.load(f))
        merged: dict = {}
        for saved in runs:
            for curve, by_server in saved["results"].items():
                for label, points in by_server.items():
                    merged.setdefault(curve, {}).setdefault(label, {}).update(points)
        results = _outcomes(merged)
        print(table(results))
        dates = ", ".join(sorted({saved["date"] for saved in runs}))
        for path in plot(results, args.plots or ".", f"{runs[0]['database']}, {dates}"):
            print(f"wrote {path}")
        return 0
    sizes = args.members or (QUICK if args.quick else SIZES)
    labels = ["hexagone"] if args.quick else args.servers.split(",")
    started, load_before = time.monotonic(), os.getloadavg()[0]
    date = time.strftime("%Y-%m-%d")

    def save(results: dict, complete: bool = False) -> None:
        """--json and --plots with the results so far (and, before the end, the table on stderr)."""
        if not complete:
            print(table(results), file=sys.stderr, flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"database": args.database, "date": date, "sizes": sizes, "complete": complete,
                           "load_average": [load_before, os.getloadavg()[0]], "results": _saved(results)}, f,
                          indent=1)
        if args.plots:
            for path in plot(results, args.plots, f"{args.database}, {date}"):
                if complete:
                    print(f"wrote {path}")

    results = run(labels, args.database, sizes, save)
    print(table(results))
    save(results, complete=True)
    print(f"\nmembers {sizes}, database {args.database}, {time.monotonic() - started:.0f}s, 1-minute load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    failed = any(out.errors for by in results.values() for pts in by.values() for out in pts.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the client-server benchmarks against Hexagone and Synapse and print one table.

    .venv/bin/python -m tests.bench.run [--workloads send,delivery,...,federation_join] [--repetitions N] [--json OUT] [--servers hexagone,synapse] [--database sqlite|postgresql]
        [--<workload>-<size> N ...]

Each repetition starts every server afresh, one after the other (H, S, H, S…),
so machine noise hits both alike, and runs the selected workloads on it in
order; the federation workloads run on a fresh pair of servers of that kind.
See README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
import time

from tests.bench import servers
from tests.bench.report import Record, failures, render, summarize
from tests.bench.workloads import LOWER, WORKLOADS, Outcome, Workload, run_workload

IDLE_SETTLE_S = 2.0  # let start-up work finish before reading the idle RSS
SERVER_ROW = "server"


def _flag(workload: str, size: str) -> str:
    return f"--{workload}-{size}".replace("_", "-")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated, in order (default: all: {','.join(WORKLOADS)})")
    p.add_argument("--repetitions", type=int, default=3, help="fresh servers per side (default 3)")
    p.add_argument("--servers", default="hexagone,synapse", help="comma-separated, of: hexagone, synapse")
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                   help="the same kind for every server (postgresql: 127.0.0.1:5432, a fresh database each)")
    p.add_argument("--json", metavar="OUT", help="also write every figure of every run to this file")
    p.add_argument("--profile", metavar="DIR", help="sample each server with py-spy over every measured phase, "
                   "one raw (collapsed-stack) file per workload, server and repetition in DIR")
    for w in WORKLOADS.values():
        group = p.add_argument_group(f"{w.name}: {w.doc.rstrip('.')}")
        for size, default in w.sizes.items():
            group.add_argument(_flag(w.name, size), dest=f"{w.name}.{size}", type=int, default=default,
                               metavar="N", help=f"default {default}")
    args = p.parse_args(argv)
    args.workloads = [_known(p, name, WORKLOADS, "workload") for name in args.workloads.split(",")]
    args.servers = [_known(p, name, servers.PREPARERS, "server") for name in args.servers.split(",")]
    if args.repetitions < 1:
        p.error("--repetitions must be at least 1")
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    return args


def _known(p: argparse.ArgumentParser, name: str, choices, what: str) -> str:
    if name not in choices:
        p.error(f"unknown {what} {name!r}; choose from {', '.join(choices)}")
    return name


def sizes_of(args: argparse.Namespace, w: Workload) -> dict[str, int]:
    return {size: getattr(args, f"{w.name}.{size}") for size in w.sizes}


def _server_outcome(server: servers.RunningServer) -> Outcome:
    out = Outcome()
    out.add("start-up time", "s", LOWER, server.startup_s)
    time.sleep(IDLE_SETTLE_S)
    out.add("idle RSS after start", "MB", LOWER, servers.rss_mb(server.pid))
    return out


def _failed(message: str) -> Outcome:
    out = Outcome()
    out.fail(message)
    return out


def _run_workloads(label: str, repetition: int, args: argparse.Namespace, names: list[str],
                   running: list[servers.RunningServer], records: list[Record]) -> None:
    for name in names:
        w = WORKLOADS[name]
        started = time.monotonic()
        profile = os.path.join(args.profile, f"{name}-{label}-r{repetition}") if args.profile else None
        outcome = asyncio.run(run_workload(w, running, sizes_of(args, w), profile))
        status = f"{outcome.errors} errors" if outcome.errors else "ok"
        _progress(f"  {label} {name}: {time.monotonic() - started:.1f}s, {status}")
        records.append(Record(label, repetition, name, outcome))


def run_servers(label: str, repetition: int, args: argparse.Namespace, names: list[str]) -> list[Record]:
    """Start ``label`` afresh (one server, or a federating pair for federation workloads) and run ``names``."""
    records: list[Record] = []
    pair = WORKLOADS[names[0]].servers == 2 if names else False
    rows = names if pair else [SERVER_ROW, *names]
    try:
        if pair:
            with servers.running_pair(label, args.database) as (a, b):
                _run_workloads(label, repetition, args, names, [a, b], records)
        else:
            with servers.running(label, args.database) as server:
                records.append(Record(label, repetition, SERVER_ROW, _server_outcome(server)))
                _run_workloads(label, repetition, args, names, [server], records)
    except servers.ServerError as e:
        _progress(f"  {label}: {e}")
        done = {r.workload for r in records}
        records += [Record(label, repetition, name, _failed(f"server: {e}")) for name in rows if name not in done]
    return records


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_before = time.monotonic(), os.getloadavg()[0]
    records: list[Record] = []
    single = [n for n in args.workloads if WORKLOADS[n].servers == 1]
    paired = [n for n in args.workloads if WORKLOADS[n].servers == 2]
    for repetition in range(1, args.repetitions + 1):
        for label in args.servers:
            if single or not paired:
                _progress(f"repetition {repetition}/{args.repetitions}: {label} ({args.database})")
                records += run_servers(label, repetition, args, single)
            if paired:
                _progress(f"repetition {repetition}/{args.repetitions}: {label} pair ({args.database})")
                records += run_servers(label, repetition, args, paired)
    rows = summarize(records, args.servers)
    print(render(rows, args.servers))
    problems = failures(records)
    for line in problems:
        print("FAILED: " + line)
    load = (load_before, os.getloadavg()[0])
    print(f"\n{args.repetitions} repetitions, database {args.database}, bcrypt rounds {servers.BCRYPT_ROUNDS} "
          f"({servers.PAIR_BCRYPT_ROUNDS} on both kinds of federation pair), "
          f"{time.monotonic() - started:.0f}s in all, 1-minute load average {load[0]:.1f} before and "
          f"{load[1]:.1f} after on {os.cpu_count()} CPUs; 'neither' figures are context, not scores.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                       "servers": args.servers, "database": args.database, "repetitions": args.repetitions,
                       "bcrypt_rounds": servers.BCRYPT_ROUNDS, "pair_bcrypt_rounds": servers.PAIR_BCRYPT_ROUNDS,
                       "load_average": load,
                       "sizes": {name: sizes_of(args, WORKLOADS[name]) for name in args.workloads},
                       "summary": [row.to_json(args.servers) for row in rows],
                       "runs": [r.to_json() for r in records]}, f, indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

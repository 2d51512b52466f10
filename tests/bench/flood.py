"""Floods: one user, or one remote server, sending as fast as it can while other users use the server.

A benchmark-style script, not a timed test. Each scenario starts fresh
Hexagone servers on 127.0.0.1 (``servers.running``), then measures the other
users ("victims": each sends a message into a room of its own, then long-polls
/sync until it sees it, paced under the message rate limit) first alone
("idle"), then while the flooder sends messages back to back on several
connections, ignoring every ``retry_after_ms`` ("flood"). It reports the
victims' send and send-to-/sync round-trip p50/p99 in both phases (goal: p99
under flood within 2x of idle) and what the flooder got: accepted sends and
``M_LIMIT_EXCEEDED`` answers.

- ``local``: the flooder is a user of the same server, under the server's real ``rc_message`` limit.
- ``federation``: the flooder is a user of a second Hexagone (B, its own limits raised) flooding a room that
  the victims' server (A, real ``rc_message`` and ``rc_federation``) hosts; B forwards every message to A.

Bounded in time (``--seconds`` per phase) and in flood requests (``--max-flood``)::

    .venv/bin/python -m tests.bench.flood --scenarios local,federation --seconds 10 --database sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.bench import servers
from tests.bench.client import MatrixClient, RequestFailed, quote
from tests.bench.workloads import Bench, percentile, public_room

SCENARIOS = ("local", "federation")
GOAL_RATIO = 2.0
LONG_POLL_MS = 10_000
# Synapse's default rc_federation: what A enforces on B in the federation scenario.
REAL_RC_FEDERATION = {"window_size": 1000, "sleep_limit": 10, "sleep_delay": 500, "reject_limit": 50,
                      "concurrent": 3}


@dataclass
class Phase:
    """The victims' latencies in one phase, and what the flooder got (flood phase only)."""

    send_ms: list[float] = field(default_factory=list)
    round_trip_ms: list[float] = field(default_factory=list)
    victim_errors: list[str] = field(default_factory=list)
    flood: Counter = field(default_factory=Counter)
    client_cpu_pct: float = 0.0  # this script's own CPU (victims and flooder) over the phase: it shares the cores

    def figures(self) -> dict:
        out = {"round_trips": len(self.round_trip_ms), "victim_errors": len(self.victim_errors),
               "first_victim_error": self.victim_errors[0] if self.victim_errors else None,
               "client_cpu_pct": round(self.client_cpu_pct, 1)}
        for name, values in (("send", self.send_ms), ("round_trip", self.round_trip_ms)):
            for p in (50, 99):
                out[f"{name}_p{p}_ms"] = round(percentile(values, p), 2) if values else None
        out["flood"] = dict(self.flood)
        return out


async def victim(client: MatrixClient, room_id: str, until: float, interval_s: float, phase: Phase) -> None:
    """Send, then long-poll /sync until the message shows; once per ``interval_s`` until ``until``."""
    sync_filter = {"room": {"rooms": [room_id], "timeline": {"limit": 20}}, "presence": {"types": []}}
    since = (await client.sync(sync_filter=sync_filter)).json["next_batch"]
    while time.perf_counter() < until:
        start = time.perf_counter()
        try:
            event_id = await client.send_text(room_id, f"victim {start}")
            sent = time.perf_counter()
            seen = False
            while not seen:
                reply = (await client.sync(since, LONG_POLL_MS, sync_filter)).json
                since = reply["next_batch"]
                timeline = reply.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
                seen = any(e.get("event_id") == event_id for e in timeline.get("events", []))
        except RequestFailed as e:
            phase.victim_errors.append(str(e))
            await asyncio.sleep(interval_s)
            continue
        done = time.perf_counter()
        phase.send_ms.append((sent - start) * 1000)
        phase.round_trip_ms.append((done - start) * 1000)
        await asyncio.sleep(max(0.0, interval_s - (done - start)))


async def flooder(clients: list[MatrixClient], room_id: str, until: float, max_requests: int,
                  counts: Counter) -> None:
    """Every client sends back to back, ignoring retry_after_ms, until ``until`` or ``max_requests`` in all."""
    async def one(client: MatrixClient) -> None:
        while time.perf_counter() < until and sum(counts.values()) < max_requests:
            try:
                await client.send_text(room_id, "flood")
                counts["accepted"] += 1
            except RequestFailed as e:
                limited = e.status == 429 and "M_LIMIT_EXCEEDED" in str(e)
                counts["M_LIMIT_EXCEEDED" if limited else f"error {e.status}"] += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in clients))
    counts["seconds flooding"] = round(time.perf_counter() - start, 1)  # less than the phase if capped


async def measure(victims: list[tuple[MatrixClient, str]], flood: tuple[list[MatrixClient], str] | None,
                  args: argparse.Namespace) -> Phase:
    phase = Phase()
    started, cpu = time.perf_counter(), time.process_time()
    until = started + args.seconds
    tasks = [victim(c, room, until, args.interval_ms / 1000, phase) for c, room in victims]
    if flood is not None:
        tasks.append(flooder(flood[0], flood[1], until, args.max_flood, phase.flood))
    await asyncio.gather(*tasks)
    phase.client_cpu_pct = 100 * (time.process_time() - cpu) / (time.perf_counter() - started)
    return phase


async def setup_victims(bench: Bench, count: int) -> list[tuple[MatrixClient, str]]:
    users = await bench.users(count)
    return [(u, await u.create_room(preset="private_chat")) for u in users]


async def local_scenario(server: servers.RunningServer, args: argparse.Namespace) -> dict[str, Phase]:
    bench = Bench(server, "flood")
    try:
        victims = await setup_victims(bench, args.victims)
        idle = await measure(victims, None, args)
        flood_user = await bench.user()
        flood_room = await public_room(flood_user)
        clients = [bench.client(flood_user) for _ in range(args.flood_connections)]
        return {"idle": idle, "flood": await measure(victims, (clients, flood_room), args)}
    finally:
        bench.close()


async def federation_scenario(a: servers.RunningServer, b: servers.RunningServer,
                              args: argparse.Namespace) -> dict[str, Phase]:
    bench_a, bench_b = Bench(a, "victim"), Bench(b, "remote")
    try:
        victims = await setup_victims(bench_a, args.victims)
        idle = await measure(victims, None, args)
        host, flood_user = await bench_a.user(), await bench_b.user()
        room_id = await public_room(host)
        await flood_user.join(room_id, via=(a.server_name,))
        clients = [bench_b.client(flood_user) for _ in range(args.flood_connections)]
        flood = await measure(victims, (clients, room_id), args)
        flood.flood["on A after the flood phase"] = await count_messages(host, room_id)
        return {"idle": idle, "flood": flood}
    finally:
        bench_a.close()
        bench_b.close()


async def count_messages(client: MatrixClient, room_id: str) -> int:
    """How many m.room.message events ``client``'s server has in the room (paginating /messages)."""
    count, token = 0, None
    while True:
        query = "dir=b&limit=1000" + (f"&from={token}" if token else "")
        page = (await client.call("GET", f"/rooms/{quote(room_id)}/messages?{query}")).json
        count += sum(1 for e in page.get("chunk", []) if e.get("type") == "m.room.message")
        token = page.get("end")
        if not page.get("chunk") or not token:
            return count


def measured_config(args: argparse.Namespace) -> dict:
    """The measured server's real message limit; a low bcrypt cost, as registering is not what is measured."""
    return {"rc_message": {"per_second": args.rc_message_per_second, "burst_count": args.rc_message_burst},
            "bcrypt_rounds": servers.PAIR_BCRYPT_ROUNDS}


def run_scenario(name: str, args: argparse.Namespace) -> dict[str, Phase]:
    if name == "local":
        with servers.running("hexagone", args.database, config=measured_config(args)) as server:
            return asyncio.run(local_scenario(server, args))
    victim_side = measured_config(args) | {"rc_federation": REAL_RC_FEDERATION}
    with servers.running_pair("hexagone", args.database, configs=(victim_side, {})) as (a, b):
        return asyncio.run(federation_scenario(a, b, args))


def report(results: dict[str, dict[str, Phase]]) -> tuple[str, dict]:
    lines = ["| scenario | phase | victim round trips | send p50 / p99 (ms) | send→/sync p50 / p99 (ms) "
             "| victim errors | flooder | script CPU |", "|---|---|---|---|---|---|---|---|"]
    data: dict = {}
    verdicts = []
    for scenario, phases in results.items():
        data[scenario] = {name: phase.figures() for name, phase in phases.items()}
        for name, f in data[scenario].items():
            flood = ", ".join(f"{k}: {v}" for k, v in f["flood"].items()) or "—"
            lines.append(f"| {scenario} | {name} | {f['round_trips']} | {f['send_p50_ms']} / {f['send_p99_ms']} "
                         f"| {f['round_trip_p50_ms']} / {f['round_trip_p99_ms']} | {f['victim_errors']} | {flood} "
                         f"| {f['client_cpu_pct']}% |")
        idle, flood = data[scenario]["idle"]["round_trip_p99_ms"], data[scenario]["flood"]["round_trip_p99_ms"]
        ratio = flood / idle if idle and flood else None
        data[scenario]["p99_ratio"] = ratio
        verdict = "no figure" if ratio is None else f"{ratio:.2f}x ({'within' if ratio <= GOAL_RATIO else 'over'} " \
                                                    f"the {GOAL_RATIO:g}x goal)"
        verdicts.append(f"{scenario}: the victims' send→/sync p99 under flood / idle = {verdict}")
    return "\n".join(lines + [""] + verdicts), data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench.flood", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: local, federation")
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each phase (idle, then flood)")
    p.add_argument("--victims", type=int, default=4, help="users measured while the flood runs")
    p.add_argument("--interval-ms", type=int, default=250, help="each victim's pace: one round trip per interval")
    p.add_argument("--flood-connections", type=int, default=8, help="the flooder's parallel connections")
    p.add_argument("--max-flood", type=int, default=100000, help="at most this many flood requests per scenario")
    p.add_argument("--rc-message-per-second", type=float, default=10.0, help="rc_message of the measured server")
    p.add_argument("--rc-message-burst", type=int, default=20)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    args.scenario_list = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenario_list) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))} (known: {', '.join(SCENARIOS)})")
    if 1000 / args.interval_ms > args.rc_message_per_second:
        p.error("--interval-ms too short: each victim would exceed --rc-message-per-second itself")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = {}
    for scenario in args.scenario_list:
        print(f"flood: {scenario} scenario ({args.seconds:g}s idle, then {args.seconds:g}s flood)...",
              file=sys.stderr, flush=True)
        results[scenario] = run_scenario(scenario, args)
    table, data = report(results)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arguments": {k: v for k, v in vars(args).items() if k != "json"}, "results": data}, f, indent=1)
    errors = sum(phase["victim_errors"] for scenario in data.values() for name, phase in scenario.items()
                 if name in ("idle", "flood"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

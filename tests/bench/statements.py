"""Database statements per request of Hexagone (deterministic, unlike timings): register, send, join, initial sync.

    .venv/bin/python -m tests.bench.statements [--database postgresql] [--rooms 20] [--history 10]

Starts one Hexagone at log level DEBUG (its HTTP layer then logs, after each request, how many
transactions and statements the storage layer ran meanwhile, see ``homeserver/http/site.py``), makes
the requests one at a time so no other request's work is counted, and prints the medians (for the initial sync, the first one: the next ones are its
cached answer). On PostgreSQL each transaction also costs a BEGIN and a COMMIT round trip, except the work that is
one SELECT, run in autocommit, and the room-event writes, one pipeline (BEGIN, statements and COMMIT sent at
once: one round trip, plus one per result read on the way; ``homeserver/storage/database.py``): round trips are
what the storage layer counted, statements the sum of its transactions' statements.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics

from tests.bench import servers
from tests.bench.workloads import PASSWORD, ROOM_VERSION

_TXN = re.compile(r"Transaction (\S+): (\d+) statements, \d+ attempts(, autocommit)?(?:, ([\d.]+) ms)?")
_LINE = re.compile(r"(GET|PUT|POST) (\S+): (\d+) database transactions, (\d+) round trips")
KINDS = {"register": re.compile(r"POST /_matrix/client/v3/register$"),
         "send": re.compile(r"PUT /_matrix/client/v3/rooms/[^/]+/send/"),
         "join": re.compile(r"POST /_matrix/client/v3/join/"),
         "initial sync": re.compile(r"GET /_matrix/client/v3/sync$")}


async def _requests(base_url: str, rooms: int, history: int) -> None:
    from tests.bench.client import MatrixClient

    alice, bob = MatrixClient(base_url), MatrixClient(base_url)
    try:
        await alice.register("alice", PASSWORD)
        await bob.register("bob", PASSWORD)
        for _ in range(rooms):
            room_id = await alice.create_room(preset="public_chat", room_version=ROOM_VERSION)
            await bob.join(room_id)
            for i in range(history):
                await alice.send_text(room_id, f"history {i}")
        for _ in range(3):
            await bob.sync()
    finally:
        alice.close()
        bob.close()


def _counts(log_path: str) -> tuple[dict[str, list[tuple[int, int, int]]], dict[str, list[str]]]:
    """Per kind of request: (transactions, statements, round trips) of each, and the transactions of the last
    one (name and statements, as the storage layer logs them at DEBUG; ``a``: in autocommit)."""
    found: dict[str, list[tuple[int, int, int]]] = {kind: [] for kind in KINDS}
    names: dict[str, list[str]] = {}
    since_last: list[str] = []
    statements = 0
    with open(log_path, errors="replace") as f:
        for line in f:
            t = _TXN.search(line)
            if t is not None:
                since_last.append(f"{t.group(1)} ({t.group(2)}{', a' if t.group(3) else ''}"
                                  f"{f', {t.group(4)} ms' if t.group(4) else ''})")
                statements += int(t.group(2))
            m = _LINE.search(line)
            if m is None:
                continue
            for kind, pattern in KINDS.items():
                if pattern.search(f"{m.group(1)} {m.group(2).split('?')[0]}"):
                    found[kind].append((int(m.group(3)), statements, int(m.group(4))))
                    if kind != "initial sync" or kind not in names:  # the first initial sync: the one measured
                        names[kind] = since_last
            since_last = []
            statements = 0
    return found, names


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench.statements", description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    p.add_argument("--rooms", type=int, default=20, help="rooms bob joins (and initial-syncs), default 20")
    p.add_argument("--history", type=int, default=10, help="messages sent in each room, default 10")
    p.add_argument("--verbose", action="store_true", help="also the transactions (statements) of the last of each")
    args = p.parse_args(argv)
    servers.LOG_LEVEL = "DEBUG"
    with servers.running("hexagone", args.database) as server:
        asyncio.run(_requests(server.base_url, args.rooms, args.history))
        counts, names = _counts(os.path.join(server.workdir, "server.log"))
    print(f"| request ({args.database}, {args.rooms} rooms x {args.history} messages) | requests | "
          f"transactions | statements | round trips |")
    print("|---|---|---|---|---|")
    for kind, seen in counts.items():
        if not seen:
            print(f"| {kind} | 0 | | | |")
            continue
        if kind == "initial sync":  # the first is built from the database, the others are its cached answer
            seen = seen[:1]
        txns = statistics.median(t for t, _, _ in seen)
        stmts = statistics.median(s for _, s, _ in seen)
        trips = statistics.median(r for _, _, r in seen)
        print(f"| {kind} | {len(seen)} | {txns:g} | {stmts:g} | {trips:g} |")
    if args.verbose:
        for kind, txns in names.items():
            print(f"{kind}, {'the first' if kind == 'initial sync' else 'the last'}: {', '.join(txns)}")


if __name__ == "__main__":
    main()

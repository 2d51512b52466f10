"""Time federation between real servers on this machine: one federated join, and N messages crossing.

    .venv/bin/python scripts/federation_timing.py [--messages 1000] [--joins 3]

Pairs: Hexagone→Hexagone, Hexagone→Synapse and Synapse→Hexagone (the room's host first). Servers
federate over TLS on 127.0.0.1 exactly as in the integration tests (tests/integration/federation.py).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.integration.federation import start_fed_server  # noqa: E402
from tests.integration.fedtls import CertificateAuthority  # noqa: E402
from tests.integration.harness import ServerProcess, unique  # noqa: E402
from tests.integration.synapse import SynapsePeer, SynapseProcess  # noqa: E402


def hexagone(base: str, ca: CertificateAuthority):
    def factory(start: bool = True, **overrides):
        server = ServerProcess(tempfile.mkdtemp(dir=base), **overrides)
        return server.start() if start else server
    return start_fed_server(factory, ca, allow_public_rooms_over_federation=True)


def time_join(host, guest) -> float:
    owner, visitor = host.process.register(), guest.process.register()
    alias = unique("join")
    owner.create_room(preset="public_chat", room_alias_name=alias)
    start = time.monotonic()
    visitor.join(f"#{alias}:{host.name}")
    return time.monotonic() - start


def time_messages(host, guest, count: int) -> float:
    """First send to the guest's /sync showing a final marker sent after all of them (4 concurrent senders).

    The host sends to each server in order, so the marker arrives last; the guest's history is then
    checked with /messages to hold every message."""
    owner, visitor = host.process.register(), guest.process.register()
    alias = unique("flow")
    room_id = owner.create_room(preset="public_chat", room_alias_name=alias)
    visitor.join(f"#{alias}:{host.name}")
    _, since = visitor.sync_until(lambda r: r.get("next_batch"))
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: owner.send(room_id, f"m{i}"), range(count)))
    owner.send(room_id, "marker")

    def arrived(resp):
        room = resp.get("rooms", {}).get("join", {}).get(room_id, {})
        return any(e["content"].get("body") == "marker" for e in room.get("timeline", {}).get("events", [])
                   if e.get("type") == "m.room.message")

    visitor.sync_until(arrived, since, deadline_s=900)
    elapsed = time.monotonic() - start
    bodies, token = set(), None
    while True:
        page = visitor.messages(room_id, dir="b", limit=500, **({"from": token} if token else {}))
        bodies.update(e["content"].get("body") for e in page["chunk"] if e.get("type") == "m.room.message")
        token = page.get("end")
        if not token or not page["chunk"]:
            break
    missing = count - len({b for b in bodies if b and b.startswith("m") and b[1:].isdigit()})
    if missing:
        print(f"  ({missing} of {count} messages missing from the guest's history{shed_by(guest)})", flush=True)
    return elapsed


def shed_by(guest) -> str:
    """Synapse keeps at most ~100 received events per room waiting to be processed and drops the
    older ones ("Pruning N events in room ... from federation queue"), leaving them to backfill."""
    log_path = getattr(guest.process, "log_path", None)
    if not log_path:
        return ""
    with open(log_path, errors="replace") as log:
        pruned = sum(int(m.group(1)) for m in re.finditer(r"Pruning (\d+) events in room", log.read()))
    return f"; Synapse pruned {pruned} events from its inbound federation queue" if pruned else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--joins", type=int, default=3)
    parser.add_argument("--pairs", nargs="+", choices=["HH", "HS", "SH"], default=["HH", "HS", "SH"],
                        help="which pairs to time (H: Hexagone, S: Synapse; the host first)")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="fedtiming-")
    print(f"servers' data and logs: {base}")
    ca = CertificateAuthority(os.path.join(base, "ca"))
    first, second = hexagone(base, ca), hexagone(base, ca)
    synapse = SynapsePeer(SynapseProcess(tempfile.mkdtemp(dir=base), ca).start())
    pairs = {"HH": ("Hexagone→Hexagone", first, second), "HS": ("Hexagone→Synapse", first, synapse),
             "SH": ("Synapse→Hexagone", synapse, first)}
    try:
        print(f"{'pair (host→joiner)':22} {'join median (s)':>16} {f'{args.messages} msgs (s)':>14} {'msg/s':>8}")
        for label, host, guest in (pairs[p] for p in args.pairs):
            joins = [time_join(host, guest) for _ in range(args.joins)]
            flow = time_messages(host, guest, args.messages)
            print(f"{label:22} {statistics.median(joins):16.3f} {flow:14.2f} {args.messages / flow:8.1f}",
                  flush=True)
    finally:
        for server in (first, second, synapse):
            server.process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark for homeserver.events.state_res.resolve_state.

Builds a room with ~10,000 state events, forks it into two branches whose state
differs in 1,000 conflicted events (power levels, kicks vs bans, profile changes,
custom state), then times ``resolve_state`` and counts the events it touches.

    python tests/bench/bench_state_res.py [room_version ...]   (default: 12 10)
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from nacl.signing import SigningKey  # noqa: E402

from homeserver.events.auth_rules import auth_types_for_event  # noqa: E402
from homeserver.events.builder import build_event, room_id_from_create_event  # noqa: E402
from homeserver.events.room_versions import get_room_version  # noqa: E402
from homeserver.events.state_res import resolve_state  # noqa: E402

SERVER = "bench.test"
ALICE = f"@alice:{SERVER}"
N_MEMBERS = 9_000
N_CUSTOM = 996  # plus create, alice join, power levels, join rules -> 10,000 state events


class Builder:
    def __init__(self, version: str) -> None:
        self.rv = get_room_version(version)
        self.key = SigningKey(b"\x01" * 32)
        self.key.version = "1"  # type: ignore[attr-defined]
        self.events: dict[str, dict] = {}
        self.ts = 1_000_000
        self.room_id: str | None = None if self.rv.room_id_from_create_event else f"!bench:{SERVER}"

    def add(self, state: dict, prev: list[str], sender: str, etype: str, content: dict,
            state_key: str | None) -> str:
        proto = {"type": etype, "sender": sender, "content": content, "state_key": state_key}
        auth = sorted(state[k] for k in auth_types_for_event(self.rv, proto) if k in state)
        self.ts += 1
        depth = max((self.events[p]["depth"] for p in prev), default=0) + 1
        room_id = None if (etype == "m.room.create" and self.rv.room_id_from_create_event) else self.room_id
        ev = build_event(self.rv, server_name=SERVER, signing_key=self.key, room_id=room_id, sender=sender,
                         event_type=etype, content=content, state_key=state_key, prev_events=prev,
                         auth_events=auth, depth=depth, origin_server_ts=self.ts)
        eid = ev["event_id"]
        self.events[eid] = ev
        if state_key is not None:
            state[(etype, state_key)] = eid
        return eid


def build_room(version: str):
    b = Builder(version)
    state: dict = {}
    head = b.add(state, [], ALICE, "m.room.create", {"room_version": version}, "")
    if b.room_id is None:
        b.room_id = room_id_from_create_event(head)
    head = b.add(state, [head], ALICE, "m.room.member", {"membership": "join"}, ALICE)
    pl_users = {} if b.rv.creators_infinite_power else {ALICE: 100}
    head = b.add(state, [head], ALICE, "m.room.power_levels", {"users": pl_users}, "")
    head = b.add(state, [head], ALICE, "m.room.join_rules", {"join_rule": "public"}, "")
    users = [f"@u{i}:{SERVER}" for i in range(N_MEMBERS)]
    for u in users:
        head = b.add(state, [head], u, "m.room.member", {"membership": "join"}, u)
    for i in range(N_CUSTOM):
        head = b.add(state, [head], ALICE, "m.bench.state", {"i": i}, f"s{i}")
    base_state_size = len(state)

    def branch(tag: str, ts_offset: int, kick_membership: str) -> tuple[str, dict]:
        st = dict(state)
        h = head
        b.ts += ts_offset
        h = b.add(st, [h], ALICE, "m.room.power_levels",
                  {"users": {**pl_users, users[0]: 50 if tag == "A" else 40}}, "")
        for u in users[1:301]:
            h = b.add(st, [h], u, "m.room.member", {"membership": "join", "displayname": f"{u} {tag}"}, u)
        for u in users[301:401]:
            h = b.add(st, [h], ALICE, "m.room.member", {"membership": kick_membership}, u)
        for i in range(99):
            h = b.add(st, [h], ALICE, "m.bench.state", {"i": i, "branch": tag}, f"s{i}")
        return h, st

    head_a, state_a = branch("A", 0, "leave")
    head_b, state_b = branch("B", 7, "ban")
    return b, base_state_size, state_a, state_b


def run(version: str) -> None:
    t0 = time.perf_counter()
    b, base_size, state_a, state_b = build_room(version)
    build_s = time.perf_counter() - t0
    conflicted = {eid for k in set(state_a) | set(state_b) if state_a.get(k) != state_b.get(k)
                  for eid in (state_a.get(k), state_b.get(k)) if eid is not None}
    calls = 0
    touched: set[str] = set()

    def get_event(eid: str):
        nonlocal calls
        calls += 1
        touched.add(eid)
        return b.events.get(eid)

    t1 = time.perf_counter()
    result = resolve_state(version, [state_a, state_b], get_event)
    resolve_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    again = resolve_state(version, [state_b, state_a], b.events.get)
    resolve2_s = time.perf_counter() - t2
    assert again == result, "resolution depends on the order of state sets"
    bans = sum(1 for k, v in result.items() if k[0] == "m.room.member"
               and b.events[v]["content"]["membership"] == "ban")
    print(f"room version {version}: {len(b.events)} events built in {build_s:.2f}s; "
          f"base state {base_size} events; state sets {len(state_a)}/{len(state_b)}; "
          f"conflicted events {len(conflicted)}")
    print(f"  resolve_state: {resolve_s:.3f}s (reversed order: {resolve2_s:.3f}s); "
          f"get_event calls {calls}, distinct events touched {len(touched)}; "
          f"resolved state {len(result)} entries, {bans} bans, "
          f"power levels from {'A' if b.events[result[('m.room.power_levels', '')]]['content']['users'].get(f'@u0:{SERVER}') == 50 else 'B'}")


if __name__ == "__main__":
    for v in sys.argv[1:] or ["12", "10"]:
        run(v)

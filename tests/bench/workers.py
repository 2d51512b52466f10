"""Send throughput of one process against main + a sync worker (issue 20, docs/workers.md).

Both on a fresh PostgreSQL database at 127.0.0.1:5432; the split run adds Redis (127.0.0.1:6379). ``--rooms``
rooms each have one sender, sending back to back through the main process for ``--seconds``, and
``--readers`` members long-polling /sync: on the main process in the single run, on the sync worker in the
split run. Reported: sends per second, the send p50/p99 (ms), the events the readers received per second, and
the CPU time each server process spent per send::

    .venv/bin/python -m tests.bench.workers --rooms 8 --readers 3 --seconds 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

from tests.integration import pg
from tests.integration.harness import ServerProcess, User, WorkerProcess, shared_room, timeline_events

REDIS = {"enabled": True, "host": "127.0.0.1", "port": 6379}


def _cpu_s(server: ServerProcess) -> float:
    """The process's user + system CPU time so far (Linux /proc)."""
    with open(f"/proc/{server.process.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(main: ServerProcess, reads_on: ServerProcess, rooms: int, readers: int, seconds: float) -> dict:
    pairs = []
    for _ in range(rooms):
        sender = main.register()
        members = [main.register() for _ in range(readers)]
        pairs.append((sender, shared_room(sender, *members), members))
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    received = [0]
    lock = threading.Lock()

    def send(user: User, room_id: str) -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            user.send(room_id, "bench")
            with lock:
                latencies.append(time.monotonic() - started)

    def read(user: User, room_id: str) -> None:
        reader = User(reads_on, user.user_id, user.token, user.device_id)
        since = reader.sync()["next_batch"]
        while time.monotonic() < stop:
            resp = reader.sync(since, timeout_ms=2000)
            since = resp["next_batch"]
            with lock:
                received[0] += len(timeline_events(resp, room_id))

    threads = [threading.Thread(target=send, args=(s, r)) for s, r, _ in pairs]
    threads += [threading.Thread(target=read, args=(m, r)) for _, r, ms in pairs for m in ms]
    cpu = {s: _cpu_s(s) for s in {main, reads_on}}
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    ordered = sorted(latencies)
    return {"sends_per_s": len(latencies) / seconds, "send_p50_ms": 1000 * statistics.median(ordered),
            "send_p99_ms": 1000 * ordered[int(len(ordered) * 0.99)], "received_per_s": received[0] / took,
            "main_cpu_ms_per_send": 1000 * (_cpu_s(main) - cpu[main]) / len(latencies),
            "worker_cpu_ms_per_send": 1000 * (_cpu_s(reads_on) - cpu[reads_on]) / len(latencies)
            if reads_on is not main else 0.0}


def run(split: bool, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"redis": REDIS} if split else {}
        main = ServerProcess(f"{tmp}", database=pg.create_test_database(), **extra)
        main.start()
        worker = None
        try:
            if split:
                worker = WorkerProcess(tempfile.mkdtemp(dir=tmp), main, "sync1")
                worker.start()
            return _load(main, worker or main, args.rooms, args.readers, args.seconds)
        finally:
            if worker is not None:
                worker.stop()
            main.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rooms", type=int, default=8)
    p.add_argument("--readers", type=int, default=3, help="members long-polling /sync in each room")
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--configs", default="single,split", help="single (one process), split (main + sync worker)")
    args = p.parse_args()
    configs = {"single": ("one process", False), "split": ("main + sync worker", True)}
    for name, split in (configs[c] for c in args.configs.split(",")):
        r = run(split, args)
        print(f"{name:20s} sends/s {r['sends_per_s']:7.1f}  send p50 {r['send_p50_ms']:6.1f} ms  "
              f"p99 {r['send_p99_ms']:6.1f} ms  events received/s {r['received_per_s']:7.1f}  "
              f"CPU per send: main {r['main_cpu_ms_per_send']:5.2f} ms, worker {r['worker_cpu_ms_per_send']:5.2f} ms",
              flush=True)
    pg.drop_all()


if __name__ == "__main__":
    main()

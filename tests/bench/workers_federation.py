"""Inbound federation on main alone against an inbound federation worker (issue 20, docs/workers.md).

A second Hexagone is the origin: one of its users joins a public room of ours, then the benchmark sends,
as that server, ``--pdus`` chained messages in transactions of ``--batch`` PDUs, one transaction after
the other, to the server's federation port: main's in the single run; an inbound federation worker's in
the split run (it checks them, main persists them over its replication listener). Reported: PDUs per
second, and the CPU time main and the worker spent per PDU::

    .venv/bin/python -m tests.bench.workers_federation --pdus 400 --batch 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from types import SimpleNamespace

from tests.bench.workers import REDIS, _cpu_s
from tests.integration import pg
from tests.integration.fedtls import CertificateAuthority
from tests.integration.federation import EventForge, FedServer, send_transaction, start_fed_server
from tests.integration.harness import ServerProcess, WorkerProcess, q, shared_room

SECRET = "bench-replication-secret"


def _factory(tmp: str):
    servers: list[ServerProcess] = []

    def make(*, start: bool = True, **overrides) -> ServerProcess:
        server = ServerProcess(tempfile.mkdtemp(dir=tmp), **overrides)
        servers.append(server)
        return server.start() if start else server
    return make, servers


def _split(main: FedServer, tmp: str) -> tuple[WorkerProcess, FedServer]:
    """Main gives its federation port to a new inbound federation worker and serves replication instead."""
    process = main.process
    process.stop()
    client = dict(process.config["listeners"][0], resources=[{"names": ["client", "replication"]}])
    process.reconfigure(listeners=[client], worker_replication_secret=SECRET,
                        instance_map={"main": {"host": "127.0.0.1", "port": process.port}})
    process.start()
    worker = WorkerProcess(tempfile.mkdtemp(dir=tmp), process, "fedin1")
    worker.reconfigure(worker_listeners=worker.worker_keys["worker_listeners"] + [{
        "port": main.tls_port, "tls": True, "type": "http", "bind_addresses": ["127.0.0.1"],
        "resources": [{"names": ["federation"]}]}])
    worker.start()
    return worker, FedServer(worker, main.name, main.tls_port, main.signing_key, main.ca_path)


def run(split: bool, args, tmp: str) -> dict:
    make, servers = _factory(tmp)
    ca = CertificateAuthority(tempfile.mkdtemp(dir=tmp))
    worker = None
    try:
        main = start_fed_server(make, ca, database=pg.create_test_database(), redis=REDIS)
        peer = start_fed_server(make, ca)
        target = main
        if split:
            worker, target = _split(main, tmp)
        alice, bob = main.process.register(), peer.process.register()
        room_id = shared_room(alice, bob, public=True)
        forge = EventForge(target, alice, room_id, peer, bob)
        pdus, prev = [], None
        for i in range(args.pdus):
            pdu = forge.message(bob.user_id, f"bench {i}", prev=prev)
            pdus.append(pdu)
            prev = pdu["_id"]
        processes = [main.process] + ([worker] if worker else [])
        cpu = {p: _cpu_s(p) for p in processes}
        started = time.monotonic()
        for i in range(0, len(pdus), args.batch):
            results = send_transaction(target, SimpleNamespace(name=peer.name, signing_key=peer.signing_key),
                                       pdus[i:i + args.batch])
            assert all(not r for r in results.values()), results
        took = time.monotonic() - started
        last = alice.ok("GET", f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "1"})["chunk"][0]
        assert last["content"]["body"] == f"bench {args.pdus - 1}", last
        return {"pdus_per_s": args.pdus / took,
                "main_cpu_ms": 1000 * (_cpu_s(main.process) - cpu[main.process]) / args.pdus,
                "worker_cpu_ms": 1000 * (_cpu_s(worker) - cpu[worker]) / args.pdus if worker else 0.0}
    finally:
        if worker is not None:
            worker.stop()
        for server in servers:
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pdus", type=int, default=400)
    p.add_argument("--batch", type=int, default=10, help="PDUs per transaction (at most 50)")
    p.add_argument("--configs", default="single,split", help="single (main), split (inbound federation worker)")
    args = p.parse_args()
    names = {"single": "main alone", "split": "inbound fed. worker"}
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs.split(","):
            r = run(config == "split", args, tmp)
            print(f"{names[config]:20s} PDUs/s {r['pdus_per_s']:7.1f}  CPU per PDU: main {r['main_cpu_ms']:5.2f} ms, "
                  f"worker {r['worker_cpu_ms']:5.2f} ms", flush=True)
    pg.drop_all()


if __name__ == "__main__":
    main()

"""The other worker roles (docs/workers.md): an inbound federation worker holding the server's federation
port (what it receives is persisted by main, over main's replication listener), a media worker (main with
``enable_media_repo: false``), and one worker sending both the push notifications (``pusher_instances``) and
the application services' transactions (``notify_appservices_from_worker``); on one PostgreSQL database,
with Redis, and a second homeserver as federation peer.

Skipped when PostgreSQL or Redis does not answer (127.0.0.1:5432 / 127.0.0.1:6379).
"""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

import pytest
import yaml

from tests.integration import pg
from tests.integration.appservice_bridge import registration
from tests.integration.federation import EventForge, FedServer, put_transaction, send_transaction
from tests.integration.harness import (StandInHandler, User, WorkerProcess, database_rows, http_stand_in, q,
                                       register_admin, shared_room, timeline_events, unique, wait_for)
from tests.integration.media_client import download, split_mxc, upload
from tests.integration.pushgateway import PushGateway
from tests.integration.test_workers import REDIS, _redis_answers

SECRET = "replication-secret-for-tests"
FEDIN, MEDIA, BACKGROUND = "fedin1", "media1", "bg1"

pytestmark = [
    pytest.mark.skipif(not pg.available(), reason="PostgreSQL does not answer at " + pg.admin_url()),
    pytest.mark.skipif(not _redis_answers(), reason="Redis does not answer at 127.0.0.1:6379"),
]


class AppService:
    """A stand-in application service: the events of each transaction, kept once per transaction id (as an
    appservice does with a transaction sent again)."""

    def __init__(self):
        self.transactions: dict[str, list[dict]] = {}
        self.deliveries = 0  # PUTs received, resent ones included
        self.cond = threading.Condition()
        service = self

        class Handler(StandInHandler):
            def do_PUT(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                txn_id = self.path.rsplit("/", 1)[1]
                with service.cond:
                    service.deliveries += 1
                    service.transactions.setdefault(txn_id, body.get("events", []))
                    service.cond.notify_all()
                self.answer(200, b"{}", "application/json")

        self.handler = Handler

    def event_ids(self) -> list[str]:
        with self.cond:
            return [e["event_id"] for txn in self.transactions.values() for e in txn]


@pytest.fixture(scope="module")
def gateway():
    g = PushGateway()
    yield g
    g.close()


@pytest.fixture(scope="module")
def appservice():
    service = AppService()
    with http_stand_in(service.handler) as url:
        service.url = url
        yield service


@pytest.fixture(scope="module")
def deployment(fed, appservice, tmp_path_factory):
    """Main (no federation listener of its own, no media, no pushers, no appservice transactions) and its
    three workers; the inbound federation worker serves the TLS port the server's name points at."""
    reg = registration("watcher", appservice.url, "placeholder",
                       namespaces={"users": [], "aliases": [], "rooms": [{"regex": "!.*", "exclusive": False}]})
    reg_path = str(tmp_path_factory.mktemp("as") / "watcher.yaml")
    with open(reg_path, "w") as f:
        yaml.safe_dump(reg, f)
    main = fed(database=pg.create_test_database(), redis=REDIS, worker_replication_secret=SECRET,
               enable_media_repo=False, media_instance_running_background_jobs=MEDIA,
               pusher_instances=[BACKGROUND], notify_appservices_from_worker=BACKGROUND,
               app_service_config_files=[reg_path])
    process = main.process
    process.stop()
    client_listener = dict(process.config["listeners"][0])
    client_listener["resources"] = [{"names": ["client", "replication"], "compress": False}]
    process.reconfigure(listeners=[client_listener],
                        instance_map={"main": {"host": "127.0.0.1", "port": process.port}})
    process.start()
    workers = {name: WorkerProcess(tmp_path_factory.mktemp(name), process, name) for name in (FEDIN, MEDIA,
                                                                                              BACKGROUND)}
    fedin = workers[FEDIN]
    fedin.reconfigure(worker_listeners=fedin.worker_keys["worker_listeners"] + [{
        "port": main.tls_port, "tls": True, "type": "http", "x_forwarded": False, "bind_addresses": ["127.0.0.1"],
        "resources": [{"names": ["federation"], "compress": False}]}])
    workers[MEDIA].reconfigure(enable_media_repo=True)
    for worker in workers.values():
        worker.start()
    yield main, workers
    for worker in workers.values():
        worker.stop()


def on(server, user: User) -> User:
    return User(server, user.user_id, user.token, user.device_id)


def messages(resp: dict, room_id: str) -> list[str]:
    return [e["content"]["body"] for e in timeline_events(resp, room_id) if e["type"] == "m.room.message"]


def test_a_remote_user_joins_and_talks_through_the_inbound_federation_worker(deployment, hexagone_peer):
    main, workers = deployment
    alice, bob = main.process.register(), hexagone_peer.process.register()
    # The peer's make_join, send_join and /send all reach the worker (it holds the server's federation port).
    room_id = shared_room(alice, bob, public=True)
    since = alice.sync()["next_batch"]
    sent = [f"from the peer {i}" for i in range(5)]
    for body in sent:
        bob.send(room_id, body)
    received: list[str] = []

    def all_there(resp):
        received.extend(messages(resp, room_id))
        return len(received) >= len(sent)
    alice.sync_until(all_there, since, deadline_s=30)
    assert received == sent  # persisted by main, in order, and woke alice's long-poll on main
    _, peer_since = bob.sync_until(lambda r: True)
    alice.send(room_id, "and back")  # main sends federation itself in this deployment
    bob.timeline_until(room_id, lambda e: e["content"].get("body") == "and back", peer_since)
    log = workers[FEDIN].log(tail=2000)
    assert "/_matrix/federation/v1/send/" in log and "/_matrix/federation/v2/send_join/" in log


def test_the_inbound_federation_worker_serves_reads_from_the_database(deployment, hexagone_peer):
    main, workers = deployment
    alice, bob = main.process.register(), hexagone_peer.process.register()
    room_id = shared_room(alice, bob, public=True)
    event_id = alice.send(room_id, "read me over federation")
    worker = FedServer(workers[FEDIN], main.name, main.tls_port, main.signing_key, main.ca_path)
    peer = hexagone_peer
    status, body = worker.signed("GET", f"/_matrix/federation/v1/event/{quote(event_id)}", origin=peer.name,
                                 key=peer.signing_key)
    assert status == 200 and body["pdus"][0]["content"]["body"] == "read me over federation"
    status, body = worker.signed("GET", f"/_matrix/federation/v1/state_ids/{quote(room_id)}?event_id="
                                        f"{quote(event_id)}", origin=peer.name, key=peer.signing_key)
    assert status == 200 and len(body["pdu_ids"]) >= 5
    status, body = worker.https("GET", "/_matrix/key/v2/server")
    assert status == 200 and body["server_name"] == main.name


def test_main_refuses_a_replication_call_without_the_secret(deployment):
    main, _ = deployment
    status, body = main.process.request("POST", "/_synapse/replication/hexagone/edu",
                                        {"origin": "evil.example", "edu_type": "m.typing", "content": {}})
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


def test_media_is_served_by_the_media_worker_not_main(deployment):
    main, workers = deployment
    alice = main.process.register()
    worker = workers[MEDIA]
    status, body = upload(worker.base_url, alice.token, b"through the media worker", filename="m.txt")
    assert status == 200, body
    server, media_id = split_mxc(body["content_uri"])
    path = f"/_matrix/client/v1/media/download/{server}/{media_id}"
    status, _, content = download(worker.base_url, path, alice.token)
    assert (status, content) == (200, b"through the media worker")
    status, _, _ = download(worker.base_url, f"/_matrix/client/v1/media/thumbnail/{server}/{media_id}"
                                             "?width=32&height=32", alice.token)
    assert status in (200, 400)  # served by the worker (a text file has no thumbnail: 400, as Synapse)
    status, _, _ = download(main.process.base_url, path, alice.token)
    assert status == 404  # enable_media_repo: false on main
    status, body = upload(main.process.base_url, alice.token, b"refused", filename="r.txt")
    assert status == 404


def test_media_retention_runs_on_the_instance_named_for_it(deployment):
    main, workers = deployment
    admin = register_admin(main.process)
    jobs = admin.ok("GET", "/_synapse/admin/v1/background_updates/status")["jobs"]
    assert "media_retention" not in [j["name"] for j in jobs]
    assert "Periodic jobs run by this process: media_retention" in workers[MEDIA].log(tail=5000)
    assert "Periodic jobs run by this process" not in workers[BACKGROUND].log(tail=5000)


def _pusher(user: User, gateway: PushGateway) -> str:
    key = unique("key")
    user.ok("POST", "/pushers/set", {"kind": "http", "app_id": "org.example.workers", "pushkey": key,
                                     "app_display_name": "W", "device_display_name": "D", "lang": "en",
                                     "data": {"url": gateway.url}})
    return key


def _once_each(ids: list[str], wanted: list[str]) -> bool:
    return all(ids.count(i) == 1 for i in wanted)


def test_pushes_and_appservice_transactions_come_from_the_worker_and_survive_its_restart(
        deployment, gateway, appservice):
    main, workers = deployment
    alice, bob = main.process.register(), main.process.register()
    room_id = shared_room(alice, bob)
    key = _pusher(bob, gateway)
    first = alice.send(room_id, "pushed by the worker")
    gateway.wait(lambda g: [n for n in g.for_key(key) if n.get("event_id") == first])
    wait_for(lambda: first in appservice.event_ids(), "the appservice transaction")
    # A notification answered but whose position was not yet stored is sent again after a kill (at least
    # once): wait for the position, so that each one below must come exactly once.
    [(first_position,)] = database_rows(main.process, "SELECT stream_ordering FROM events WHERE event_id = ?",
                                        (first,))
    wait_for(lambda: database_rows(main.process, "SELECT position FROM pushers WHERE pushkey = ?", (key,))[0][0]
             >= first_position, "the pusher's position to be stored")
    worker = workers[BACKGROUND]
    worker.kill()
    pushed_before = len(gateway.for_key(key))
    down = [alice.send(room_id, f"while the worker is down {i}") for i in range(3)]
    # Main sends neither (it would send them now, and then the worker again: each is counted once below).
    assert len(gateway.for_key(key)) == pushed_before and not set(down) & set(appservice.event_ids())
    worker.start()
    gateway.wait(lambda g: {n.get("event_id") for n in g.for_key(key)} >= set(down))
    wait_for(lambda: set(down) <= set(appservice.event_ids()), "the appservice transactions after the restart")
    pushed = [n.get("event_id") for n in gateway.for_key(key)]
    assert _once_each(pushed, [first, *down])
    assert _once_each(appservice.event_ids(), [first, *down])


def test_a_pusher_removed_on_main_stops_on_the_worker(deployment, gateway):
    main, _ = deployment
    alice, bob = main.process.register(), main.process.register()
    room_id = shared_room(alice, bob)
    key = _pusher(bob, gateway)
    first = alice.send(room_id, "before removal")
    gateway.wait(lambda g: [n for n in g.for_key(key) if n.get("event_id") == first])
    bob.ok("POST", "/pushers/set", {"kind": None, "app_id": "org.example.workers", "pushkey": key})
    other = _pusher(alice, gateway)  # a later pusher's notification shows the worker went past the removal
    bob_key_count = len(gateway.for_key(key))
    bob.send(room_id, "after removal")
    gateway.wait(lambda g: [n for n in g.for_key(other) if n.get("content", {}).get("body") == "after removal"])
    assert len(gateway.for_key(key)) == bob_key_count


def test_a_transaction_the_worker_cannot_hand_to_main_is_refused_and_lands_when_sent_again(deployment,
                                                                                           hexagone_peer):
    main, workers = deployment
    peer = hexagone_peer
    alice, bob = main.process.register(), peer.process.register()
    room_id = shared_room(alice, bob, public=True)
    worker = FedServer(workers[FEDIN], main.name, main.tls_port, main.signing_key, main.ca_path)
    pdu = EventForge(worker, alice, room_id, peer, bob).message(bob.user_id, "sent while main is down")
    txn_id = unique("txn")
    main.process.stop()
    try:
        status, body = put_transaction(worker, peer, [pdu], txn_id=txn_id)
        assert status == 503, body  # not "processed with an error": the origin sends it again
    finally:
        main.process.start()
    # As the origin would: again (the worker's pooled connection to main is gone: it makes a new one).
    status, body = put_transaction(worker, peer, [pdu], txn_id=txn_id)
    assert (status, body["pdus"]) == (200, {pdu["_id"]: {}}), body
    event, _ = alice.timeline_until(room_id, lambda e: e["event_id"] == pdu["_id"])
    assert event["content"]["body"] == "sent while main is down"


def test_a_transaction_mixing_messages_and_state_is_persisted_with_the_right_state(deployment, hexagone_peer):
    """The worker hands main a transaction's messages together (one call), sending what waits before a state
    event: every event gets the state it had."""
    main, workers = deployment
    peer = hexagone_peer
    alice, bob = main.process.register(), peer.process.register()
    room_id = shared_room(alice, bob, public=True)
    worker = FedServer(workers[FEDIN], main.name, main.tls_port, main.signing_key, main.ca_path)
    forge = EventForge(worker, alice, room_id, peer, bob)
    member_key = ("m.room.member", bob.user_id)
    old_member = forge.state[member_key]
    m1 = forge.message(bob.user_id, "one")
    m2 = forge.message(bob.user_id, "two", prev=m1["_id"])
    s3 = forge.event(bob.user_id, "m.room.member", {"membership": "join", "displayname": "Renamed"},
                     state_key=bob.user_id, prev=m2["_id"],
                     auth=forge.auth_of(("m.room.power_levels", ""), member_key, ("m.room.join_rules", "")))
    forge.state[member_key] = s3["_id"]
    forge.auth = forge.auth_of(("m.room.power_levels", ""), member_key)
    m4 = forge.message(bob.user_id, "four", prev=s3["_id"])
    m5 = forge.message(bob.user_id, "five", prev=m4["_id"])
    chain = [m1, m2, s3, m4, m5]
    results = send_transaction(worker, peer, chain)
    assert results == {p["_id"]: {} for p in chain}
    seen: list[str] = []

    def all_seen(resp):
        seen.extend(e["event_id"] for e in timeline_events(resp, room_id) if e["sender"] == bob.user_id)
        return pdu_ids <= set(seen)
    pdu_ids = {p["_id"] for p in chain}
    alice.sync_until(all_seen, deadline_s=30)
    assert [i for i in seen if i in pdu_ids] == [p["_id"] for p in chain]
    member = alice.ok("GET", f"/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}")
    assert member["displayname"] == "Renamed"
    for event, expected in ((m2, old_member), (m5, s3["_id"])):
        status, body = worker.signed("GET", f"/_matrix/federation/v1/state_ids/{quote(room_id)}?event_id="
                                            f"{quote(event['_id'])}", origin=peer.name, key=peer.signing_key)
        assert status == 200 and expected in body["pdu_ids"], (status, body)

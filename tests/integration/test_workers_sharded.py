"""Two workers sharing the federation destinations (``federation_sender_instances: [a, b]``) and the users'
pushers (``pusher_instances: [a, b]``), as Synapse shards them (by the SHA-256 of the server name or user ID);
main sends neither. Two peer homeservers share a room with main's users, a push gateway stand-in gets the pushes.

Skipped when PostgreSQL or Redis does not answer (127.0.0.1:5432 / 127.0.0.1:6379).
"""

from __future__ import annotations

import pytest

from homeserver.config.workers import shard_owner
from tests.integration import pg
from tests.integration.harness import User, WorkerProcess, shared_room, timeline_events
from tests.integration.pushgateway import PushGateway
from tests.integration.test_workers_roles import _pusher
from tests.integration.test_workers import REDIS, _redis_answers

pytestmark = [
    pytest.mark.skipif(not pg.available(), reason="PostgreSQL does not answer at " + pg.admin_url()),
    pytest.mark.skipif(not _redis_answers(), reason="Redis does not answer at 127.0.0.1:6379"),
    pytest.mark.engine_independent,  # on PostgreSQL whatever the pass: run once
]


def messages(user: User, room_id: str, since: str, count: int) -> tuple[list[str], str]:
    """The bodies of the next ``count`` messages ``user``'s /sync shows in the room, and its next token."""
    bodies: list[str] = []

    def enough(resp):
        bodies.extend(e["content"]["body"] for e in timeline_events(resp, room_id) if e["type"] == "m.room.message")
        return len(bodies) >= count
    _, since = user.sync_until(enough, since, deadline_s=30)
    return bodies, since


@pytest.fixture(scope="module")
def deployment(fed, tmp_path_factory):
    """(main, the two workers by name, two peers that have each its own sender)."""
    shards = ("bg1", "bg2")
    by_sender: dict[str, object] = {}
    while len(by_sender) < 2:  # server names are random (localhost:<port>): one peer per sender
        peer = fed()
        by_sender.setdefault(shard_owner(shards, peer.process.config["server_name"]), peer)
    peers = list(by_sender.values())
    main = fed(database=pg.create_test_database(), redis=REDIS, federation_sender_instances=list(shards),
               pusher_instances=list(shards))
    workers = {name: WorkerProcess(tmp_path_factory.mktemp(name), main.process, name) for name in shards}
    for worker in workers.values():
        worker.start()
    yield main, workers, peers
    for worker in workers.values():
        worker.stop()


@pytest.fixture(scope="module")
def gateway():
    g = PushGateway()
    yield g
    g.close()


def test_two_federation_senders_each_send_to_their_own_destinations(deployment):
    main, workers, peers = deployment
    alice, bobs = main.process.register(), [peer.process.register() for peer in peers]
    room_id = shared_room(alice, *bobs, public=True)
    tokens = [bob.sync()["next_batch"] for bob in bobs]
    alice.send(room_id, "to both")
    for i, bob in enumerate(bobs):
        bodies, tokens[i] = messages(bob, room_id, tokens[i], 1)
        assert bodies == ["to both"]

    # The sender of the first peer stops: the second peer still gets what follows, the first once it is back.
    down = workers[shard_owner(tuple(workers), peers[0].process.config["server_name"])]
    down.kill()
    sent = [f"while {down.worker_keys['worker_name']} is down {i}" for i in range(3)]
    for body in sent:
        alice.send(room_id, body)
    assert messages(bobs[1], room_id, tokens[1], len(sent))[0] == sent
    quiet = bobs[0].sync(tokens[0], timeout_ms=2000)
    assert not [e for e in timeline_events(quiet, room_id) if e["type"] == "m.room.message"]
    down.start()
    assert messages(bobs[0], room_id, tokens[0], len(sent))[0] == sent


def test_two_pusher_workers_each_push_for_their_own_users(deployment, gateway):
    main, workers, _ = deployment
    shards = tuple(workers)
    by_shard: dict[str, User] = {}
    while len(by_shard) < 2:  # user IDs are random: one user whose pushers each worker runs
        user = main.process.register()
        by_shard.setdefault(shard_owner(shards, user.user_id), user)
    alice = main.process.register()
    room_id = shared_room(alice, *by_shard.values())
    keys = {name: _pusher(user, gateway) for name, user in by_shard.items()}
    first = alice.send(room_id, "pushed to both")
    for key in keys.values():
        gateway.wait(lambda g: [n for n in g.for_key(key) if n.get("event_id") == first])

    # One pusher worker stops: the other's user is still pushed to, the first's once it is back.
    stopped, running = shards
    workers[stopped].kill()
    pushed_before = len(gateway.for_key(keys[stopped]))
    second = alice.send(room_id, "while one pusher worker is down")
    gateway.wait(lambda g: [n for n in g.for_key(keys[running]) if n.get("event_id") == second])
    assert len(gateway.for_key(keys[stopped])) == pushed_before
    workers[stopped].start()
    gateway.wait(lambda g: [n for n in g.for_key(keys[stopped]) if n.get("event_id") == second])

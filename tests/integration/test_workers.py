"""Several processes (docs/workers.md): main, a sync worker and a federation sender on one PostgreSQL
database, telling each other of their writes over Redis, with a second homeserver as federation peer.

Skipped when PostgreSQL or Redis does not answer (127.0.0.1:5432 / 127.0.0.1:6379).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.integration import pg
from tests.integration.media_client import download, split_mxc, upload
from tests.integration.harness import (ServerError, ServerProcess, User, WorkerProcess, q, shared_room,
                                      timeline_events, wait_for)

REDIS = {"enabled": True, "host": "127.0.0.1", "port": 6379}
SENDER = "fed1"


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


pytestmark = [
    pytest.mark.skipif(not pg.available(), reason="PostgreSQL does not answer at " + pg.admin_url()),
    pytest.mark.skipif(not _redis_answers(), reason="Redis does not answer at 127.0.0.1:6379"),
]


@pytest.fixture(scope="module")
def main(fed):
    return fed(database=pg.create_test_database(), redis=REDIS, federation_sender_instances=[SENDER],
               stream_writers={"events": ["main"]})


@pytest.fixture(scope="module")
def workers(main, tmp_path_factory):
    started = {name: WorkerProcess(tmp_path_factory.mktemp(name), main.process, name) for name in ("sync1", SENDER)}
    for worker in started.values():
        worker.start()
    yield started
    for worker in started.values():
        worker.stop()


def on(server: ServerProcess, user: User) -> User:
    """``user`` (logged in on the main process) talking to another process of the same homeserver."""
    return User(server, user.user_id, user.token, user.device_id)


def messages_in(resp: dict, room_id: str) -> list[str]:
    """The IDs of the messages in a sync response's timeline of the room (the worker may hand out a token
    from before it heard of the room's creation, whose events then come along)."""
    return [e["event_id"] for e in timeline_events(resp, room_id) if e["type"] == "m.room.message"]


def events_position(token: str) -> int:
    """The room events' position in a sync token (``s<position>_...``)."""
    return int(token.split("_")[0][1:])


def caught_up(reader: User, writer: User) -> str:
    """A token of ``reader`` (on a worker) that shows everything ``writer``'s process (main) has written."""
    upto = events_position(writer.sync(set_presence="offline")["next_batch"])  # (online would wake the reader)
    _, since = reader.sync_until(lambda r: events_position(r["next_batch"]) >= upto)
    return since


def long_poll(user: User, since: str, timeout_ms: int = 30_000) -> tuple[dict, float]:
    started = time.monotonic()
    resp = user.sync(since, timeout_ms=timeout_ms)
    return resp, time.monotonic() - started


def test_message_through_main_reaches_a_long_poll_on_the_sync_worker(main, workers):
    alice = main.process.register()
    room_id = alice.create_room()
    reader = on(workers["sync1"], alice)
    since = caught_up(reader, alice)  # the long-poll can only be woken by the message
    answer: dict = {}

    def poll_until_message() -> None:
        """Long-poll as a client does: another stream's change (a new device's device-list entry, presence)
        may answer a poll first; the next one, from its token, then carries the message."""
        started, token = time.monotonic(), since
        while time.monotonic() - started < 30:
            resp, _ = long_poll(reader, token)
            answer["resp"], token = resp, resp["next_batch"]
            if messages_in(resp, room_id):
                break
        answer["took"] = time.monotonic() - started

    poll = threading.Thread(target=poll_until_message)
    poll.start()
    event_id = alice.send(room_id, "through main")
    poll.join(40)
    # The message reaches the worker's long-poll, woken by main's write well before a poll's 30 s timeout.
    assert messages_in(answer["resp"], room_id) == [event_id]
    assert answer["took"] < 25


def test_reads_on_the_worker_see_main_state_changes(main, workers):
    alice = main.process.register()
    room_id = alice.create_room(name="before")
    reader = on(workers["sync1"], alice)
    assert reader.ok("GET", f"/rooms/{q(room_id)}/state/m.room.name")["name"] == "before"
    since = reader.sync()["next_batch"]
    alice.put_state(room_id, "m.room.name", {"name": "after"})
    # (The worker may hand out a token from before it heard of the room's creation: look for the new name.)
    reader.timeline_until(room_id, lambda e: e["type"] == "m.room.name" and e["content"]["name"] == "after", since)
    assert reader.ok("GET", f"/rooms/{q(room_id)}/state/m.room.name")["name"] == "after"  # its cache dropped
    texts = [e["content"].get("name") for e in reader.messages(room_id, dir="b", limit=5)["chunk"]
             if e["type"] == "m.room.name"]
    assert texts[:2] == ["after", "before"]
    status, _ = reader.request("POST", f"/rooms/{q(room_id)}/send/m.room.message", {"body": "no"})
    assert status == 404  # writes go to main (the reverse proxy routes them there)


def test_killed_sync_worker_restarted_loses_nothing(main, workers):
    alice = main.process.register()
    room_id = alice.create_room()
    worker = workers["sync1"]
    since = on(worker, alice).sync()["next_batch"]
    worker.kill()
    sent = [alice.send(room_id, f"while down {i}") for i in range(3)]
    worker.start()
    resp = on(worker, alice).sync(since, timeout_ms=10_000)
    assert messages_in(resp, room_id) == sent


def _joined(main, peer):
    alice, bob = main.process.register(), peer.process.register()
    room_id = shared_room(alice, bob, public=True)
    _, since = bob.sync_until(lambda r: room_id in r.get("rooms", {}).get("join", {}))
    return alice, bob, room_id, since


def _received(bob: User, room_id: str, since: str, count: int) -> list[str]:
    bodies: list[str] = []

    def enough(resp):
        bodies.extend(e["content"]["body"] for e in timeline_events(resp, room_id) if e["type"] == "m.room.message")
        return len(bodies) >= count
    bob.sync_until(enough, since, deadline_s=30)
    return bodies


def test_federation_sender_worker_delivers_in_order(main, workers, hexagone_peer):
    alice, bob, room_id, since = _joined(main, hexagone_peer)
    sent = [f"ordered {i}" for i in range(10)]
    for body in sent:
        alice.send(room_id, body)
    assert _received(bob, room_id, since, len(sent)) == sent


def test_killed_federation_sender_resumes_its_queue(main, workers, hexagone_peer):
    alice, bob, room_id, since = _joined(main, hexagone_peer)
    sender = workers[SENDER]
    sender.kill()
    sent = [f"queued {i}" for i in range(3)]
    for body in sent:
        alice.send(room_id, body)
    # Main queued them but does not send them: a long-poll of the peer's user hears nothing meanwhile.
    quiet = bob.sync(since, timeout_ms=2000)
    assert not [e for e in timeline_events(quiet, room_id) if e["type"] == "m.room.message"]
    sender.start()
    assert _received(bob, room_id, since, len(sent)) == sent


def test_typing_account_data_and_to_device_written_on_main_reach_the_worker(main, workers):
    alice = main.process.register()
    room_id = alice.create_room()
    reader = on(workers["sync1"], alice)
    since = reader.sync()["next_batch"]
    alice.ok("PUT", f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000})
    typing, since = reader.sync_until(lambda r: [e["content"]["user_ids"] for e in r.get("rooms", {}).get(
        "join", {}).get(room_id, {}).get("ephemeral", {}).get("events", []) if e["type"] == "m.typing"], since)
    assert typing[-1] == [alice.user_id]
    alice.ok("PUT", f"/user/{q(alice.user_id)}/account_data/org.example.workers", {"n": 1})
    found, since = reader.sync_until(lambda r: [e["content"] for e in r.get("account_data", {}).get("events", [])
                                                if e["type"] == "org.example.workers"], since)
    assert found == [{"n": 1}]
    alice.ok("PUT", "/sendToDevice/org.example.ping/" + q("txn-workers"),
             {"messages": {alice.user_id: {alice.device_id: {"ping": 1}}}})
    pings, _ = reader.sync_until(lambda r: [e["content"] for e in r.get("to_device", {}).get("events", [])], since)
    assert pings == [{"ping": 1}]


def test_a_token_logged_out_on_main_is_refused_by_the_worker(main, workers):
    alice = main.process.register()
    reader = on(workers["sync1"], alice)
    assert reader.sync()["next_batch"]  # the worker now knows (caches) the token
    alice.ok("POST", "/logout", {})
    # (The worker hears of it over Redis a moment after main answered.)
    body = wait_for(lambda: (lambda r: r[0] == 401 and r[1])(reader.request("GET", "/account/whoami")),
                    "the worker to forget the token")
    assert body["errcode"] == "M_UNKNOWN_TOKEN"


def test_media_uploaded_on_a_worker_is_served_by_main_and_the_worker(main, workers):
    alice = main.process.register()
    worker = workers["sync1"]
    status, body = upload(worker.base_url, alice.token, b"from the worker", filename="w.txt")
    assert status == 200, body
    server, media_id = split_mxc(body["content_uri"])
    for process in (main.process, worker):
        status, _, content = download(process.base_url, f"/_matrix/client/v1/media/download/{server}/{media_id}",
                                      alice.token)
        assert (status, content) == (200, b"from the worker")


def test_presence_set_on_main_reaches_the_worker(main, workers):
    alice, bob = main.process.register(), main.process.register()
    shared_room(alice, bob)
    reader = on(workers["sync1"], bob)
    since = reader.sync(set_presence="offline")["next_batch"]
    alice.ok("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "online", "status_msg": "via main"})
    found, _ = reader.sync_until(lambda r: [e["content"] for e in r.get("presence", {}).get("events", [])
                                            if e["sender"] == alice.user_id and e["content"].get("status_msg")],
                                 since, set_presence="offline")
    assert found[-1]["presence"] == "online" and found[-1]["status_msg"] == "via main"


def test_a_worker_refuses_a_database_main_has_not_migrated(homeserver_factory, tmp_path_factory):
    unstarted = homeserver_factory(start=False, database=pg.create_test_database(), redis=REDIS)
    worker = WorkerProcess(tmp_path_factory.mktemp("early"), unstarted, "early")
    with pytest.raises(ServerError) as refused:
        worker.start()
    assert "start the main process first" in str(refused.value)

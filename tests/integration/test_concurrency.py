"""Many clients at once against one real server (on the suite's database: SQLite, or PostgreSQL
when HEXAGONE_TEST_DATABASE says so).

Spec v1.19 client-server "Syncing" (every event reaches every member's /sync exactly once, in
the server's order) and "Transaction identifiers" (a retried PUT with the same transaction id is
one event). Also the stream position generator those guarantees rest on.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from homeserver.storage.streams import StreamIdGenerator
from tests.integration.harness import User, q, unique

SENDERS = 50
MESSAGES_EACH = 20
READERS = 4
NOISE_ROOMS = 8
FULL_TIMELINE = {"room": {"timeline": {"limit": 2000}}}


# -- the stream position generator -------------------------------------------------------------

def test_stream_positions_visible_only_below_unfinished():
    gen = StreamIdGenerator(10)
    a, b, c = gen.allocate(), gen.allocate(2), gen.allocate()
    assert (a, b, c) == ([11], [12, 13], [14])
    assert gen.current() == 10
    gen.done(c)          # 14 commits first: 11..13 still pending
    assert gen.current() == 10
    gen.done(a)
    assert gen.current() == 11
    gen.done(b)
    assert gen.current() == 14


def test_when_visible_waits_for_every_lower_position():
    gen = StreamIdGenerator(0)
    calls: list[str] = []
    first, second = gen.allocate(), gen.allocate()
    gen.done(second)
    gen.when_visible(second[0], lambda: calls.append("second"))
    gen.when_visible(0, lambda: calls.append("already"))
    assert calls == ["already"]
    gen.done(first)
    assert calls == ["already", "second"]
    gen.when_visible(2, lambda: calls.append("now"))
    assert calls[-1] == "now"


def test_when_visible_callback_failure_does_not_stop_others():
    gen = StreamIdGenerator(0)
    calls: list[int] = []
    (pos,) = gen.allocate()
    gen.when_visible(pos, lambda: 1 / 0)
    gen.when_visible(pos, lambda: calls.append(pos))
    gen.done([pos])
    assert calls == [pos] and gen.current() == pos


# -- many senders, long-polling readers ----------------------------------------------------------

def _read_until(reader: User, room_id: str, since: str, want: int, deadline: float, out: list, errors: list):
    """Long-poll /sync, collecting the room's messages, until ``want`` arrived or the deadline."""
    try:
        while len(out) < want and time.monotonic() < deadline:
            resp = reader.sync(since, timeout_ms=3000, filter=FULL_TIMELINE)
            room = resp["rooms"]["join"].get(room_id)
            if room is not None:
                assert not room["timeline"]["limited"], "a gap in the timeline"
                out.extend(e["event_id"] for e in room["timeline"]["events"] if e["type"] == "m.room.message")
            since = resp["next_batch"]
    except BaseException as e:  # reported by the test thread
        errors.append(e)


def _server_order(user: User, room_id: str) -> list[str]:
    """The room's messages as /messages pages them forwards, from the start."""
    ids, params = [], {"dir": "f", "limit": 500}
    while True:
        page = user.messages(room_id, **params)
        ids += [e["event_id"] for e in page["chunk"] if e["type"] == "m.room.message"]
        if "end" not in page or not page["chunk"]:
            return ids
        params["from"] = page["end"]


def _send_all(user: User, room_id: str, count: int) -> list[str]:
    return [user.send(room_id, f"{user.user_id} #{i}") for i in range(count)]


def test_fifty_senders_and_long_polling_readers_see_every_event_once_in_order(homeserver_factory):
    # The readers ask for 2,000 events a timeline: without the default cap of 100 (filter_timeline_limit), a
    # reader that falls 100 events behind the senders (one group commit can write 50) still gets every event.
    server = homeserver_factory(filter_timeline_limit=-1)
    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        users = list(pool.map(lambda _: server.register(), range(SENDERS + READERS + NOISE_ROOMS)))
    owner, senders, readers, noise = users[0], users[:SENDERS], users[SENDERS:SENDERS + READERS], \
        users[SENDERS + READERS:]
    room = owner.create_room(preset="public_chat")
    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        list(pool.map(lambda u: u.join(room), senders[1:] + readers))
    noise_rooms = [u.create_room() for u in noise]
    tokens = [r.sync(filter=FULL_TIMELINE)["next_batch"] for r in readers]

    want = SENDERS * MESSAGES_EACH
    deadline = time.monotonic() + 120  # a failsafe: it takes 5-25 s
    seen: list[list[str]] = [[] for _ in readers]
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_read_until, args=(r, room, t, want, deadline, s, errors))
               for r, t, s in zip(readers, tokens, seen)]
    for t in threads:
        t.start()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=SENDERS + NOISE_ROOMS) as pool:
        noise_jobs = [pool.submit(_send_all, u, r, MESSAGES_EACH) for u, r in zip(noise, noise_rooms)]
        sent = list(pool.map(lambda u: _send_all(u, room, MESSAGES_EACH), senders))
        for job in noise_jobs:
            job.result()
    send_seconds = time.monotonic() - started
    for t in threads:
        t.join()
    assert not errors, errors

    sent_ids = {e for ids in sent for e in ids}
    assert len(sent_ids) == want
    server_order = _server_order(owner, room)
    assert len(server_order) == want and set(server_order) == sent_ids
    for ids in sent:  # each sender's messages keep their order
        positions = [server_order.index(e) for e in ids]
        assert positions == sorted(positions)
    for got in seen:
        assert len(got) == want, f"reader saw {len(got)} of {want} events"
        assert got == server_order
    print(f"\n{want} events from {SENDERS} senders (+{NOISE_ROOMS * MESSAGES_EACH} elsewhere) "
          f"in {send_seconds:.1f}s, read by {READERS} long-polling readers")


# -- transaction ids ---------------------------------------------------------------------------

def test_concurrent_retries_of_one_txn_id_make_one_event(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    txn = unique("txn")
    path = f"/rooms/{q(room)}/send/m.room.message/{q(txn)}"
    body = {"msgtype": "m.text", "body": "once only"}
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: alice.request("PUT", path, body), range(20)))
    assert {status for status, _ in answers} == {200}
    event_ids = {resp["event_id"] for _, resp in answers}
    assert len(event_ids) == 1
    assert alice.ok("PUT", path, body)["event_id"] in event_ids  # a later retry too

    chunk = alice.messages(room, dir="b", limit=50)["chunk"]
    assert [e["event_id"] for e in chunk if e.get("content", {}).get("body") == "once only"] == list(event_ids)


def test_same_txn_id_on_another_device_is_another_event(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    other_device = homeserver.login(alice.user_id)
    txn = unique("txn")
    first = alice.send(room, "from the first device", txn_id=txn)
    with ThreadPoolExecutor(max_workers=10) as pool:
        again = set(pool.map(lambda _: other_device.send(room, "from the second device", txn_id=txn), range(10)))
    assert len(again) == 1 and first not in again


def test_concurrent_sends_to_a_room_not_joined_are_refused(homeserver):
    alice, mallory = homeserver.register(), homeserver.register()
    room = alice.create_room()
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda i: mallory.request(
            "PUT", f"/rooms/{q(room)}/send/m.room.message/{unique('txn')}", {"msgtype": "m.text", "body": "x"}),
            range(10)))
    assert all(status == 403 and resp["errcode"] == "M_FORBIDDEN" for status, resp in answers), answers


@pytest.mark.parametrize("rooms", [12])
def test_rooms_written_concurrently_each_keep_their_order(homeserver, rooms):
    """Events of different rooms persist concurrently (several connections on PostgreSQL)."""
    users = [homeserver.register() for _ in range(rooms)]
    room_ids = [u.create_room() for u in users]
    with ThreadPoolExecutor(max_workers=rooms) as pool:
        sent = list(pool.map(lambda ur: _send_all(ur[0], ur[1], 25), zip(users, room_ids)))
    for user, room_id, ids in zip(users, room_ids, sent):
        chunk = user.messages(room_id, dir="f", limit=100)["chunk"]
        assert [e["event_id"] for e in chunk if e["type"] == "m.room.message"] == ids

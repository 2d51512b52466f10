"""Group commit of a room's events (homeserver/services/room_events/local.py): events sent to one room at once
are written a batch per transaction, and still each request is answered on its own terms, only once its event
is committed: an acknowledged event is in the room, a refused one is not, a transaction id retried at once
makes one event."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import q, unique

SENDS = 40


def _persist_transactions(server, metrics_port: int, desc: str = "persist_events") -> int:
    """How many ``desc`` transactions (``persist_events`` by default) the server committed (its transaction
    time histogram)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    try:
        conn.request("GET", "/_synapse/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "synapse_storage_transaction_time_count" and s.labels.get("desc") == desc:
                return int(s.value)
    return 0


def _put(user, room_id: str, body, txn_id: str) -> tuple[int, dict]:
    return user.request("PUT", f"/rooms/{q(room_id)}/send/m.room.message/{q(txn_id)}",
                        {"msgtype": "m.text", "body": body})


def test_concurrent_sends_to_one_room_are_batched_and_answered_each_on_its_own(monitored):
    server, metrics_port = monitored
    alice, outsider = server.register(), server.register()
    room = alice.create_room(preset="public_chat")
    before = _persist_transactions(server, metrics_port)
    retried = unique("txn")
    jobs = ([(alice, f"message {i}", unique("txn")) for i in range(SENDS)]
            + [(outsider, "not a member", unique("txn")) for _ in range(5)]
            + [(alice, "sent once", retried) for _ in range(5)])
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(lambda job: _put(job[0], room, job[1], job[2]), jobs))
    after = _persist_transactions(server, metrics_port)

    plain, refused, retries = answers[:SENDS], answers[SENDS:SENDS + 5], answers[SENDS + 5:]
    assert all(status == 200 for status, _ in plain), plain
    assert all(status == 403 and body["errcode"] == "M_FORBIDDEN" for status, body in refused), refused
    assert all(status == 200 for status, _ in retries), retries
    assert len({body["event_id"] for _, body in retries}) == 1

    # Every acknowledged event is in the room once, in one order; nothing refused is.
    events = alice.messages(room, dir="b", limit=200)["chunk"]
    bodies = [e["content"]["body"] for e in events if e["type"] == "m.room.message"]
    assert sorted(bodies) == sorted([f"message {i}" for i in range(SENDS)] + ["sent once"])
    ids = {e["event_id"] for e in events}
    assert {body["event_id"] for status, body in plain} <= ids
    # Fewer transactions than events: at least one batch held several (40 requests at once; the first
    # append holds the room's lock while the others queue).
    assert after - before < SENDS + 1, (after - before, SENDS + 1)


def test_a_batch_keeps_each_event_authorised_on_the_state_before_it(monitored):
    """A state change and the messages queued behind it: a member banned in the same batch cannot send after
    the ban, and every message sent before it stays."""
    server, _ = monitored
    alice, bob = server.register(), server.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    with ThreadPoolExecutor(max_workers=12) as pool:
        first = [pool.submit(_put, bob, room, f"before {i}", unique("txn")) for i in range(5)]
        ban = pool.submit(alice.request, "POST", f"/rooms/{q(room)}/ban", {"user_id": bob.user_id})
        answers = [f.result() for f in first]
        assert ban.result()[0] == 200
    later = _put(bob, room, "after the ban", unique("txn"))
    assert later[0] == 403, later
    assert all(status in (200, 403) for status, _ in answers)
    events = alice.messages(room, dir="b", limit=100)["chunk"]
    shown = {e["event_id"] for e in events}
    for status, body in answers:
        if status == 200:
            assert body["event_id"] in shown
    ban_event = next(e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id
                     and e["content"]["membership"] == "ban")
    newer = events[:events.index(ban_event)]  # dir=b: newest first
    assert not [e for e in newer if e["sender"] == bob.user_id]


def test_sends_to_several_rooms_at_once_are_each_answered_and_a_retry_after_its_commit_makes_one_event(monitored):
    """Several rooms' batches may share a transaction (group commit across rooms). A transaction id sent again
    after its event was committed is refused by the store, found, and answered with the first event, while the
    other rooms' events are written; an event the database refuses (PostgreSQL holds no NUL in text) fails
    alone, whatever rooms its transaction held."""
    server, metrics_port = monitored
    alice = server.register()
    rooms = [alice.create_room(preset="public_chat") for _ in range(4)]
    retried = unique("txn")
    status, first = _put(alice, rooms[0], "first", retried)
    assert status == 200, first
    nul = {"msgtype": "m.text", "body": "reply",
           "m.relates_to": {"rel_type": "m.reference", "event_id": "$a\u0000b"}}
    jobs = ([(room, f"message {i} in {n}", unique("txn")) for i in range(10) for n, room in enumerate(rooms)]
            + [(rooms[0], "first", retried) for _ in range(3)] + [(rooms[2], nul, unique("txn"))])
    before = _persist_transactions(server, metrics_port)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(lambda job: alice.request(
            "PUT", f"/rooms/{q(job[0])}/send/m.room.message/{q(job[2])}",
            job[1] if isinstance(job[1], dict) else {"msgtype": "m.text", "body": job[1]}), jobs))
    after = _persist_transactions(server, metrics_port)

    plain, retries, (nul_status, nul_body) = answers[:40], answers[40:43], answers[43]
    assert all(status == 200 for status, _ in plain), plain
    assert retries == [(200, {"event_id": first["event_id"]})] * 3, retries
    if server.config["database"]["name"] != "sqlite3":
        assert nul_status == 400 and nul_body["errcode"] == "M_INVALID_PARAM", (nul_status, nul_body)
    else:
        assert nul_status == 200, nul_body
    for n, room in enumerate(rooms):
        bodies = [e["content"]["body"] for e in alice.messages(room, dir="b", limit=100)["chunk"]
                  if e["type"] == "m.room.message"]
        expected = [f"message {i} in {n}" for i in range(10)] + (["first"] if n == 0 else [])
        if n == 2 and nul_status == 200:
            expected.append("reply")
        assert sorted(bodies) == sorted(expected), (n, bodies)
    assert after - before < 41, (after - before)


def test_the_events_of_a_sender_known_offline_read_no_presence(monitored):
    """Sending is activity (presence): the state of a local user read offline once is kept, so their next events
    read nothing more; once they are online, their events keep them so."""
    server, metrics_port = monitored
    alice = server.register()
    room = alice.create_room(preset="public_chat")
    status, body = alice.request("GET", f"/presence/{q(alice.user_id)}/status")  # read: offline
    assert status == 200 and body["presence"] == "offline", body
    before = _persist_transactions(server, metrics_port, "get_presence")
    for i in range(5):
        assert _put(alice, room, f"message {i}", unique("txn"))[0] == 200
    # At most the read that the room's creation started (answered before it may have finished), not one a send.
    assert _persist_transactions(server, metrics_port, "get_presence") - before <= 1
    status, _ = alice.request("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "online"})
    assert status == 200
    assert _put(alice, room, "online now", unique("txn"))[0] == 200
    status, body = alice.request("GET", f"/presence/{q(alice.user_id)}/status")
    assert status == 200 and body["presence"] == "online" and body["currently_active"] is True, body

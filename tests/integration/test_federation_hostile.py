"""A hostile server in a room (issue 13): forged signatures, replayed transactions, events for other servers'
users, EDUs for rooms it is not in, over-full and out-of-order batches, events over 64 KiB, and state that tries
to take power back. None of it reaches a local client (/sync, /messages, /state) or changes the room's state;
each refused PDU is counted by reason and logged with the server that sent it.

The hostile server is a real Hexagone process (its keys served at /_matrix/key/v2/server) whose signing key
the test holds: the test signs events and X-Matrix requests as that server, the way it would.
"""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import quote

import pytest

from federation.request_auth import sign_request
from tests.integration.federation import EventForge, FederationProxy, put_transaction, send_transaction
from tests.integration.harness import free_port, shared_room, unique

DEADLINE_S = 15.0


@pytest.fixture()
def room(home, hexagone_peer):
    """A room of ``host`` that a user of the attacker has joined: (owner, mallory, room id, forge)."""
    owner, mallory = home.process.register(), hexagone_peer.process.register()
    room_id = shared_room(owner, mallory, public=True)
    return owner, mallory, room_id, EventForge(home, owner, room_id, hexagone_peer, mallory)


def log_lines(server, pattern: str, count: int = 1) -> list[re.Match]:
    """Wait until the server's log holds ``count`` lines matching ``pattern``; return their matches."""
    end = time.monotonic() + DEADLINE_S
    while True:
        found = [m for line in server.process.log(tail=100_000).splitlines() if (m := re.search(pattern, line))]
        if len(found) >= count or time.monotonic() > end:
            assert len(found) >= count, f"{count} log lines like {pattern!r}, found {len(found)}"
            return found


def assert_rejected(home, attacker, pdus: list[dict], kind: str) -> None:
    """Each PDU refused: a log line naming it, the attacking server and the check it failed (counted)."""
    for pdu in pdus:
        log_lines(home, rf"rejected PDU {re.escape(pdu['_id'])} from {re.escape(attacker.name)}: .* \[{kind} #\d+\]")


def assert_unseen(owner, room_id: str, since: str, pdus: list[dict], honest: dict | None = None) -> None:
    """None of ``pdus`` reaches the owner's /sync (timeline or state) or /messages. With ``honest``, an event
    sent after them that must arrive, so that the sync has seen everything they could have changed."""
    bad = {p["_id"] for p in pdus}
    if honest is not None:
        owner.timeline_until(room_id, lambda e: e["event_id"] == honest["_id"], since)
    room = owner.sync(since)["rooms"]["join"].get(room_id, {})
    seen = {e["event_id"] for section in ("timeline", "state") for e in room.get(section, {}).get("events", [])}
    assert not bad & seen
    history = {e["event_id"] for e in owner.messages(room_id, dir="b", limit=100)["chunk"]}
    assert not bad & history
    for event_id in bad:
        assert owner.request("GET", f"/rooms/{quote(room_id)}/event/{quote(event_id)}")[0] == 404


def state_of(owner, room_id: str) -> dict:
    return {(e["type"], e["state_key"]): e["event_id"] for e in owner.ok("GET", f"/rooms/{quote(room_id)}/state")}


def test_forged_event_signatures_and_other_servers_users_are_rejected(home, hexagone_peer, room):
    """Spec "Checks performed on receipt of a PDU" step 2: every server of the sender must have signed; the
    origin cannot speak for our users or a third server's (sender domain != origin, not a relayed event)."""
    owner, mallory, room_id, forge = room
    _, since = owner.sync_until(lambda r: r.get("next_batch"))
    before = state_of(owner, room_id)
    third = f"localhost:{free_port()}"  # nobody answers there: its keys cannot be fetched
    forged = [
        forge.message(mallory.user_id, "tampered after signing", origin_server_ts=1),
        forge.message(mallory.user_id, "signed by no one", signatures={}),
        forge.message(mallory.user_id, "unknown key", signatures={
            hexagone_peer.name: {"ed25519:nope": next(iter(forge.message(mallory.user_id, "x")["signatures"][
                hexagone_peer.name].values()))}}),
        forge.message(owner.user_id, "as the host's own user"),
        forge.event(owner.user_id, "m.room.topic", {"topic": "owned by the attacker"}, state_key=""),
        forge.message(f"@eve:{third}", "as a third server's user"),
    ]
    honest = forge.message(mallory.user_id, "honest")
    result = send_transaction(home, hexagone_peer, forged + [honest])
    assert all("error" in result[p["_id"]] for p in forged), result
    assert result[honest["_id"]] == {}
    assert_unseen(owner, room_id, since, forged, honest)
    assert state_of(owner, room_id) == before
    assert_rejected(home, hexagone_peer, forged, "signature")


def test_forged_request_signatures_are_refused(home, hexagone_peer, room):
    """Spec "Request Authentication": a /send whose X-Matrix signature does not cover what was sent is 401."""
    owner, mallory, room_id, forge = room
    message = forge.message(mallory.user_id, "smuggled")
    path = f"/_matrix/federation/v1/send/{unique('txn')}"
    signed_body = {"origin": hexagone_peer.name, "origin_server_ts": 0, "pdus": [], "edus": []}
    sent_body = dict(signed_body, pdus=[{k: v for k, v in message.items() if k != "_id"}])
    key, attacker = hexagone_peer.signing_key, hexagone_peer.name
    headers = {
        "body swapped after signing": sign_request(key, attacker, home.name, "PUT", path, signed_body),
        "signed as the host itself": sign_request(key, home.name, home.name, "PUT", path, sent_body),
        "signed for another destination": sign_request(key, attacker, "elsewhere.example", "PUT", path,
                                                       sent_body).replace("elsewhere.example", home.name),
    }
    for what, header in headers.items():
        status, body = home.https("PUT", path, sent_body, {"Authorization": header})
        assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED"), what
    assert message["_id"] not in {e["event_id"] for e in owner.messages(room_id, dir="b", limit=20)["chunk"]}


def test_replayed_transactions_change_nothing(home, hexagone_peer, room):
    """Spec PUT /send/{txnId}: a transaction id is processed once (a repeat gets the first answer, whatever it
    carries); PDUs sent again, in a new transaction or in several at once, are stored once."""
    owner, mallory, room_id, forge = room
    first, second = forge.message(mallory.user_id, "first"), forge.message(mallory.user_id, "second")
    txn_id = unique("txn")
    status, answer = put_transaction(home, hexagone_peer, [first], txn_id=txn_id)
    assert (status, answer) == (200, {"pdus": {first["_id"]: {}}})
    assert put_transaction(home, hexagone_peer, [second], txn_id=txn_id) == (200, answer)
    assert put_transaction(home, hexagone_peer, [first, first])[1] == answer  # again, twice, in a new transaction

    concurrent = forge.message(mallory.user_id, "concurrent", prev=first["_id"])
    txn_id, answers = unique("txn"), []
    threads = [threading.Thread(target=lambda: answers.append(
        put_transaction(home, hexagone_peer, [concurrent], txn_id=txn_id))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [(200, {"pdus": {concurrent["_id"]: {}}})] * 4
    bodies = [e["content"].get("body") for e in owner.messages(room_id, dir="b", limit=20)["chunk"]
              if e["type"] == "m.room.message"]
    assert bodies == ["concurrent", "first"], bodies


def test_edus_for_rooms_and_users_not_the_origins_are_ignored(home, hexagone_peer, room):
    """Spec "Typing Notifications", "Receipts", "Send-to-device messaging", "Device Management": a server
    speaks for its own users, in rooms where they are joined. Each EDU refused is counted and logged."""
    owner, mallory, room_id, forge = room
    private = owner.create_room()  # no user of the attacker is in it
    private_event = owner.send(private, "private")
    _, since = owner.sync_until(lambda r: r.get("next_batch"))
    forged = [
        {"edu_type": "m.typing", "content": {"room_id": private, "user_id": mallory.user_id, "typing": True}},
        {"edu_type": "m.receipt", "content": {private: {"m.read": {
            mallory.user_id: {"event_ids": [private_event], "data": {"ts": 1}}}}}},
        {"edu_type": "m.direct_to_device", "content": {
            "sender": owner.user_id, "type": "m.forged", "message_id": unique("m"),
            "messages": {owner.user_id: {"*": {"forged": True}}}}},
        {"edu_type": "m.device_list_update", "content": {
            "user_id": owner.user_id, "device_id": "EVIL", "stream_id": 1, "prev_id": [],
            "keys": {"user_id": owner.user_id, "device_id": "EVIL", "algorithms": [], "keys": {}}}},
    ]
    honest = {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": mallory.user_id, "typing": True}}
    assert put_transaction(home, hexagone_peer, edus=forged + [honest])[0] == 200

    def typing(resp):
        rooms = resp["rooms"]["join"]
        return {r: e["content"]["user_ids"] for r in rooms for e in rooms[r].get("ephemeral", {}).get("events", [])
                if e["type"] == "m.typing" and e["content"]["user_ids"]} or None

    assert owner.sync_until(typing, since)[0] == {room_id: [mallory.user_id]}
    resp = owner.sync(since)
    ephemeral = resp["rooms"]["join"].get(private, {}).get("ephemeral", {}).get("events", [])
    assert [e for e in ephemeral if e["content"] and e["type"] in ("m.typing", "m.receipt")] == []
    assert resp.get("to_device", {}).get("events", []) == []
    devices = owner.ok("POST", "/keys/query", {"device_keys": {owner.user_id: []}})["device_keys"][owner.user_id]
    assert "EVIL" not in devices
    origin = re.escape(hexagone_peer.name)
    for edu_type, kind in [("m.typing", "edu_not_in_room"), ("m.receipt", "edu_not_in_room"),
                           ("m.direct_to_device", "edu_invalid"), ("m.device_list_update", "edu_invalid")]:
        log_lines(home, rf"rejected EDU {re.escape(edu_type)} from {origin}: .* \[{kind} #\d+\]")


def test_overfull_transactions_are_refused(home, hexagone_peer, room):
    """Spec "Transactions": at most 50 PDUs and 100 EDUs; more is refused whole (400, as Synapse), not cut."""
    owner, mallory, room_id, forge = room
    fifty_one = [forge.message(mallory.user_id, "flood 0")]
    for i in range(1, 51):
        fifty_one.append(forge.message(mallory.user_id, f"flood {i}", prev=fifty_one[-1]["_id"]))
    status, body = put_transaction(home, hexagone_peer, fifty_one)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON"), body
    to_device = [{"edu_type": "m.direct_to_device", "content": {
        "sender": mallory.user_id, "type": "m.flood", "message_id": unique("m"),
        "messages": {owner.user_id: {"*": {"i": i}}}}} for i in range(101)]
    status, body = put_transaction(home, hexagone_peer, edus=to_device)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON"), body
    _, since = owner.sync_until(lambda r: r.get("next_batch"))
    assert put_transaction(home, hexagone_peer, fifty_one[:50], edus=to_device[:100])[0] == 200  # the limits allowed
    events, _ = owner.sync_until(lambda r: r["to_device"]["events"], since)
    assert [e["content"]["i"] for e in events] == list(range(100))
    history = {e["event_id"] for e in owner.messages(room_id, dir="b", limit=100)["chunk"]}
    assert {p["_id"] for p in fifty_one[:50]} <= history and fifty_one[50]["_id"] not in history


def test_out_of_order_and_oversized_batches(home, hexagone_peer, room):
    """A transaction's events arrive children first: each is handled after its parent. An event whose parents
    nobody can show, or over 64 KiB (room version "Size limits"), is refused."""
    owner, mallory, room_id, forge = room
    _, since = owner.sync_until(lambda r: r.get("next_batch"))
    chain = [forge.message(mallory.user_id, "one")]
    for body in ("two", "three"):
        chain.append(forge.message(mallory.user_id, body, prev=chain[-1]["_id"]))
    assert send_transaction(home, hexagone_peer, chain[::-1]) == {p["_id"]: {} for p in chain}
    bodies = [e["content"]["body"] for e in owner.messages(room_id, dir="b", limit=3)["chunk"]]
    assert bodies == ["three", "two", "one"]

    orphan = forge.event(mallory.user_id, "m.room.message", {"msgtype": "m.text", "body": "orphan"},
                         prev=[f"${unique('nowhere')}"])
    huge = forge.message(mallory.user_id, "x" * 70_000)
    honest = forge.message(mallory.user_id, "honest", prev=chain[-1]["_id"])
    result = send_transaction(home, hexagone_peer, [orphan, huge, honest])
    assert "error" in result[orphan["_id"]] and "error" in result[huge["_id"]] and result[honest["_id"]] == {}
    assert_unseen(owner, room_id, since, [orphan, huge], honest)
    assert_rejected(home, hexagone_peer, [orphan], "missing_prev")
    assert_rejected(home, hexagone_peer, [huge], "format")


def test_power_level_changes_without_power_are_rejected(home, hexagone_peer, room):
    """Auth rules "m.room.power_levels" and "Checks performed on receipt of a PDU" steps 4-5: a user without
    power cannot give it to themselves, not through the event's own auth events (a power levels event left out,
    or one forged in the owner's name) nor by building on events nobody else has."""
    owner, mallory, room_id, forge = room
    _, since = owner.sync_until(lambda r: r.get("next_batch"))
    before = state_of(owner, room_id)
    levels = owner.ok("GET", f"/rooms/{quote(room_id)}/state/m.room.power_levels")
    grab = dict(levels, users={**levels.get("users", {}), mallory.user_id: 100})
    self_promotion = forge.event(mallory.user_id, "m.room.power_levels", grab, state_key="")
    # Without the power levels event among its auth events, as if the room had none.
    no_levels = forge.event(mallory.user_id, "m.room.topic", {"topic": "no levels"}, state_key="",
                            auth=forge.auth_of(("m.room.member", mallory.user_id)))
    in_owners_name = forge.event(owner.user_id, "m.room.power_levels", grab, state_key="")
    on_forged_levels = forge.event(mallory.user_id, "m.room.topic", {"topic": "on forged levels"}, state_key="",
                                   prev=[in_owners_name["_id"]],
                                   auth=[in_owners_name["_id"]] + forge.auth_of(("m.room.member", mallory.user_id)))
    attempts = [self_promotion, no_levels, in_owners_name, on_forged_levels]
    honest = forge.message(mallory.user_id, "honest")
    result = send_transaction(home, hexagone_peer, attempts + [honest])
    # Rejected by the auth rules: processed, so {} (as Synapse); forged, or built on a forged event (a prev event
    # its server will not give): an error.
    assert all(result[p["_id"]] == {} for p in (self_promotion, no_levels)), result
    assert all("error" in result[p["_id"]] for p in (in_owners_name, on_forged_levels)), result
    assert result[honest["_id"]] == {}, result
    assert_unseen(owner, room_id, since, attempts, honest)
    assert state_of(owner, room_id) == before
    assert_rejected(home, hexagone_peer, [self_promotion, no_levels], "auth_events")
    assert_rejected(home, hexagone_peer, [in_owners_name], "signature")
    assert_rejected(home, hexagone_peer, [on_forged_levels], "missing_prev")


@pytest.fixture(scope="module")
def liar(fed, ca):
    """Another hostile server, reached through a proxy that answers for it where a test says: (server, proxy)."""
    proxy = FederationProxy(ca)
    server = fed(name_port=proxy.port)
    proxy.target_port = server.tls_port
    yield server, proxy
    proxy.close()


@pytest.mark.parametrize("lying", [False, True], ids=["fork_in_the_dag", "state_lied_about"])
def test_an_old_state_does_not_take_power_back(home, hexagone_peer, liar, lying):
    """State resolution v2 against a demoted user. An event built on the state from before the demotion (after
    an old event of the room, or after an event that /get_missing_events gives whose own prev event nobody has,
    its server lying that the state there is the old one) is soft-failed (spec step 6: never shown, never a forward extremity); one built on today's state with
    the old power levels as auth events is rejected (step 5); an event that merges the fork back leaves the
    room's state as the owner set it."""
    server, proxy = liar if lying else (hexagone_peer, None)
    owner, mallory = home.process.register(), server.process.register()
    room_id = shared_room(owner, mallory, public=True)
    levels = owner.ok("GET", f"/rooms/{quote(room_id)}/state/m.room.power_levels")
    topic = owner.put_state(room_id, "m.room.topic", {"topic": "the owner's topic"})
    promoted = owner.put_state(room_id, "m.room.power_levels",
                               dict(levels, users={**levels.get("users", {}), mallory.user_id: 50}))
    old_state = state_of(owner, room_id)
    owner.put_state(room_id, "m.room.power_levels", dict(levels, users={**levels.get("users", {}),
                                                                         mallory.user_id: 0}))
    _, since = owner.sync_until(lambda r: r.get("next_batch"))
    forge = EventForge(home, owner, room_id, server, mallory)
    old_power = [promoted] + forge.auth_of(("m.room.member", mallory.user_id))
    stale = forge.event(mallory.user_id, "m.room.topic", {"topic": "stale power"}, state_key="", auth=old_power)
    assert send_transaction(home, server, [stale])[stale["_id"]] == {}  # processed: the state before forbids it
    assert_rejected(home, server, [stale], "state_before")
    fork_after = promoted
    if lying:
        gap = forge.message(mallory.user_id, "across the gap", prev=f"${unique('nowhere')}")
        fork_after = gap["_id"]
        proxy.answers = {
            "/_matrix/federation/v1/get_missing_events/": (200, {"events": [
                {k: v for k, v in gap.items() if k != "_id"}]}),
            "/_matrix/federation/v1/state_ids/": (200, {"pdu_ids": list(old_state.values()), "auth_chain_ids": []}),
            "/_matrix/federation/v1/event/": (404, {"errcode": "M_NOT_FOUND", "error": "Event not found"})}
    try:
        fork = forge.event(mallory.user_id, "m.room.topic", {"topic": "pwned"}, state_key="", prev=fork_after,
                           auth=old_power)
        assert send_transaction(home, server, [fork]) == {fork["_id"]: {}}  # soft-failed: accepted, not applied
    finally:
        if proxy is not None:
            proxy.answers = {}
    log_lines(home, rf"soft-failed PDU {re.escape(fork['_id'])} from {re.escape(server.name)}: "
                    r".* \[soft_failed #\d+\]")
    merge = forge.event(mallory.user_id, "m.room.message", {"msgtype": "m.text", "body": "merge"},
                        prev=[fork["_id"], forge.latest])
    assert send_transaction(home, server, [merge]) == {merge["_id"]: {}}
    assert_unseen(owner, room_id, since, [stale, fork], merge)
    assert state_of(owner, room_id)[("m.room.topic", "")] == topic
    assert owner.ok("GET", f"/rooms/{quote(room_id)}/state/m.room.topic") == {"topic": "the owner's topic"}


def test_rejections_are_counted_by_reason(home, hexagone_peer, room):
    """The rejection counter, read through the log lines of the real process: one more per refused PDU."""
    owner, mallory, room_id, forge = room
    forged = [forge.message(mallory.user_id, f"forged {i}", origin_server_ts=i) for i in range(3)]
    send_transaction(home, hexagone_peer, forged)
    counts = [int(log_lines(home, rf"rejected PDU {re.escape(p['_id'])} from .* \[signature #(\d+)\]")[0][1])
              for p in forged]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]

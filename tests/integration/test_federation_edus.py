"""Typing notifications, read receipts and presence across real TLS federation, between Hexagone and a
peer that is another Hexagone or a real Synapse (with presence enabled), in both directions.

Spec v1.19 server-server "Typing Notifications", "Receipts", "Presence"; and a server may only speak for
its own users: EDUs about anyone else are ignored.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import q, shared_room, unique
from tests.integration.test_ephemeral import ephemeral, receipts_of
from tests.integration.test_push_presence_search import presence_of


@pytest.fixture(scope="module")
def synapse_presence() -> bool:
    return True


def joined_pair(a, b):
    """Alice on ``a`` creates a public room that Bob on ``b`` joins; both have seen the join.

    Returns (alice, bob, room_id, alice's sync token, bob's sync token).
    """
    alice, bob = a.process.register(), b.process.register()
    room_id = shared_room(alice, bob, public=True)
    # (Synapse leaves out a room it joined with partial state, and then an empty "rooms", until it has the state.)
    _, since_b = bob.sync_until(lambda r: room_id in r.get("rooms", {}).get("join", {}))
    return alice, bob, room_id, alice.sync()["next_batch"], since_b


def typing_in(room_id):
    def find(resp):
        events = ephemeral(resp, room_id, "m.typing")
        return events[-1]["content"]["user_ids"] if events else None
    return find


def test_typing_both_ways(pair):
    alice, bob, room_id, since_a, since_b = joined_pair(*pair)
    path = f"/rooms/{q(room_id)}/typing/"
    alice.ok("PUT", path + q(alice.user_id), {"typing": True, "timeout": 30000})
    typers, since_b = bob.sync_until(lambda r: typing_in(room_id)(r) or None, since_b)
    assert typers == [alice.user_id]
    alice.ok("PUT", path + q(alice.user_id), {"typing": False})
    _, since_b = bob.sync_until(lambda r: typing_in(room_id)(r) == [], since_b)

    bob.ok("PUT", path + q(bob.user_id), {"typing": True, "timeout": 30000})
    typers, since_a = alice.sync_until(lambda r: typing_in(room_id)(r) or None, since_a)
    assert typers == [bob.user_id]
    # A member who leaves stops typing, here and there.
    bob.leave(room_id)
    alice.sync_until(lambda r: typing_in(room_id)(r) == [], since_a)


def test_read_receipts_both_ways_threaded_and_private(pair):
    alice, bob, room_id, since_a, since_b = joined_pair(*pair)
    first = alice.send(room_id, "read me")
    second = alice.send(room_id, "and me")
    bob.sync_until(lambda r: any(e["event_id"] == second for e in
                                 r["rooms"]["join"].get(room_id, {}).get("timeline", {}).get("events", [])), since_b)

    # A private receipt stays on Bob's server: the public one sent after it arrives alone.
    bob.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read.private/{q(first)}", {})
    bob.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(first)}", {"thread_id": "main"})
    found, since_a = alice.sync_until(lambda r: receipts_of(r, room_id).get((first, "m.read", bob.user_id)),
                                      since_a)
    assert found["thread_id"] == "main" and isinstance(found["ts"], int)
    seen = alice.sync(None)
    assert not any(rtype == "m.read.private" for (_, rtype, _) in receipts_of(seen, room_id))

    bob.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(second)}", {})
    found, _ = alice.sync_until(lambda r: receipts_of(r, room_id).get((second, "m.read", bob.user_id)), since_a)
    assert "thread_id" not in found

    alice.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(second)}", {})
    found, _ = bob.sync_until(lambda r: receipts_of(r, room_id).get((second, "m.read", alice.user_id)), since_b)
    assert isinstance(found["ts"], int)


def test_presence_both_ways(pair):
    alice, bob, room_id, since_a, since_b = joined_pair(*pair)
    alice.ok("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "online", "status_msg": "on a train"})
    seen, since_b = bob.sync_until(
        lambda r: (presence_of(r, alice.user_id) or {}).get("status_msg") == "on a train"
        and presence_of(r, alice.user_id), since_b)
    assert seen["presence"] == "online" and seen["currently_active"] is True
    assert bob.ok("GET", f"/presence/{q(alice.user_id)}/status")["status_msg"] == "on a train"

    bob.ok("PUT", f"/presence/{q(bob.user_id)}/status", {"presence": "unavailable", "status_msg": "away"})
    seen, _ = alice.sync_until(
        lambda r: (presence_of(r, bob.user_id) or {}).get("presence") == "unavailable"
        and presence_of(r, bob.user_id), since_a)
    assert seen["status_msg"] == "away"


def test_presence_is_shared_when_a_room_is_joined(pair):
    """Whoever newly shares a room hears the presence of the other side's users (as Synapse does)."""
    a, b = pair
    alice, bob = a.process.register(), b.process.register()
    alice.ok("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "online", "status_msg": "here first"})
    bob.ok("PUT", f"/presence/{q(bob.user_id)}/status", {"presence": "unavailable", "status_msg": "joining"})
    alias = unique("pres")
    room_id = alice.create_room(preset="public_chat", room_alias_name=alias)
    assert bob.join(f"#{alias}:{a.name}") == room_id

    def status_of(user):
        return lambda r: (presence_of(r, user.user_id) or {}).get("status_msg")

    assert bob.sync_until(status_of(alice))[0] == "here first"
    assert alice.sync_until(status_of(bob))[0] == "joining"


def send_transaction(target, origin, edus: list[dict]) -> None:
    """A /send transaction signed by ``origin`` (a Hexagone whose key the test holds)."""
    status, resp = target.signed("PUT", f"/_matrix/federation/v1/send/{unique('txn')}", origin=origin.name,
                                 key=origin.signing_key, content={"origin": origin.name, "pdus": [], "edus": edus,
                                                                  "origin_server_ts": 0})
    assert status == 200, resp


def test_a_server_speaks_only_for_its_own_users(home, hexagone_peer):
    """EDUs from the peer about home's users (or a third server's) change nothing; its own users' do."""
    alice, bob, room_id, since_a, _ = joined_pair(home, hexagone_peer)
    carol = home.process.register()
    alice.invite(room_id, carol)
    carol.join(room_id)
    event_id = alice.send(room_id, "forge a receipt on me")
    forged = [
        {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": carol.user_id, "typing": True}},
        {"edu_type": "m.receipt", "content": {room_id: {"m.read": {
            carol.user_id: {"event_ids": [event_id], "data": {"ts": 1}}}}}},
        {"edu_type": "m.presence", "content": {"push": [
            {"user_id": carol.user_id, "presence": "online", "status_msg": "forged", "last_active_ago": 0},
            {"user_id": "@x:third.example", "presence": "online", "last_active_ago": 0}]}},
        {"edu_type": "m.direct_to_device", "content": {"sender": carol.user_id, "type": "m.forged",
                                                        "message_id": unique("m"),
                                                        "messages": {alice.user_id: {"*": {"forged": True}}}}},
        {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": bob.user_id, "typing": "yes"}},
        {"edu_type": "m.receipt", "content": {room_id: {"m.read": {bob.user_id: {"event_ids": []}}}}},
        {"edu_type": "m.presence", "content": {"push": [{"user_id": bob.user_id, "presence": "dancing"}]}},
        {"edu_type": "m.unknown_edu", "content": {"anything": 1}},
        "not an object",
    ]
    honest = {"edu_type": "m.direct_to_device", "content": {
        "sender": bob.user_id, "type": "m.honest", "message_id": unique("m"),
        "messages": {alice.user_id: {"*": {"honest": True}}}}}
    send_transaction(home, hexagone_peer, forged + [honest])
    events, since_a = alice.sync_until(lambda r: r["to_device"]["events"], since_a)
    assert events == [{"sender": bob.user_id, "type": "m.honest", "content": {"honest": True}}]
    everything = alice.sync()
    assert typing_in(room_id)(everything) in (None, [])
    assert all(user != carol.user_id for (_, _, user) in receipts_of(everything, room_id))
    assert presence_of(everything, carol.user_id) is None
    # The same message id again is the same message: delivered once.
    send_transaction(home, hexagone_peer, [honest])
    bob_typing = {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": bob.user_id, "typing": True}}
    send_transaction(home, hexagone_peer, [bob_typing])
    resp, _ = alice.sync_until(lambda r: typing_in(room_id)(r) and r, since_a)
    assert typing_in(room_id)(resp) == [bob.user_id] and resp["to_device"]["events"] == []

"""What another server may read of a room (server-server "Retrieving events", "Backfilling",
"Server Access Control Lists"), with real signed requests from a peer Hexagone whose key the test holds.

A server reads a room only while one of its users is joined (or, peeking, while the room is
world-readable), and never when the room's ACL denies it; each event comes pruned unless one of its
users could see it under the history visibility at that event. Also: ACL'd EDUs, receipt data, and
redactions received over federation.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.federation import EventForge, send_transaction
from tests.integration.harness import q, unique
from tests.integration.test_ephemeral import ephemeral

F = "/_matrix/federation/v1"


def read(home, hexagone_peer, path: str, body=None) -> tuple[int, dict]:
    """A request to ``home`` signed by ``peer``."""
    method = "GET" if body is None else "POST"
    return home.signed(method, F + path, origin=hexagone_peer.name, key=hexagone_peer.signing_key, content=body)


def reads(room_id: str, event_id: str) -> dict[str, tuple[str, dict | None]]:
    """Every federation read of a room, at ``event_id``."""
    return {
        "event": (f"/event/{q(event_id)}", None),
        "state": (f"/state/{q(room_id)}?event_id={q(event_id)}", None),
        "state_ids": (f"/state_ids/{q(room_id)}?event_id={q(event_id)}", None),
        "event_auth": (f"/event_auth/{q(room_id)}/{q(event_id)}", None),
        "backfill": (f"/backfill/{q(room_id)}?v={q(event_id)}&limit=10", None),
        "get_missing_events": (f"/get_missing_events/{q(room_id)}",
                               {"earliest_events": [], "latest_events": [event_id], "limit": 10}),
        "timestamp_to_event": (f"/timestamp_to_event/{q(room_id)}?ts=0&dir=f", None),
    }


def assert_nothing_readable(home, hexagone_peer, room_id: str, event_id: str) -> None:
    answers = {name: read(home, hexagone_peer, path, body) for name, (path, body) in reads(room_id, event_id).items()}
    assert {name: (status, body.get("errcode")) for name, (status, body) in answers.items()} == {
        name: (403, "M_FORBIDDEN") for name in answers}, answers


def wait_membership(owner, room_id: str, user_id: str, membership: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, content = owner.state(room_id, "m.room.member", user_id)
        if status == 200 and content.get("membership") == membership:
            return
        time.sleep(0.05)
    raise AssertionError(f"{user_id} never became {membership} in {room_id}")


def secret_room(owner, **extra) -> tuple[str, str]:
    """A room with a secret message in it: (room id, the message's id)."""
    room_id = owner.create_room(**extra)
    return room_id, owner.send(room_id, "secret history")


def test_a_knocking_server_reads_nothing(home, hexagone_peer):
    owner, knocker = home.process.register(), hexagone_peer.process.register()
    room_id, secret = secret_room(owner, preset="private_chat", room_version="10", initial_state=[
        {"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    knocker.ok("POST", f"/knock/{q(room_id)}", {}, params={"server_name": home.name})
    wait_membership(owner, room_id, knocker.user_id, "knock")
    assert_nothing_readable(home, hexagone_peer, room_id, secret)


def invited_room(home, hexagone_peer):
    """A private room with a secret in it, a user of ``peer`` invited: (owner, guest, room id, secret id)."""
    owner, guest = home.process.register(), hexagone_peer.process.register()
    room_id, secret = secret_room(owner, preset="private_chat")
    owner.invite(room_id, guest)
    wait_membership(owner, room_id, guest.user_id, "invite")
    return owner, guest, room_id, secret


def test_an_invited_server_reads_nothing(home, hexagone_peer):
    _, _, room_id, secret = invited_room(home, hexagone_peer)
    assert_nothing_readable(home, hexagone_peer, room_id, secret)


def test_a_server_that_left_reads_nothing(home, hexagone_peer):
    owner, guest, room_id, _ = invited_room(home, hexagone_peer)
    guest.join(room_id)
    wait_membership(owner, room_id, guest.user_id, "join")
    guest.leave(room_id)
    wait_membership(owner, room_id, guest.user_id, "leave")
    after = owner.send(room_id, "said after they left")
    assert_nothing_readable(home, hexagone_peer, room_id, after)
    status, body = read(home, hexagone_peer, f"/hierarchy/{q(room_id)}")
    assert (status, body.get("errcode")) == (404, "M_NOT_FOUND"), body


def test_a_banned_server_reads_nothing(home, hexagone_peer):
    owner, guest = home.process.register(), hexagone_peer.process.register()
    room_id, _ = secret_room(owner, preset="public_chat")
    guest.ok("POST", f"/join/{q(room_id)}", {}, params={"via": home.name})
    wait_membership(owner, room_id, guest.user_id, "join")
    owner.ok("POST", f"/rooms/{q(room_id)}/ban", {"user_id": guest.user_id})
    after = owner.send(room_id, "said after the ban")
    assert_nothing_readable(home, hexagone_peer, room_id, after)


def acl_denied_room(home, hexagone_peer):
    """A room a user of ``peer`` joined, whose ACL then denies ``peer``: (owner, guest, room id, event id).

    Both servers are named ``localhost:<port>`` and ACLs ignore ports, so the ACL denies ``localhost``; the
    owner's server does not check its own users' events against the ACL."""
    owner, guest = home.process.register(), hexagone_peer.process.register()
    room_id, _ = secret_room(owner, preset="public_chat")
    guest.ok("POST", f"/join/{q(room_id)}", {}, params={"via": home.name})
    wait_membership(owner, room_id, guest.user_id, "join")
    owner.put_state(room_id, "m.room.server_acl", {"allow": ["*"], "deny": ["localhost"], "allow_ip_literals": True})
    return owner, guest, room_id, owner.send(room_id, "said after the ACL")


def test_a_server_denied_by_the_acl_reads_nothing_even_while_joined(home, hexagone_peer):
    _, _, room_id, after = acl_denied_room(home, hexagone_peer)
    assert_nothing_readable(home, hexagone_peer, room_id, after)
    status, body = read(home, hexagone_peer, f"/hierarchy/{q(room_id)}")
    assert (status, body.get("errcode")) == (404, "M_NOT_FOUND"), body


def joined_at(home, hexagone_peer, visibility: str):
    """A room of the given history visibility: a message before the peer's user is invited, one between
    the invite and the join, one after the join. Returns (room id, {moment: event id})."""
    owner, guest = home.process.register(), hexagone_peer.process.register()
    room_id = owner.create_room(preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": visibility}}])
    ids = {"before": owner.send(room_id, "before the invite")}
    owner.invite(room_id, guest)
    wait_membership(owner, room_id, guest.user_id, "invite")
    ids["invited"] = owner.send(room_id, "while invited")
    guest.join(room_id)
    wait_membership(owner, room_id, guest.user_id, "join")
    ids["joined"] = owner.send(room_id, "after the join")
    return room_id, ids


VISIBLE = {"joined": {"joined"}, "invited": {"invited", "joined"},
           "shared": {"before", "invited", "joined"}, "world_readable": {"before", "invited", "joined"}}
BODIES = {"before": "before the invite", "invited": "while invited", "joined": "after the join"}


def test_a_joined_server_reads_what_its_users_could_see(home, hexagone_peer):
    """Synapse's ``filter_events_for_server``: /event, /backfill and /get_missing_events give every event,
    pruned (content emptied) where the server had no user who could see it at that event, under each
    history visibility."""
    for visibility, readable in VISIBLE.items():
        room_id, ids = joined_at(home, hexagone_peer, visibility)
        expected = {m: body if m in readable else "hidden" for m, body in BODIES.items()}
        for moment, event_id in ids.items():
            status, body = read(home, hexagone_peer, f"/event/{q(event_id)}")
            assert status == 200, body
            (pdu,) = body["pdus"]
            assert (visibility, moment, pdu["content"].get("body", "hidden")) == (visibility, moment, expected[moment])
        status, body = read(home, hexagone_peer, f"/backfill/{q(room_id)}?v={q(ids['joined'])}&limit=50")
        assert status == 200, body
        bodies = sorted(p["content"].get("body", "hidden") for p in body["pdus"] if p["type"] == "m.room.message")
        assert (visibility, bodies) == (visibility, sorted(expected.values()))
        status, body = read(home, hexagone_peer, f"/get_missing_events/{q(room_id)}",
                            {"earliest_events": [], "latest_events": [ids["joined"]], "limit": 50})
        assert status == 200, body
        bodies = sorted(p["content"].get("body", "hidden") for p in body["events"] if p["type"] == "m.room.message")
        assert (visibility, bodies) == (visibility, sorted(b for m, b in expected.items() if m != "joined"))


def joined_room(home, hexagone_peer):
    """A public room of a user of ``home`` that a user of ``peer`` joined: (owner, guest, room id)."""
    owner, guest = home.process.register(), hexagone_peer.process.register()
    room_id = owner.create_room(preset="public_chat")
    guest.ok("POST", f"/join/{q(room_id)}", {}, params={"via": home.name})
    wait_membership(owner, room_id, guest.user_id, "join")
    return owner, guest, room_id


@pytest.fixture(scope="module")
def joined(home, hexagone_peer):
    """One :func:`joined_room` for the tests that only read it."""
    return joined_room(home, hexagone_peer)


def typing_edu(room_id: str, user_id: str) -> dict:
    return {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": user_id, "typing": True}}


def receipt_edu(room_id: str, user_id: str, event_id: str, data: dict) -> dict:
    return {"edu_type": "m.receipt", "content": {room_id: {"m.read": {user_id: {"event_ids": [event_id],
                                                                               "data": data}}}}}


def receipts_of(resp: dict, room_id: str, user_id: str) -> dict:
    """event id -> the user's m.read receipt data, in a /sync response."""
    return {event_id: by_type["m.read"][user_id] for e in ephemeral(resp, room_id, "m.receipt")
            for event_id, by_type in e["content"].items() if user_id in by_type.get("m.read", {})}


def test_edus_from_a_server_the_acl_denies_are_dropped(home, hexagone_peer):
    """Spec "Server Access Control Lists" (MSC4163): typing and receipts of an ACL'd origin are dropped,
    while the same origin's EDUs for a room that allows it, later in the same transaction, are applied."""
    owner, guest, denied_room, denied_event = acl_denied_room(home, hexagone_peer)
    allowed_room = owner.create_room(preset="public_chat")
    guest.ok("POST", f"/join/{q(allowed_room)}", {}, params={"via": home.name})
    wait_membership(owner, allowed_room, guest.user_id, "join")
    allowed_event = owner.send(allowed_room, "read me")
    send_transaction(home, hexagone_peer, [], [
        typing_edu(denied_room, guest.user_id), receipt_edu(denied_room, guest.user_id, denied_event, {"ts": 1}),
        typing_edu(allowed_room, guest.user_id), receipt_edu(allowed_room, guest.user_id, allowed_event, {"ts": 2})])
    owner.sync_until(lambda r: guest.user_id in sum((e["content"]["user_ids"] for e in ephemeral(
        r, allowed_room, "m.typing")), []) and receipts_of(r, allowed_room, guest.user_id))
    resp = owner.sync()
    assert all(guest.user_id not in e["content"]["user_ids"] for e in ephemeral(resp, denied_room, "m.typing"))
    assert receipts_of(resp, denied_room, guest.user_id) == {}


def test_remote_receipt_data_keeps_only_what_the_spec_defines(home, hexagone_peer):
    """Server-server "Receipts": of ``data``, ``ts`` (and a ``thread_id`` of event id size) is kept; the
    rest would be replayed in every member's /sync."""
    owner, guest, room_id = joined_room(home, hexagone_peer)
    event_id = owner.send(room_id, "read me")
    send_transaction(home, hexagone_peer, [], [receipt_edu(room_id, guest.user_id, event_id, {
        "ts": 1234, "junk": "x" * 50_000, "nested": {"a": [1] * 1000}, "thread_id": "t" * 300})])
    found, _ = owner.sync_until(lambda r: receipts_of(r, room_id, guest.user_id))
    assert found == {event_id: {"ts": 1234}}


def redacted_for_clients(owner, room_id: str, event_id: str) -> bool:
    """Whether /event, /messages and /context all show the event redacted."""
    event = owner.ok("GET", f"/rooms/{q(room_id)}/event/{q(event_id)}")
    in_messages = [e for e in owner.messages(room_id, dir="b", limit=50)["chunk"] if e["event_id"] == event_id]
    context = owner.ok("GET", f"/rooms/{q(room_id)}/context/{q(event_id)}", params={"limit": 0})["event"]
    return all(e["content"] == {} and "redacted_because" in e.get("unsigned", {})
               for e in [event, *in_messages, context])


def wait_for_event(owner, room_id: str, event_id: str) -> None:
    owner.sync_until(lambda r: any(e["event_id"] == event_id for e in r["rooms"]["join"].get(room_id, {})
                                   .get("timeline", {}).get("events", [])),
                     filter='{"room": {"timeline": {"limit": 50}}}')


def test_a_redaction_received_over_federation_is_applied(home, hexagone_peer):
    """Spec "Redactions": a remote user's redaction of their own event, received after it, redacts it for
    local clients as a local redaction would."""
    owner, guest, room_id = joined_room(home, hexagone_peer)
    target = guest.send(room_id, "said, then taken back")
    redaction = guest.ok("PUT", f"/rooms/{q(room_id)}/redact/{q(target)}/{unique('txn')}", {})["event_id"]
    wait_for_event(owner, room_id, redaction)
    assert redacted_for_clients(owner, room_id, target)


def test_a_redaction_received_before_its_target_applies_when_it_comes(home, hexagone_peer):
    """Room versions, "Redactions": a redaction waits for its target; one by a user of another server
    without the redact power level never applies."""
    owner, guest, room_id = joined_room(home, hexagone_peer)
    owners_message = owner.send(room_id, "not yours to redact")
    forge = EventForge(home, owner, room_id, hexagone_peer, guest)
    target = forge.message(guest.user_id, "taken back before it arrived")
    early = forge.event(guest.user_id, "m.room.redaction", {}, redacts=target["_id"])
    overreach = forge.event(guest.user_id, "m.room.redaction", {}, redacts=owners_message)
    assert send_transaction(home, hexagone_peer, [early, overreach]) == {early["_id"]: {}, overreach["_id"]: {}}
    assert send_transaction(home, hexagone_peer, [target]) == {target["_id"]: {}}
    assert redacted_for_clients(owner, room_id, target["_id"])
    assert owner.ok("GET", f"/rooms/{q(room_id)}/event/{q(owners_message)}")["content"]["body"] == \
        "not yours to redact"


@pytest.mark.parametrize("body", [
    {"limit": "ten"}, {"limit": "10"}, {"limit": 1.5}, {"limit": True}, {"limit": None}, {"limit": -1},
    {"min_depth": "deep"}, {"earliest_events": "abc"}, {"latest_events": [1]}, {"latest_events": {"a": 1}},
])
def test_get_missing_events_refuses_malformed_bodies(home, hexagone_peer, joined, body):
    """Server-server POST /get_missing_events: a malformed body is a 400, never a 500."""
    _, _, room_id = joined
    status, resp = read(home, hexagone_peer, f"/get_missing_events/{q(room_id)}",
                        {"earliest_events": [], "latest_events": [], **body})
    assert (status, resp.get("errcode")) in ((400, "M_BAD_JSON"), (400, "M_INVALID_PARAM")), resp


def test_get_missing_events_answers_at_most_20_events(home, hexagone_peer, joined):
    """As Synapse: whatever ``limit`` asks, one answer carries at most 20 events."""
    owner, _, room_id = joined
    latest = [owner.send(room_id, f"message {i}") for i in range(25)][-1]
    status, resp = read(home, hexagone_peer, f"/get_missing_events/{q(room_id)}",
                        {"earliest_events": [], "latest_events": [latest], "limit": 1000})
    assert status == 200, resp
    assert len(resp["events"]) == 20


"""Rejected events and gaps in the DAG (server-server "Checks performed on receipt of a PDU", "Rejection",
"get_missing_events"), as Synapse handles them:

- an event the auth rules reject is remembered (never shown, never an auth event), and a later event may name it
  as a prev event: the state after it is the state before it; /state and /state_ids at it are 404;
- an event pushed in /send whose prev events the origin will not give with /get_missing_events is rejected,
  without asking the origin for the state there (/state_ids).

The other server is a real Hexagone whose signing key the test holds (``EventForge``): it answers
/get_missing_events and /state_ids itself, and its access log shows what it was asked.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest

from tests.integration.federation import EventForge, FederationProxy, send_transaction
from tests.integration.harness import PASSWORD, shared_room, unique, wait_for


@pytest.fixture()
def room(home, hexagone_peer):
    """A room of ``home`` that a user of the peer has joined: (owner, mallory, room id, forge)."""
    owner, mallory = home.process.register(), hexagone_peer.process.register()
    room_id = shared_room(owner, mallory, public=True)
    return owner, mallory, room_id, EventForge(home, owner, room_id, hexagone_peer, mallory)


def state_ids_at(home, peer, room_id: str, event_id: str) -> tuple[int, dict]:
    return home.signed("GET", f"/_matrix/federation/v1/state_ids/{quote(room_id)}?event_id={quote(event_id)}",
                       origin=peer.name, key=peer.signing_key)


def current_state_ids(owner, room_id: str) -> set[str]:
    return {e["event_id"] for e in owner.ok("GET", f"/rooms/{quote(room_id)}/state")}


def log_size(server) -> int:
    return os.path.getsize(server.process.log_path)


def log_since(server, offset: int) -> str:
    with open(server.process.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def timeline_ids(owner, room_id: str) -> list[str]:
    return [e["event_id"] for e in owner.messages(room_id, dir="b", limit=50)["chunk"]]


@pytest.mark.parametrize("kind", ["message", "state"])
def test_rejected_event_as_prev_event(home, hexagone_peer, room, kind):
    """A rejected event (its sender is not in the room) is answered ``{}`` in /send, as Synapse; an event after
    it is accepted with the state before it; /state_ids and /state at it are 404, it is not in /event; the room's
    state is unchanged."""
    owner, mallory, room_id, forge = room
    before = current_state_ids(owner, room_id)
    stranger = f"@{unique('stranger')}:{hexagone_peer.name}"
    state_key = {"state_key": ""} if kind == "state" else {}
    rejected = forge.event(stranger, "m.room.topic" if kind == "state" else "m.room.message",
                           {"topic": "taken"} if kind == "state" else {"msgtype": "m.text", "body": "rejected"},
                           member=False, **state_key)
    after = forge.message(mallory.user_id, "after the rejected one", prev=rejected["_id"])
    assert send_transaction(home, hexagone_peer, [rejected]) == {rejected["_id"]: {}}
    assert send_transaction(home, hexagone_peer, [after]) == {after["_id"]: {}}
    wait_for(lambda: after["_id"] in timeline_ids(owner, room_id), "the event after the rejected one")
    assert rejected["_id"] not in timeline_ids(owner, room_id)
    for endpoint in ("state", "state_ids"):
        status, body = home.signed("GET", f"/_matrix/federation/v1/{endpoint}/{quote(room_id)}"
                                          f"?event_id={quote(rejected['_id'])}",
                                   origin=hexagone_peer.name, key=hexagone_peer.signing_key)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), endpoint
    status, _ = home.signed("GET", f"/_matrix/federation/v1/event/{quote(rejected['_id'])}",
                            origin=hexagone_peer.name, key=hexagone_peer.signing_key)
    assert status == 404
    # the state before ``after`` is the state before the rejected event: the room's state, which is unchanged
    status, at_after = state_ids_at(home, hexagone_peer, room_id, after["_id"])
    assert status == 200
    assert set(at_after["pdu_ids"]) == before == current_state_ids(owner, room_id)


def test_event_citing_a_rejected_auth_event_is_rejected(home, hexagone_peer, room):
    """Auth rules: an event whose auth events include a rejected one is rejected too (not fetched again)."""
    owner, mallory, room_id, forge = room
    stranger = f"@{unique('stranger')}:{hexagone_peer.name}"
    fake_join = forge.event(stranger, "m.room.member", {"membership": "join"}, state_key=stranger, member=False,
                            auth=forge.auth_of(("m.room.power_levels", "")))  # a private room: no join rules
    forge.state[("m.room.member", stranger)] = fake_join["_id"]
    riding = forge.message(stranger, "riding on the rejected join", prev=fake_join["_id"],
                           auth=forge.auth_of(("m.room.power_levels", ""), ("m.room.member", stranger)))
    honest = forge.message(mallory.user_id, "honest", prev=riding["_id"])
    result = send_transaction(home, hexagone_peer, [fake_join, riding, honest])
    assert result == {fake_join["_id"]: {}, riding["_id"]: {}, honest["_id"]: {}}
    wait_for(lambda: honest["_id"] in timeline_ids(owner, room_id), "the honest event")
    seen = timeline_ids(owner, room_id)
    assert fake_join["_id"] not in seen and riding["_id"] not in seen
    assert owner.request("GET", f"/rooms/{quote(room_id)}/state/m.room.member/{quote(stranger)}")[0] == 404


def test_pushed_event_with_prev_events_not_given_is_rejected(home, hexagone_peer, room):
    """Synapse's rule: an event pushed to us whose prev events the origin does not give with
    /get_missing_events is rejected (an error in /send's answer), and the origin is not asked for the state at
    the gap with /state_ids; a later event naming it asks /get_missing_events again."""
    owner, mallory, room_id, forge = room
    hidden = forge.message(mallory.user_id, "never sent")
    shown = forge.message(mallory.user_id, "sent", prev=hidden["_id"])
    log_start = log_size(hexagone_peer)
    result = send_transaction(home, hexagone_peer, [shown])
    assert "error" in result[shown["_id"]], result
    peer_log = log_since(hexagone_peer, log_start)
    assert "/get_missing_events/" in peer_log
    assert "/state_ids/" not in peer_log
    assert shown["_id"] not in timeline_ids(owner, room_id)
    later = forge.message(mallory.user_id, "later", prev=shown["_id"])
    result = send_transaction(home, hexagone_peer, [later])
    assert "error" in result[later["_id"]], result
    peer_log = log_since(hexagone_peer, log_start)
    assert peer_log.count("/get_missing_events/") >= 2 and "/state_ids/" not in peer_log


def test_redaction_of_an_event_of_another_room_is_rejected(home, hexagone_peer, room):
    """Synapse withholds from every read a redaction whose target is in another room: it is rejected here,
    the target keeps its content, and an event after the redaction is accepted."""
    owner, mallory, room_id, forge = room
    target = owner.send(room_id, "stays")
    other_room = shared_room(owner, mallory, public=True)
    other = EventForge(home, owner, other_room, hexagone_peer, mallory)
    redaction = other.event(mallory.user_id, "m.room.redaction", {}, redacts=target)
    sentinel = other.message(mallory.user_id, "sentinel", prev=redaction["_id"])
    assert send_transaction(home, hexagone_peer, [redaction, sentinel]) == {redaction["_id"]: {},
                                                                           sentinel["_id"]: {}}
    wait_for(lambda: sentinel["_id"] in timeline_ids(owner, other_room), "the sentinel")
    assert redaction["_id"] not in timeline_ids(owner, other_room)
    assert owner.ok("GET", f"/rooms/{quote(room_id)}/event/{quote(target)}")["content"]["body"] == "stays"


def test_events_of_an_erased_user_go_out_redacted(home, hexagone_peer):
    """Client-server POST /account/deactivate with ``erase``: from then on, another server fetching the user's
    events (GET /event) gets them redacted (Synapse's ``filter_events_for_server``)."""
    owner, staying, mallory = home.process.register(), home.process.register(), hexagone_peer.process.register()
    room_id = shared_room(owner, staying, mallory, public=True)
    message = owner.send(room_id, "forget me")
    path = f"/_matrix/federation/v1/event/{quote(message)}"
    status, body = home.signed("GET", path, origin=hexagone_peer.name, key=hexagone_peer.signing_key)
    assert status == 200 and body["pdus"][0]["content"]["body"] == "forget me"
    status, challenge = owner.request("POST", "/account/deactivate", {})
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": owner.user_id},
            "password": PASSWORD, "session": challenge["session"]}
    owner.ok("POST", "/account/deactivate", {"auth": auth, "erase": True})
    status, body = home.signed("GET", path, origin=hexagone_peer.name, key=hexagone_peer.signing_key)
    assert status == 200 and "body" not in body["pdus"][0]["content"]


def test_prev_events_are_fetched_before_the_auth_rules_run(home, hexagone_peer, room):
    """As Synapse, the gap before a pushed event is filled (/get_missing_events) before its auth events are
    checked: an event that its auth events forbid still has its prev events asked for."""
    owner, mallory, room_id, forge = room
    stranger = f"@{unique('stranger')}:{hexagone_peer.name}"
    hidden = forge.message(mallory.user_id, "never sent")
    forbidden = forge.message(stranger, "not a member", prev=hidden["_id"], member=False)
    log_start = log_size(hexagone_peer)
    result = send_transaction(home, hexagone_peer, [forbidden])
    assert "error" in result[forbidden["_id"]], result  # the gap stayed: dropped, as Synapse
    assert "/get_missing_events/" in log_since(hexagone_peer, log_start)


@pytest.fixture(scope="module")
def scripted(fed, ca):
    """A peer reached through a proxy that answers chosen requests for it: (server, proxy)."""
    proxy = FederationProxy(ca)
    server = fed(name_port=proxy.port)
    proxy.target_port = server.tls_port
    yield server, proxy
    proxy.close()


def test_back_pagination_over_a_gap_backfills_it(home, scripted):
    """An event accepted across a gap (its prev event came from nowhere: /get_missing_events gave the event,
    /state_ids the state at the gap) leaves a hole in the room's history; paginating back over it asks the
    room's servers for the missing event with /backfill (as Synapse does from its backward extremities)."""
    server, proxy = scripted
    owner, mallory = home.process.register(), server.process.register()
    room_id = shared_room(owner, mallory, public=True)
    forge = EventForge(home, owner, room_id, server, mallory)
    hole = forge.message(mallory.user_id, "in the hole")
    across = forge.message(mallory.user_id, "across the gap", prev=hole["_id"])
    pushed = forge.message(mallory.user_id, "pushed", prev=across["_id"])
    raw = {k: v for k, v in hole.items() if k != "_id"}
    proxy.answers = {
        "/_matrix/federation/v1/get_missing_events/": (200, {"events": [{k: v for k, v in across.items()
                                                                         if k != "_id"}]}),
        "/_matrix/federation/v1/state_ids/": (200, {"pdu_ids": sorted(current_state_ids(owner, room_id)),
                                                     "auth_chain_ids": []}),
        "/_matrix/federation/v1/event/": (404, {"errcode": "M_NOT_FOUND", "error": "Event not found"}),
        "/_matrix/federation/v1/backfill/": (200, {"origin": server.name, "origin_server_ts": 0, "pdus": [raw]}),
    }
    try:
        assert send_transaction(home, server, [pushed]) == {pushed["_id"]: {}}
        owner.timeline_until(room_id, lambda e: e["event_id"] == pushed["_id"])
        assert not any("/backfill/" in path for path in proxy.asked)  # nobody paginated back yet
        # paginating back from just before the event across the gap (SyTest's case: the client's sync timeline
        # ended there) fetches the hole, and it is read in the same page
        timeline = owner.sync(filter=json.dumps({"room": {"timeline": {"limit": 2}}}))["rooms"]["join"][room_id]
        assert [e["event_id"] for e in timeline["timeline"]["events"]] == [across["_id"], pushed["_id"]]
        page = owner.messages(room_id, dir="b", limit=50, **{"from": timeline["timeline"]["prev_batch"]})
        assert hole["_id"] in [e["event_id"] for e in page["chunk"]]
        assert any(path.startswith("/_matrix/federation/v1/backfill/") and quote(hole["_id"]) in path
                   for path in proxy.asked)
    finally:
        proxy.answers = {}

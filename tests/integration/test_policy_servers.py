"""Policy Servers (spec v1.18/v1.19 client-server "Policy Servers", server-server "Policy Servers").

Two Hexagone processes federating over TLS: ``ps`` acts as the policy server (``policy_server.enabled``,
refusing a keyword and a banned user), ``other`` hosts the room; a user of each is joined. A normal event of
either server carries ``ps``'s ``ed25519:policy_server`` signature and is delivered; one the policy server
refuses is refused to its sender (403 M_FORBIDDEN), and when ``other``'s key signs it without asking (a
hostile server, the test holding its key) ``ps`` soft-fails it: no client of ``ps`` sees it.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from urllib.parse import quote

import pytest
from nacl.signing import VerifyKey
from unpaddedbase64 import decode_base64

from federation.request_auth import sign_request
from homeserver.events.builder import build_event
from homeserver.events.hashing import strip_convenience_keys
from homeserver.events.policy_servers import POLICY_KEY_ID, RoomPolicyServer, has_policy_signature
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.integration.federation import EventForge, send_transaction
from tests.integration.harness import unique

FED = "/_matrix/federation"
SPAM = "buy followers"
SIGN = "/_matrix/policy/v1/sign"


@pytest.fixture(scope="module")
def ps(fed):
    return fed(policy_server={"enabled": True, "spam_keywords": [SPAM], "banned_users": ["@banned*:*"]})


@pytest.fixture(scope="module")
def other(fed):
    return fed()


def public_key(server) -> str:
    status, body = server.process.request("GET", "/.well-known/matrix/policy_server")
    assert status == 200, body
    return body["public_keys"]["ed25519"]


@pytest.fixture(scope="module")
def room(ps, other):
    """A public room of ``other``'s whose m.room.policy names ``ps``: (owner on other, member on ps, room id)."""
    owner, member = other.process.register(), ps.process.register()
    alias = unique("room")
    room_id = owner.create_room(preset="public_chat", room_alias_name=alias)
    policy = {"via": ps.name, "public_keys": {"ed25519": public_key(ps)}}
    owner.put_state(room_id, "m.room.policy", policy)
    # Spec "Determining if a Policy Server is enabled": ps has no joined member yet, so the room uses none.
    before = owner.send(room_id, "before the policy server joined")
    assert member.join(f"#{alias}:{other.name}") == room_id
    owner.timeline_until(room_id, lambda e: e.get("state_key") == member.user_id)
    assert POLICY_KEY_ID not in pdu_at(other, ps, before)["signatures"].get(ps.name, {})
    return owner, member, room_id


def pdu_at(host, asker, event_id: str) -> dict:
    """The event as ``host`` serves it over federation (its signatures included)."""
    status, body = host.signed("GET", f"/_matrix/federation/v1/event/{quote(event_id)}", origin=asker.name,
                               key=asker.signing_key)
    assert status == 200, body
    return body["pdus"][0]


def policy_signed(pdu: dict, ps, room_version) -> bool:
    return has_policy_signature(pdu, room_version, RoomPolicyServer(ps.name, public_key(ps)))


def raw_signed(to, origin, method: str, path: str, payload: bytes) -> tuple[int, dict]:
    """A request signed by ``origin`` whose body is ``payload`` as is (not JSON-encoded by us)."""
    header = sign_request(origin.signing_key, origin.name, to.name, method, path, None)
    conn = http.client.HTTPSConnection("localhost", to.tls_port, timeout=60,
                                       context=ssl.create_default_context(cafile=to.ca_path))
    try:
        conn.request(method, path, body=payload, headers={"Authorization": header, "Content-Type": "text/plain"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_well_known_serves_the_policy_key_only_when_enabled(ps, other):
    """GET /.well-known/matrix/policy_server: the unpadded base64 Ed25519 key; 404 when not a policy server.
    The key is not one of the server's own signing keys (MSC4284 "Implementation considerations")."""
    key = public_key(ps)
    assert len(decode_base64(key)) == 32
    VerifyKey(decode_base64(key))
    status, body = ps.https("GET", "/_matrix/key/v2/server")
    assert status == 200 and key not in json.dumps(body)
    status, body = other.process.request("GET", "/.well-known/matrix/policy_server")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


def test_normal_events_of_both_servers_are_signed_and_delivered(ps, other, room):
    owner, member, room_id = room
    forge = EventForge(ps, member, room_id, other, owner)
    from_other = owner.send(room_id, "hello from the room's server")
    member.timeline_until(room_id, lambda e: e["event_id"] == from_other)
    assert policy_signed(pdu_at(other, ps, from_other), ps, forge.version)
    assert policy_signed(pdu_at(ps, other, from_other), ps, forge.version)  # kept with the event by ps too
    from_ps = member.send(room_id, "hello from the policy server's user")
    owner.timeline_until(room_id, lambda e: e["event_id"] == from_ps)
    assert policy_signed(pdu_at(ps, other, from_ps), ps, forge.version)
    assert policy_signed(pdu_at(other, ps, from_ps), ps, forge.version)


def test_refused_events_are_refused_to_their_sender(ps, other, room):
    """The policy server refuses (400 M_FORBIDDEN to /sign): the homeserver refuses the send, 403 M_FORBIDDEN
    (Synapse's answer), on the room's server and on the policy server itself; nothing reaches the room."""
    owner, member, room_id = room
    _, since = member.sync_until(lambda r: r.get("next_batch"))
    for user in (owner, member):
        status, body = user.request("PUT", f"/rooms/{quote(room_id)}/send/m.room.message/{unique('t')}",
                                    {"msgtype": "m.text", "body": f"Cheap! {SPAM.upper()} here"})
        assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    honest = owner.send(room_id, "after the refusals")
    event, _ = member.timeline_until(room_id, lambda e: e["event_id"] == honest, since)
    seen = [e for e in member.messages(room_id, dir="b", limit=20)["chunk"]
            if SPAM in json.dumps(e.get("content", {})).lower()]
    assert seen == []


def test_unsigned_events_from_a_hostile_server_are_soft_failed(ps, other, room):
    """A server that sends without asking: the receiver asks the policy server itself; what it refuses is
    soft-failed (never in a client's timeline, /messages or /event), what it accepts is delivered signed."""
    owner, member, room_id = room
    _, since = member.sync_until(lambda r: r.get("next_batch"))
    forge = EventForge(ps, member, room_id, other, owner)
    spam = forge.message(owner.user_id, f"{SPAM} at a discount")
    forged_sig = forge.message(owner.user_id, f"also {SPAM}")
    forged_sig["signatures"] = {**forged_sig["signatures"], ps.name: {POLICY_KEY_ID: forged_sig["signatures"][
        other.name][next(iter(forged_sig["signatures"][other.name]))]}}
    honest = forge.message(owner.user_id, "unsigned but fine")
    result = send_transaction(ps, other, [spam, forged_sig, honest])
    assert result == {spam["_id"]: {}, forged_sig["_id"]: {}, honest["_id"]: {}}, result
    member.timeline_until(room_id, lambda e: e["event_id"] == honest["_id"], since)
    assert policy_signed(pdu_at(ps, other, honest["_id"]), ps, forge.version)
    room_sync = member.sync(since)["rooms"]["join"].get(room_id, {})
    seen = {e["event_id"] for e in room_sync.get("timeline", {}).get("events", [])}
    history = {e["event_id"] for e in member.messages(room_id, dir="b", limit=50)["chunk"]}
    for bad in (spam, forged_sig):
        assert bad["_id"] not in seen | history
        assert member.request("GET", f"/rooms/{quote(room_id)}/event/{quote(bad['_id'])}")[0] == 404


def membership(host, origin, room_id: str, user_id: str, kind: str, **content) -> tuple[int, dict, dict]:
    """make_{kind} then send_{kind} (v2) at ``host`` as ``origin``, the event signed by ``origin``: (status,
    answer, the event sent)."""
    status, made = host.signed("GET", f"{FED}/v1/make_{kind}/{quote(room_id)}/{quote(user_id)}"
                               + ("?ver=10&ver=11&ver=12" if kind == "join" else ""),
                               origin=origin.name, key=origin.signing_key)
    assert status == 200, made
    version = KNOWN_ROOM_VERSIONS[made["room_version"]]
    template = made["event"]
    pdu = build_event(version, server_name=origin.name, signing_key=origin.signing_key, room_id=room_id,
                      sender=user_id, event_type="m.room.member", content=dict(template["content"], **content),
                      state_key=user_id, prev_events=template["prev_events"], auth_events=template["auth_events"],
                      depth=template["depth"], origin_server_ts=int(time.time() * 1000))
    status, answer = host.signed("PUT", f"{FED}/v2/send_{kind}/{quote(room_id)}/{quote(pdu['event_id'])}",
                                 origin=origin.name, key=origin.signing_key,
                                 content=strip_convenience_keys(pdu, version))
    return status, answer, pdu


def test_send_join_and_send_leave_are_checked_by_the_policy_server(ps, other, room):
    """A remote user's join or leave received through send_join/send_leave (not /send): the policy server is
    asked too; what it refuses is refused to the sending server, 403 M_FORBIDDEN, and never joins or leaves
    anyone; what it signs is accepted with its signature kept."""
    owner, member, room_id = room
    forge = EventForge(ps, member, room_id, other, owner)
    joined = f"/rooms/{quote(room_id)}/joined_members"
    banned = f"@banned-{unique('j')}:{other.name}"
    status, answer, pdu = membership(ps, other, room_id, banned, "join")
    assert status == 403 and answer["errcode"] == "M_FORBIDDEN", answer
    assert banned not in member.ok("GET", joined)["joined"]
    assert ps.signed("GET", f"{FED}/v1/event/{quote(pdu['event_id'])}", origin=other.name,
                     key=other.signing_key)[0] == 404   # nothing stored
    fine = f"@{unique('joiner')}:{other.name}"
    status, answer, pdu = membership(ps, other, room_id, fine, "join")
    assert status == 200 and {"state", "auth_chain"} <= set(answer), answer
    assert fine in member.ok("GET", joined)["joined"]
    assert policy_signed(pdu_at(ps, other, pdu["event_id"]), ps, forge.version)
    status, answer, _ = membership(ps, other, room_id, fine, "leave", reason=f"{SPAM} elsewhere")
    assert status == 403 and answer["errcode"] == "M_FORBIDDEN", answer
    assert fine in member.ok("GET", joined)["joined"]
    status, answer, pdu = membership(ps, other, room_id, fine, "leave")
    assert (status, answer) == (200, {}), answer
    assert fine not in member.ok("GET", joined)["joined"]
    assert policy_signed(pdu_at(ps, other, pdu["event_id"]), ps, forge.version)


def test_sign_endpoint_answers_and_error_paths(ps, other, room):
    owner, member, room_id = room
    forge = EventForge(ps, member, room_id, other, owner)
    good = {k: v for k, v in forge.message(owner.user_id, "sign me").items() if k != "_id"}
    status, body = ps.signed("POST", SIGN, origin=other.name, key=other.signing_key, content=good)
    assert status == 200 and list(body) == [ps.name] and list(body[ps.name]) == [POLICY_KEY_ID], body
    assert policy_signed({**good, "signatures": {**good["signatures"], **body}}, ps, forge.version)

    def sign(content, to=ps):
        return to.signed("POST", SIGN, origin=other.name, key=other.signing_key, content=content)

    banned = {k: v for k, v in forge.message(f"@banned1:{other.name}", "hi").items() if k != "_id"}
    spam = {k: v for k, v in forge.message(owner.user_id, SPAM).items() if k != "_id"}
    for refused in (banned, spam):
        status, body = sign(refused)
        assert status == 400 and body["errcode"] == "M_FORBIDDEN", body
    status, body = sign({k: v for k, v in good.items() if k != "auth_events"})
    assert status == 400 and body["errcode"] == "M_BAD_JSON", body
    status, body = sign({**good, "content": {"body": "changed after hashing"}})
    assert status == 400 and body["errcode"] == "M_BAD_JSON", body
    status, body = sign({"type": "m.room.message"})
    assert status == 400 and body["errcode"] == "M_BAD_JSON", body
    status, body = sign({**good, "room_id": "!unknown:" + other.name})
    assert status == 404 and body["errcode"] == "M_NOT_FOUND", body
    unprotected = member.create_room(preset="public_chat")
    status, body = sign({**good, "room_id": unprotected})
    assert status == 404 and body["errcode"] == "M_NOT_FOUND", body
    status, body = raw_signed(ps, other, "POST", SIGN, b"not json")
    assert status == 400 and body["errcode"] == "M_NOT_JSON", body
    status, body = ps.https("POST", SIGN, good)  # no X-Matrix signature
    assert status == 401, body
    status, body = other.signed("POST", SIGN, origin=ps.name, key=ps.signing_key, content=good)
    assert status == 404 and body["errcode"] == "M_UNRECOGNIZED", body


def test_synapse_in_a_room_protected_by_hexagone(ps, other, synapse_peer):
    """Synapse (which implements the homeserver's side of MSC4284/spec v1.18) in a room of ``ps`` that names ``ps``
    as its policy server: Synapse asks our /sign before sending; what we refuse its user cannot send, what we
    sign reaches our user with our signature."""
    owner, guest = ps.process.register(), synapse_peer.process.register()
    alias = unique("room")
    room_id = owner.create_room(preset="public_chat", room_alias_name=alias, initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}},
        {"type": "m.room.policy", "state_key": "", "content": {"via": ps.name,
                                                               "public_keys": {"ed25519": public_key(ps)}}}])
    assert guest.join(f"#{alias}:{ps.name}") == room_id
    _, since = owner.timeline_until(room_id, lambda e: e.get("state_key") == guest.user_id)
    # Synapse joins with partial state (omit_members) and sees our member, hence the policy server, once its
    # resync is done: its /members waits for that.
    members = guest.ok("GET", f"/rooms/{quote(room_id)}/members")["chunk"]
    assert owner.user_id in {m["state_key"] for m in members}
    status, body = guest.request("PUT", f"/rooms/{quote(room_id)}/send/m.room.message/{unique('t')}",
                                 {"msgtype": "m.text", "body": f"{SPAM}!"})
    assert status in (400, 403) and body["errcode"] == "M_FORBIDDEN", (status, body)
    fine = guest.send(room_id, "hello from Synapse")
    owner.timeline_until(room_id, lambda e: e["event_id"] == fine, since)
    version = KNOWN_ROOM_VERSIONS[owner.ok("GET", f"/rooms/{quote(room_id)}/state/m.room.create")["room_version"]]
    assert policy_signed(pdu_at(ps, other, fine), ps, version)  # world_readable: any server may fetch it
    history = owner.messages(room_id, dir="b", limit=20)["chunk"]
    assert not [e for e in history if SPAM in json.dumps(e.get("content", {}))]


def test_a_room_naming_a_server_that_is_no_policy_server_is_not_blocked_there(ps, other):
    """As Synapse: a room whose m.room.policy names this very server, which is not a policy server, uses none
    here (its users can still send); /sign there answers 404 M_UNRECOGNIZED."""
    owner = other.process.register()
    room_id = owner.create_room(preset="private_chat")
    owner.put_state(room_id, "m.room.policy", {"via": other.name, "public_keys": {"ed25519": public_key(ps)}})
    owner.send(room_id, "still possible")
    owner.send(room_id, f"even {SPAM}")

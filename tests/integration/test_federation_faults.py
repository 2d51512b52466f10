"""Federation faults: a peer down while messages are sent, forged events, and the allow-list."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from homeserver.events.builder import build_event
from homeserver.events.hashing import strip_convenience_keys
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.integration.federation import ca, fed, home, pair, peer  # noqa: F401 (fixtures)
from tests.integration.harness import unique


def in_timeline(room_id, predicate):
    def find(resp):
        events = resp.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])
        return [e for e in events if predicate(e)] or None
    return find


def shared_room(host, guest):
    """A public room on ``host`` that a user of ``guest`` has joined: (host user, guest user, room id)."""
    owner, visitor = host.process.register(), guest.process.register()
    alias = unique("room")
    room_id = owner.create_room(preset="public_chat", room_alias_name=alias)
    visitor.join(f"#{alias}:{host.name}")
    owner.sync_until(in_timeline(room_id, lambda e: e.get("state_key") == visitor.user_id))
    return owner, visitor, room_id


def test_messages_sent_while_the_peer_is_down_arrive_in_order(home, peer):
    owner, visitor, room_id = shared_room(home, peer)
    _, since = visitor.sync_until(lambda r: r.get("next_batch"))
    peer.process.stop()
    sent = [f"while down {i}" for i in range(10)]
    for text in sent:
        owner.send(room_id, text)
    peer.process.start()
    bodies: list[str] = []

    def all_arrived(resp):
        for e in in_timeline(room_id, lambda e: e.get("type") == "m.room.message")(resp) or []:
            bodies.append(e["content"]["body"])
        return bodies[-1:] == sent[-1:]

    visitor.sync_until(all_arrived, since, deadline_s=60, filter={"room": {"timeline": {"limit": 50}}})
    assert bodies == sent


def test_forged_events_are_rejected(fed):
    host, forger = fed(), fed()
    owner, visitor, room_id = shared_room(host, forger)
    version = KNOWN_ROOM_VERSIONS[owner.ok("GET", f"/rooms/{quote(room_id)}/state/m.room.create")["room_version"]]
    state = {(e["type"], e["state_key"]): e["event_id"] for e in owner.ok("GET", f"/rooms/{quote(room_id)}/state")}
    latest = owner.messages(room_id, dir="b", limit=1)["chunk"][0]["event_id"]
    status, latest_pdu = host.signed("GET", f"/_matrix/federation/v1/event/{quote(latest)}",
                                     origin=forger.name, key=forger.signing_key)
    assert status == 200, latest_pdu
    depth = latest_pdu["pdus"][0]["depth"] + 1
    auth = [state[("m.room.power_levels", "")], state[("m.room.member", visitor.user_id)]]
    if version.create_event_in_auth_events:
        auth.append(state[("m.room.create", "")])

    def message(sender, body, **changes):
        pdu = build_event(version, server_name=forger.name, signing_key=forger.signing_key, room_id=room_id,
                          sender=sender, event_type="m.room.message", content={"msgtype": "m.text", "body": body},
                          prev_events=[latest], auth_events=auth if sender == visitor.user_id else auth[:1],
                          depth=depth, origin_server_ts=int(time.time() * 1000))
        pdu = strip_convenience_keys(pdu, version)
        pdu.update(changes)
        return pdu

    stranger = f"@{unique('stranger')}:{forger.name}"
    bad_signature = message(visitor.user_id, "forged signature", origin_server_ts=1)
    bad_hash = message(visitor.user_id, "original")
    bad_hash["content"] = {"msgtype": "m.text", "body": "tampered"}
    not_a_member = message(stranger, "not in the room")
    txn = {"origin": forger.name, "origin_server_ts": int(time.time() * 1000),
           "pdus": [bad_signature, bad_hash, not_a_member], "edus": []}
    status, result = host.signed("PUT", f"/_matrix/federation/v1/send/{unique('txn')}", origin=forger.name,
                                 key=forger.signing_key, content=txn)
    assert status == 200, result
    errors = {k: v for k, v in result["pdus"].items() if "error" in v}
    assert len(errors) == 2, result  # the bad signature and the non-member are refused
    bodies = [e["content"].get("body") for e in owner.messages(room_id, dir="b", limit=20)["chunk"]]
    assert "forged signature" not in bodies and "not in the room" not in bodies and "tampered" not in bodies
    assert "original" not in bodies  # a hash mismatch is accepted only in its redacted form


def test_servers_outside_the_allow_list_are_refused(fed, home):
    outsider = fed()
    gated = fed(federation_domain_whitelist=[home.name])
    owner, member, room_id = shared_room(gated, home)  # the listed server federates as usual
    alias = unique("gated")
    owner.ok("PUT", f"/directory/room/{quote(f'#{alias}:{gated.name}')}", {"room_id": room_id})
    status, body = gated.signed("GET", f"/_matrix/federation/v1/query/directory?room_alias="
                                f"{quote(f'#{alias}:{gated.name}')}", origin=outsider.name,
                                key=outsider.signing_key)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    visitor = outsider.process.register()
    status, body = visitor.request("POST", f"/join/{quote(f'#{alias}:{gated.name}')}", {})
    assert status in (403, 404), body
    assert member.user_id in owner.ok("GET", f"/rooms/{quote(room_id)}/joined_members")["joined"]
    assert visitor.user_id not in owner.ok("GET", f"/rooms/{quote(room_id)}/joined_members")["joined"]

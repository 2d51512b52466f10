"""Glob patterns built to make a backtracking matcher take exponential time, through real servers:
a push rule (spec "Push Rules", evaluated for every message) and a server ACL (spec "Server Access
Control Lists", evaluated for every request of another server about the room)."""

from __future__ import annotations

import time

from tests.integration.harness import q, unique

PATHOLOGICAL = "*" * 40 + "x"  # a backtracking regex took 0.9 s for 28 stars on 8 characters


def test_pathological_push_rule_is_evaluated_quickly(home):
    watcher, sender = home.process.register(), home.process.register()
    room_id = watcher.create_room(preset="public_chat")
    sender.join(room_id)
    watcher.ok("PUT", "/pushrules/global/content/hostile",
               {"pattern": PATHOLOGICAL, "actions": ["notify", {"set_tweak": "highlight"}]})
    started = time.monotonic()
    sender.send(room_id, "a" * 60)  # does not match: the worst case of a backtracking matcher
    matching = sender.send(room_id, "a" * 60 + " x")
    deadline = time.monotonic() + 10
    while True:
        status, resp = watcher.request("GET", "/notifications", params={"only": "highlight"}, timeout=5)
        assert status == 200, resp
        if [n["event"]["event_id"] for n in resp["notifications"]] == [matching]:
            break
        assert time.monotonic() < deadline, resp
    assert time.monotonic() - started < 5


def test_pathological_server_acl_is_evaluated_quickly(fed, home):
    peer = fed()
    owner = home.process.register()
    room_id = owner.create_room(preset="public_chat")
    owner.put_state(room_id, "m.room.server_acl", {"allow": ["*"], "deny": [PATHOLOGICAL, peer.name.split(":")[0] + "x"]})
    joiner = f"@{unique()}:{peer.name}"
    started = time.monotonic()
    status, resp = home.signed("GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(joiner)}?ver=12",
                               origin=peer.name, key=peer.signing_key)
    assert status == 200 and resp["event"]["state_key"] == joiner, resp
    assert time.monotonic() - started < 5
    owner.put_state(room_id, "m.room.server_acl", {"allow": ["*"], "deny": [PATHOLOGICAL, "?" * 3 + "*host"]})
    status, resp = home.signed("GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(joiner)}?ver=12",
                               origin=peer.name, key=peer.signing_key)
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN"), resp

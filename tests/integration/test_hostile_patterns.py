"""Glob patterns built to make a backtracking matcher take exponential time, through real servers:
a push rule (spec "Push Rules", evaluated for every message) and a server ACL (spec "Server Access
Control Lists", evaluated for every request of another server about the room)."""

from __future__ import annotations

import time

from homeserver.events.push_rules import MAX_PATTERN_CHARS, MAX_PATTERN_LENGTH, MAX_USER_RULES
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


def test_push_rules_are_capped_in_pattern_length_count_and_total_size(home):
    """A long pattern costs O(body x pattern) on every message (0.9 s measured for 20,000-character patterns
    on 64 KiB bodies): 400 M_INVALID_PARAM past MAX_PATTERN_LENGTH, 413 M_TOO_LARGE past the rule set caps."""
    user = home.process.register()
    actions = ["notify"]

    def put(kind: str, rule_id: str, **body) -> tuple[int, dict]:
        return user.request("PUT", f"/pushrules/global/{kind}/{rule_id}", {"actions": actions, **body})

    longest = "a" * MAX_PATTERN_LENGTH
    assert put("content", "longest", pattern=longest) == (200, {})
    for kind, body in (("content", {"pattern": longest + "a"}),
                       ("override", {"conditions": [{"kind": "event_match", "key": "content.body",
                                                     "pattern": longest + "a"}]})):
        status, resp = put(kind, "too_long", **body)
        assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp
    budget = MAX_PATTERN_CHARS - MAX_PATTERN_LENGTH
    for i in range(budget // MAX_PATTERN_LENGTH):
        assert put("content", f"more{i}", pattern=longest) == (200, {})
    status, resp = put("content", "one_too_many_chars", pattern="a")
    assert (status, resp["errcode"]) == (413, "M_TOO_LARGE"), resp
    assert put("content", "longest", pattern="b") == (200, {})  # replacing a rule frees its characters
    count = MAX_PATTERN_CHARS // MAX_PATTERN_LENGTH
    for i in range(MAX_USER_RULES - count):
        assert put("room", f"!r{i}:x", **{}) == (200, {}), i
    status, resp = put("room", "!one_too_many:x")
    assert (status, resp["errcode"]) == (413, "M_TOO_LARGE"), resp
    assert user.request("PUT", "/pushrules/global/room/!r0:x/enabled", {"enabled": False})[0] == 200


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

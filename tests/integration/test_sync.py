"""/sync over real HTTP: tokens, long-polling, filters, full_state, profile propagation.

Spec v1.19 client-server "Syncing", "Filtering" (including lazy-loading
room members), "Profiles" (changes reach the member events of joined rooms).
"""

from __future__ import annotations

import json
import threading
import time

from tests.integration.harness import q


def timeline(resp: dict, room_id: str) -> list[dict]:
    return resp["rooms"]["join"].get(room_id, {}).get("timeline", {}).get("events", [])


def bodies(events: list[dict]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def test_initial_then_incremental(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat", name="Syncing")
    bob.join(room)
    alice.send(room, "before")
    initial = bob.sync()
    joined = initial["rooms"]["join"][room]
    state_types = {e["type"] for e in joined["state"]["events"]} | {e["type"] for e in joined["timeline"]["events"]}
    assert {"m.room.create", "m.room.name", "m.room.power_levels"} <= state_types
    assert bodies(joined["timeline"]["events"]) == ["before"]
    assert joined["summary"]["m.joined_member_count"] == 2
    assert "room_id" not in joined["timeline"]["events"][0]
    since = initial["next_batch"]

    quiet = bob.sync(since)
    assert room not in quiet["rooms"]["join"] or not timeline(quiet, room)
    alice.send(room, "after 1")
    alice.send(room, "after 2")
    incremental = bob.sync(since)
    assert bodies(timeline(incremental, room)) == ["after 1", "after 2"]
    assert incremental["rooms"]["join"][room]["timeline"]["limited"] is False
    assert incremental["rooms"]["join"][room]["state"]["events"] == []
    # the same since token gives the same answer; the new one gives nothing
    assert bodies(timeline(bob.sync(since), room)) == ["after 1", "after 2"]
    assert not timeline(bob.sync(incremental["next_batch"]), room)

    status, resp = bob.request("GET", "/sync", params={"since": "not a token"})
    assert status == 400 and resp["errcode"] in ("M_INVALID_PARAM", "M_UNKNOWN")


def test_long_poll_wakes_on_new_event(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    since = bob.sync()["next_batch"]
    result = {}

    def poll():
        # Another stream (alice's presence, say) may answer a long-poll first: poll on from its token.
        started, token = time.monotonic(), since
        while time.monotonic() - started < 20:
            result["resp"] = bob.sync(token, timeout_ms=20_000)
            token = result["resp"]["next_batch"]
            if timeline(result["resp"], room):
                break
        result["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    alice.send(room, "wake up")
    poller.join(30)
    assert not poller.is_alive()
    assert bodies(timeline(result["resp"], room)) == ["wake up"]
    assert result["elapsed"] < 15

    # with nothing new, a long-poll returns empty after its timeout
    started = time.monotonic()
    empty = bob.sync(result["resp"]["next_batch"], timeout_ms=600)
    assert 0.5 <= time.monotonic() - started < 10
    assert not timeline(empty, room)


def test_sync_sees_invite_join_and_leave(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    since = bob.sync()["next_batch"]
    room = alice.create_room()
    alice.invite(room, bob)
    invite, since = bob.sync_until(lambda r: r["rooms"]["invite"].get(room), since)
    assert any(e["type"] == "m.room.create" for e in invite["invite_state"]["events"])
    bob.join(room)
    joined, since = bob.sync_until(lambda r: r["rooms"]["join"].get(room), since)
    assert any(e["type"] == "m.room.create" for e in joined["state"]["events"] + joined["timeline"]["events"])
    alice.ok("POST", f"/rooms/{q(room)}/kick", {"user_id": bob.user_id, "reason": "bye"})
    left, _ = bob.sync_until(lambda r: r["rooms"]["leave"].get(room), since)
    own = [e for e in left["timeline"]["events"] if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert own[-1]["content"]["membership"] == "leave"


def test_timeline_limit_and_types_filters(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    for i in range(8):
        alice.send(room, f"m{i}")
        alice.send(room, {"n": i}, event_type="org.example.other")
    limited = alice.sync(filter={"room": {"timeline": {"limit": 3}}})["rooms"]["join"][room]["timeline"]
    assert limited["limited"] is True and len(limited["events"]) == 3
    only_messages = alice.sync(filter={"room": {"timeline": {"limit": 4, "types": ["m.room.message"]}}})
    events = timeline(only_messages, room)
    assert events and {e["type"] for e in events} == {"m.room.message"}
    not_messages = alice.sync(filter={"room": {"timeline": {"not_types": ["m.room.message"]}}})
    assert "m.room.message" not in {e["type"] for e in timeline(not_messages, room)}
    other_room = alice.create_room()
    scoped = alice.sync(filter={"room": {"rooms": [other_room]}})
    assert room not in scoped["rooms"]["join"] and other_room in scoped["rooms"]["join"]
    fields = alice.sync(filter={"event_fields": ["type", "content.body"],
                                "room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}})
    assert timeline(fields, room) == [{"type": "m.room.message", "content": {"body": "m7"}}]


def test_event_fields_escape_dots_and_backslashes_as_push_rules_do(homeserver):
    """Spec "Filtering" ``event_fields`` (v1.8, MSC3980): ``\\.`` is a literal dot and ``\\\\`` a literal
    backslash, the escapes of push rule keys (one splitter, ``homeserver/events/dotted_paths.py``)."""
    alice = homeserver.register()
    room = alice.create_room()
    alice.send(room, {"msgtype": "m.text", "body": "b", "m.x\\y": {"a.b": "hit", "c": 1}})
    fields = alice.sync(filter={"event_fields": ["type", "content.m\\.x\\\\y.a\\.b"],
                                "room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}})
    assert timeline(fields, room) == [{"type": "m.room.message", "content": {"m.x\\y": {"a.b": "hit"}}}]


def test_timeline_limit_is_capped_and_checked(homeserver):
    """Synapse's filter_timeline_limit (100 by default): a larger room.timeline.limit, inline or stored,
    is lowered to it, however large; a limit that is not a non-negative integer, or a flag that is not a
    boolean, is M_BAD_JSON."""
    alice = homeserver.register()
    room = alice.create_room()
    for i in range(101):
        alice.send(room, f"c{i}")
    stored = alice.ok("POST", f"/user/{q(alice.user_id)}/filter", {"room": {"timeline": {"limit": 10**30}}})
    for sync_filter in ({"room": {"timeline": {"limit": 1000}}}, {"room": {"timeline": {"limit": 10**30}}},
                        stored["filter_id"]):
        joined = alice.sync(filter=sync_filter)["rooms"]["join"][room]["timeline"]
        assert joined["limited"] is True and bodies(joined["events"]) == [f"c{i}" for i in range(1, 101)]
    for limit in ("10", 2.5, -1, True, [1]):
        status, resp = alice.request("GET", "/sync", params={"filter": {"room": {"timeline": {"limit": limit}}}})
        assert (status, resp["errcode"]) == (400, "M_BAD_JSON"), (limit, resp)
    for flag in ({"room": {"include_leave": "yes"}}, {"room": {"timeline": {"contains_url": 1}}},
                 {"room": {"state": {"lazy_load_members": "true"}}}):
        status, resp = alice.request("GET", "/sync", params={"filter": flag})
        assert (status, resp["errcode"]) == (400, "M_BAD_JSON"), (flag, resp)
    huge_id = "9" * 30  # not an id we hand out: refused, not a 500
    status, resp = alice.request("GET", "/sync", params={"filter": huge_id})
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp
    status, resp = alice.request("GET", f"/user/{q(alice.user_id)}/filter/{huge_id}")
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND"), resp


def test_lazy_load_members(homeserver):
    alice, bob, carol, dave = (homeserver.register() for _ in range(4))
    room = alice.create_room(preset="public_chat")
    for user in (bob, carol, dave):
        user.join(room)
    for i in range(12):
        carol.send(room, f"carol {i}")
    lazy = {"room": {"timeline": {"limit": 5}, "state": {"lazy_load_members": True}}}
    joined = bob.sync(filter=lazy)["rooms"]["join"][room]
    members = {e["state_key"] for e in joined["state"]["events"] if e["type"] == "m.room.member"}
    assert carol.user_id in members and dave.user_id not in members and alice.user_id not in members
    assert joined["summary"]["m.joined_member_count"] == 4
    eager = bob.sync(filter={"room": {"timeline": {"limit": 5}}})["rooms"]["join"][room]
    members = {e["state_key"] for e in eager["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id, carol.user_id, dave.user_id}



def test_summary_follows_membership_changes(homeserver):
    """Spec "m.heroes" and the member counts, as members join, are invited and leave an unnamed room (the
    members are read again only where the state changed)."""
    alice, bob, carol, dave = (homeserver.register() for _ in range(4))
    room = alice.create_room(preset="public_chat")
    lazy = {"room": {"state": {"lazy_load_members": True}}}

    def summary() -> dict:
        return alice.sync(filter=lazy)["rooms"]["join"][room]["summary"]

    assert summary() == {"m.joined_member_count": 1, "m.invited_member_count": 0, "m.heroes": []}
    bob.join(room)
    alice.invite(room, carol)
    alice.send(room, "hello")
    assert summary() == {"m.joined_member_count": 2, "m.invited_member_count": 1,
                         "m.heroes": [bob.user_id, carol.user_id]}
    carol.join(room)
    dave.join(room)
    bob.leave(room)
    assert summary() == {"m.joined_member_count": 3, "m.invited_member_count": 0,
                         "m.heroes": sorted([carol.user_id, dave.user_id])}

def test_stored_filter(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    definition = {"room": {"timeline": {"limit": 2, "types": ["m.room.message"]}}}
    filter_id = alice.ok("POST", f"/user/{q(alice.user_id)}/filter", definition)["filter_id"]
    assert isinstance(filter_id, str)
    assert alice.ok("GET", f"/user/{q(alice.user_id)}/filter/{filter_id}")["room"]["timeline"]["limit"] == 2
    room = alice.create_room()
    for i in range(4):
        alice.send(room, f"s{i}")
    joined = alice.sync(filter=filter_id)["rooms"]["join"][room]
    assert bodies(joined["timeline"]["events"]) == ["s2", "s3"] and joined["timeline"]["limited"] is True

    status, resp = bob.request("GET", f"/user/{q(alice.user_id)}/filter/{filter_id}")
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = bob.request("POST", f"/user/{q(alice.user_id)}/filter", definition)
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = alice.request("GET", f"/user/{q(alice.user_id)}/filter/999999")
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")
    status, resp = alice.request("GET", "/sync", params={"filter": "999999"})
    assert status in (400, 404)
    status, resp = alice.request("POST", f"/user/{q(alice.user_id)}/filter", {"room": {"timeline": {"limit": "x"}}})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")


def test_federation_event_format(homeserver):
    """Spec "Filtering" ``event_format``: "federation" returns the raw events (the PDU: room_id, prev_events,
    auth_events, depth, hashes, signatures) with their event_id; any other value is refused."""
    alice = homeserver.register()
    room = alice.create_room()
    event_id = alice.send(room, "raw")
    raw = timeline(alice.sync(filter=json.dumps({"event_format": "federation",
                                                 "room": {"timeline": {"limit": 1}}})), room)
    assert [e["event_id"] for e in raw] == [event_id]
    for key in ("room_id", "prev_events", "auth_events", "depth", "hashes", "signatures", "origin_server_ts"):
        assert key in raw[0], key
    assert raw[0]["content"]["body"] == "raw" and "age" in raw[0]["unsigned"]
    client = timeline(alice.sync(filter=json.dumps({"room": {"timeline": {"limit": 1}}})), room)
    assert "hashes" not in client[0] and "room_id" not in client[0]
    status, resp = alice.request("POST", f"/user/{q(alice.user_id)}/filter", {"event_format": "pdu"})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")


def test_filters_with_bad_ids_or_shapes_are_refused(homeserver):
    """As Synapse's filter schema: senders must be user IDs and rooms room IDs, each part of the right shape."""
    alice = homeserver.register()
    bad = [{"presence": "not_an_object"}, {"room": {"timeline": "not_an_object"}},
           {"room": {"timeline": {"types": [0]}}}, {"room": {"timeline": {"rooms": ["not_a_room_id"]}}},
           {"room": {"not_rooms": ["not_a_room_id"]}}, {"room": {"timeline": {"senders": ["not_a_sender_id"]}}},
           {"room": {"state": {"not_senders": ["@nocolon"]}}}]
    for definition in bad:
        status, resp = alice.request("POST", f"/user/{q(alice.user_id)}/filter", definition)
        assert (status, resp["errcode"]) == (400, "M_BAD_JSON"), definition
    good = {"room": {"rooms": ["!a:example.org"], "timeline": {"senders": [alice.user_id]}}}
    assert alice.ok("POST", f"/user/{q(alice.user_id)}/filter", good)["filter_id"]


def test_full_state(homeserver):
    alice = homeserver.register()
    room = alice.create_room(name="Full")
    since = alice.sync()["next_batch"]
    alice.send(room, "one")
    resp = alice.sync(since, full_state="true")
    joined = resp["rooms"]["join"][room]
    types = {e["type"] for e in joined["state"]["events"]}
    assert {"m.room.create", "m.room.name", "m.room.member"} <= types
    assert [e["content"].get("body") for e in joined["timeline"]["events"]] == ["one"]  # still since-limited
    quiet_room = alice.create_room(name="Quiet")
    since = alice.sync()["next_batch"]
    resp = alice.sync(since, full_state="true")
    assert quiet_room in resp["rooms"]["join"] and room in resp["rooms"]["join"]


def test_profile_change_reaches_member_events(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    rooms = [alice.create_room(preset="public_chat") for _ in range(2)]
    for room in rooms:
        bob.join(room)
    since = bob.sync()["next_batch"]
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice Liddell"})
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/avatar_url", {"avatar_url": "mxc://test.local/alice"})
    assert homeserver.request("GET", f"/profile/{q(alice.user_id)}")[1] == {
        "displayname": "Alice Liddell", "avatar_url": "mxc://test.local/alice"}

    def latest_member_contents(resp):
        found = {}
        for room in rooms:
            for e in timeline(resp, room):
                if e["type"] == "m.room.member" and e["state_key"] == alice.user_id:
                    found[room] = e["content"]
        return found

    seen = {}

    def both_rooms_updated(resp):
        seen.update(latest_member_contents(resp))
        return len(seen) == 2 and all(c.get("avatar_url") for c in seen.values()) and seen

    contents, _ = bob.sync_until(both_rooms_updated, since)
    for content in contents.values():
        assert content == {"membership": "join", "displayname": "Alice Liddell",
                           "avatar_url": "mxc://test.local/alice"}
    assert bob.ok("GET", f"/rooms/{q(rooms[0])}/joined_members")["joined"][alice.user_id] == {
        "display_name": "Alice Liddell", "avatar_url": "mxc://test.local/alice"}

    status, resp = bob.request("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "x"})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = alice.request("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": 5})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")


def test_token_issued_before_streams_were_named_still_works(homeserver):
    """A ``since`` in the positional format of earlier releases (``s<events>_<account_data>_<receipts>_<typing>_
    <device_lists>_<to_device>_<presence>_<notifications>``) is an incremental sync from those positions: after an
    upgrade, clients neither start over nor get again what they had (here: messages, account data, to-device)."""
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alice.send(room, "before")
    bob.ok("PUT", f"/user/{q(bob.user_id)}/account_data/com.example.seen", {"n": 1})
    alice.ok("PUT", "/sendToDevice/m.test/old-token-txn", {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}})
    _, token = bob.sync_until(lambda r: r["to_device"]["events"])
    named = dict((part[0], int(part[1:])) for part in token.split("_"))  # s12_a3_x4...: key, then position
    assert set(named) >= {"s", "a", "x"}, token
    old = "s" + "_".join(str(named.get(key, 0)) for key in ("s", "a", "r", "t", "d", "x", "p", "n"))
    alice.send(room, "after")

    resp = bob.sync(old)
    assert bodies(timeline(resp, room)) == ["after"]
    assert resp["account_data"]["events"] == [] and resp["to_device"]["events"] == []
    # its next_batch is in the named format, and equivalent
    assert not timeline(bob.sync(resp["next_batch"]), room)

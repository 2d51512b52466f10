"""Push rules and notification counts, presence, the user directory and server-side search, over HTTP.

Spec v1.19 client-server "Push Notifications" (push rules API, unread counts in
/sync, GET /notifications), "Presence", "User directory", "Server Side Search".
"""

from __future__ import annotations

import pytest

from tests.integration.harness import q, unique

THREAD_FILTER = {"room": {"timeline": {"unread_thread_notifications": True}}}


def room_of(resp: dict, room_id: str) -> dict | None:
    return resp["rooms"]["join"].get(room_id)


def event_ids(room: dict | None) -> list[str]:
    return [e["event_id"] for e in (room or {}).get("timeline", {}).get("events", [])]


def counts(n: int, h: int = 0) -> dict:
    return {"notification_count": n, "highlight_count": h}


def room_with_event(user, room_id: str, event_id: str, since: str, **params) -> tuple[dict, str]:
    """Sync until the room's timeline holds the event; the room entry of that very response."""
    return user.sync_until(lambda r: room_of(r, room_id) if event_id in event_ids(room_of(r, room_id)) else None,
                           since, **params)


def room_when(user, room_id: str, predicate, since: str, **params) -> tuple[dict, str]:
    return user.sync_until(lambda r: room_of(r, room_id) if room_of(r, room_id) and predicate(room_of(r, room_id))
                           else None, since, **params)


def receipt(user, room_id: str, event_id: str, **body) -> None:
    user.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", body)


def mention(user_id: str, body: str = "look") -> dict:
    return {"msgtype": "m.text", "body": body, "m.mentions": {"user_ids": [user_id]}}


def error(resp: tuple[int, dict]) -> tuple[int, str]:
    return resp[0], resp[1].get("errcode")


@pytest.fixture
def trio(homeserver):
    """alice's private room with bob and carol joined (three members: no one-to-one rule)."""
    alice, bob, carol = homeserver.register(), homeserver.register(), homeserver.register()
    room = alice.create_room(preset="private_chat")
    for user in (bob, carol):
        alice.invite(room, user)
        user.join(room)
    return alice, bob, carol, room


# -- notification counts -----------------------------------------------------------------------

def test_messages_mentions_and_receipts_drive_unread_counts(trio):
    alice, bob, carol, room = trio
    first = bob.sync()
    assert room_of(first, room)["unread_notifications"] == counts(0)
    since = first["next_batch"]
    alice.send(room, "one")
    two = alice.send(room, "two")
    entry, since = room_with_event(bob, room, two, since)
    assert entry["unread_notifications"] == counts(2)  # in the same response as the event
    ping = alice.send(room, mention(bob.user_id))
    entry, since = room_with_event(bob, room, ping, since)
    assert entry["unread_notifications"] == counts(3, 1)

    carol_room = room_of(carol.sync(), room)
    assert carol_room["unread_notifications"] == counts(3, 0)
    assert room_of(alice.sync(), room)["unread_notifications"] == counts(0)  # own messages never count

    receipt(bob, room, ping)
    entry, since = room_when(bob, room, lambda r: r["unread_notifications"] == counts(0), since)
    notice = alice.send(room, {"msgtype": "m.notice", "body": "bot says hi"})
    entry, since = room_with_event(bob, room, notice, since)
    assert entry["unread_notifications"] == counts(0)
    bob.send(room, "my own message")
    last = alice.send(room, "after")
    entry, since = room_with_event(bob, room, last, since)
    assert entry["unread_notifications"] == counts(1)


def test_counts_follow_joins_leaves_and_display_name_changes(trio):
    """The members a message is counted for, and their display names (the display-name rule), follow the
    room's membership as it changes (kept in memory per state, carried over at each change)."""
    alice, bob, carol, room = trio
    bob.ok("PUT", "/pushrules/global/override/my-name", {  # no default rule looks at display names now
        "conditions": [{"kind": "contains_display_name"}], "actions": ["notify", {"set_tweak": "highlight"}]})
    since = bob.sync()["next_batch"]
    bob.ok("PUT", f"/rooms/{q(room)}/state/m.room.member/{q(bob.user_id)}",
           {"membership": "join", "displayname": "Zebulon"})
    ping = alice.send(room, "hello Zebulon")
    entry, since = room_with_event(bob, room, ping, since)
    assert entry["unread_notifications"] == counts(1, 1)  # his new name highlights
    carol.leave(room)
    after_leave = alice.send(room, "carol is gone")
    entry, since = room_with_event(bob, room, after_leave, since)
    assert entry["unread_notifications"] == counts(2, 1)
    alice.invite(room, carol)
    carol.join(room)
    back = alice.send(room, "carol is back")
    carol_room = carol.sync_until(lambda r: room_of(r, room) if back in event_ids(room_of(r, room)) else None)[0]
    assert carol_room["unread_notifications"] == counts(1)  # counted for her again, from her return on


def test_direct_chat_and_room_mention_need_power(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], is_direct=True)
    bob.join(room)
    since = bob.sync()["next_batch"]
    everyone = {"msgtype": "m.text", "body": "@room hi", "m.mentions": {"room": True}}
    bob.send(room, everyone)  # trusted_private_chat makes bob an admin too
    event = alice.send(room, everyone)
    entry, _ = room_with_event(bob, room, event, since)
    assert entry["unread_notifications"] == counts(1, 1)
    assert room_of(alice.sync(), room)["unread_notifications"] == counts(1, 1)
    plain = alice.send(room, "just us")
    entry, _ = room_with_event(bob, room, plain, since)
    assert entry["unread_notifications"] == counts(2, 1)


def test_room_mention_from_unprivileged_user_does_not_highlight(trio):
    alice, bob, carol, room = trio
    since = alice.sync()["next_batch"]
    event = carol.send(room, {"msgtype": "m.text", "body": "@room", "m.mentions": {"room": True}})
    entry, _ = room_with_event(alice, room, event, since)
    assert entry["unread_notifications"] == counts(1, 0)


def test_thread_notifications_are_counted_per_thread(trio):
    alice, bob, _, room = trio
    root = alice.send(room, "thread root")
    receipt(bob, room, root)
    since = bob.sync(filter=THREAD_FILTER)["next_batch"]
    in_thread = {"msgtype": "m.text", "body": "reply", "m.relates_to": {"rel_type": "m.thread", "event_id": root}}
    alice.send(room, in_thread)
    reply = alice.send(room, in_thread)
    entry, since = room_with_event(bob, room, reply, since, filter=THREAD_FILTER)
    assert entry["unread_notifications"] == counts(0)
    assert entry["unread_thread_notifications"] == {root: counts(2)}
    assert room_of(bob.sync(), room)["unread_notifications"] == counts(2)  # without the filter: all threads

    alice.send(room, "main timeline")
    receipt(bob, room, reply, thread_id=root)  # reads the thread, not the main timeline
    room_when(bob, room, lambda r: r["unread_notifications"] == counts(1) and "unread_thread_notifications" not in r,
              since, filter=THREAD_FILTER)


def test_notifications_listing(trio):
    alice, bob, _, room = trio
    sent = [alice.send(room, "first"), alice.send(room, mention(bob.user_id, "second")), alice.send(room, "third")]
    listing = bob.ok("GET", "/notifications")["notifications"]
    assert [n["event"]["event_id"] for n in listing[:3]] == sent[::-1]
    invite = listing[3]["event"]  # .m.rule.invite_for_me
    assert len(listing) == 4 and invite["type"] == "m.room.member" and invite["state_key"] == bob.user_id
    top = listing[0]
    assert top["room_id"] == room and top["read"] is False and "notify" in top["actions"]
    assert isinstance(top["ts"], int) and "room_id" not in top["event"]

    highlights = bob.ok("GET", "/notifications", params={"only": "highlight"})["notifications"]
    assert [n["event"]["event_id"] for n in highlights] == [sent[1]]
    assert {"set_tweak": "highlight"} in highlights[0]["actions"]

    page = bob.ok("GET", "/notifications", params={"limit": 3})
    assert len(page["notifications"]) == 3 and page["next_token"]
    rest = bob.ok("GET", "/notifications", params={"limit": 3, "from": page["next_token"]})
    assert [n["event"]["event_id"] for n in rest["notifications"]] == [invite["event_id"]]
    assert "next_token" not in rest

    receipt(bob, room, sent[1])
    reads = {n["event"]["event_id"]: n["read"] for n in bob.ok("GET", "/notifications")["notifications"]}
    assert reads == {sent[0]: True, sent[1]: True, sent[2]: False, invite["event_id"]: True}
    assert error(bob.request("GET", "/notifications", params={"from": "nope"})) == (400, "M_INVALID_PARAM")
    assert error(bob.request("GET", "/notifications", params={"limit": "x"})) == (400, "M_INVALID_PARAM")


def test_counts_and_notifications_survive_a_restart(homeserver_factory):
    server = homeserver_factory()
    alice, bob = server.register(), server.register()
    room = alice.create_room()
    alice.invite(room, bob)
    bob.join(room)
    since = bob.sync()["next_batch"]
    event = alice.send(room, mention(bob.user_id))
    server.stop()  # at once: the push actions may still be staged, and must be written on the way out
    server.start()
    entry = room_of(bob.sync(), room)
    assert event in event_ids(entry) and entry["unread_notifications"] == counts(1, 1)
    assert [n["event"]["event_id"] for n in bob.ok("GET", "/notifications")["notifications"]][0] == event
    entry, _ = room_with_event(bob, room, alice.send(room, "again"), since)
    assert entry["unread_notifications"] == counts(2, 1)


# -- push rules ---------------------------------------------------------------------------------

def rule_ids(user, kind: str) -> list[str]:
    return [r["rule_id"] for r in user.ok("GET", "/pushrules/")["global"][kind]]


def test_default_ruleset(homeserver):
    user = homeserver.register()
    rules = user.ok("GET", "/pushrules/")
    assert set(rules["global"]) == {"override", "content", "room", "sender", "underride"}
    assert rules["global"] == user.ok("GET", "/pushrules/global/")
    override = rules["global"]["override"]
    assert override[0] == {"rule_id": ".m.rule.master", "default": True, "enabled": False, "actions": [],
                           "conditions": []}
    mention = next(r for r in override if r["rule_id"] == ".m.rule.is_user_mention")
    assert mention["conditions"][0]["value"] == user.user_id
    assert ".m.rule.is_room_mention" in rule_ids(user, "override")
    assert rule_ids(user, "underride") == [".m.rule.call", ".m.rule.encrypted_room_one_to_one",
                                           ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"]
    assert rules["global"]["content"] == []
    initial = user.sync()["account_data"]["events"]
    assert [e["content"] for e in initial if e["type"] == "m.push_rules"] == [rules]


def test_push_rule_crud_and_ordering(homeserver):
    user = homeserver.register()
    since = user.sync()["next_batch"]
    user.ok("PUT", "/pushrules/global/content/cake", {"pattern": "cake*lie", "actions": ["notify"]})
    assert user.ok("GET", "/pushrules/global/content/cake") == {
        "rule_id": "cake", "default": False, "enabled": True, "actions": ["notify"], "pattern": "cake*lie"}
    data, _ = user.sync_until(lambda r: next((e for e in r["account_data"]["events"]
                                              if e["type"] == "m.push_rules"), None), since)
    assert [r["rule_id"] for r in data["content"]["global"]["content"]] == ["cake"]

    cond = [{"kind": "event_match", "key": "content.body", "pattern": "beer"}]
    user.ok("PUT", "/pushrules/global/override/a", {"conditions": cond, "actions": []})
    user.ok("PUT", "/pushrules/global/override/b", {"conditions": cond, "actions": []}, params={"before": "a"})
    user.ok("PUT", "/pushrules/global/override/c", {"conditions": cond, "actions": []}, params={"after": "b"})
    user.ok("PUT", "/pushrules/global/override/d", {"actions": ["notify"]})
    assert rule_ids(user, "override")[:6] == [".m.rule.master", "d", "b", "c", "a", ".m.rule.suppress_notices"]
    user.ok("PUT", "/pushrules/global/override/a", {"conditions": [], "actions": ["notify"]})
    assert rule_ids(user, "override")[1:5] == ["d", "b", "c", "a"]  # an update keeps its place
    user.ok("PUT", "/pushrules/global/override/a", {"actions": []}, params={"before": "d"})
    assert rule_ids(user, "override")[1:5] == ["a", "d", "b", "c"]
    assert user.ok("GET", "/pushrules/global/override/d")["conditions"] == []

    assert user.ok("GET", "/pushrules/global/override/a/enabled") == {"enabled": True}
    user.ok("PUT", "/pushrules/global/override/a/enabled", {"enabled": False})
    assert user.ok("GET", "/pushrules/global/override/a")["enabled"] is False
    user.ok("PUT", "/pushrules/global/override/a/actions", {"actions": ["notify", {"set_tweak": "highlight"}]})
    assert user.ok("GET", "/pushrules/global/override/a/actions") == {
        "actions": ["notify", {"set_tweak": "highlight"}]}
    assert user.ok("GET", "/pushrules/global/override/a")["enabled"] is False  # actions kept enabled

    user.ok("PUT", "/pushrules/global/underride/.m.rule.message/enabled", {"enabled": False})
    user.ok("PUT", "/pushrules/global/override/.m.rule.tombstone/actions", {"actions": ["dont_notify"]})
    message = user.ok("GET", "/pushrules/global/underride/.m.rule.message")
    assert message["enabled"] is False and message["default"] is True
    assert user.ok("GET", "/pushrules/global/override/.m.rule.tombstone/actions") == {"actions": ["dont_notify"]}

    user.ok("PUT", f"/pushrules/global/room/{q('!some:room')}", {"actions": []})
    assert user.ok("GET", f"/pushrules/global/room/{q('!some:room')}") == {
        "rule_id": "!some:room", "default": False, "enabled": True, "actions": []}
    user.ok("DELETE", "/pushrules/global/content/cake")
    assert error(user.request("GET", "/pushrules/global/content/cake")) == (404, "M_NOT_FOUND")
    assert error(user.request("DELETE", "/pushrules/global/content/cake")) == (404, "M_NOT_FOUND")


@pytest.mark.parametrize("method, path, body, params, expected", [
    ("GET", "/pushrules/global/bogus/x", None, None, (400, "M_INVALID_PARAM")),  # not one of kind's enum
    ("GET", "/pushrules/global/bogus/", None, None, (400, "M_INVALID_PARAM")),
    ("PUT", "/pushrules/global/override/", {"actions": []}, None, (400, "M_INVALID_PARAM")),  # empty ruleId
    # Not endpoints of spec v1.19 (no scope but "global", no attribute but enabled and actions): M_UNRECOGNIZED
    # "coupled with a 404 HTTP status code if the endpoint is not implemented" (Synapse answers 400).
    ("GET", "/pushrules/global", None, None, (404, "M_UNRECOGNIZED")),
    ("PUT", "/pushrules/not_a_scope/room/x", {"actions": []}, None, (404, "M_UNRECOGNIZED")),
    ("PUT", "/pushrules/global/override/.m.rule.master/not_an_attr", {"enabled": True}, None,
     (404, "M_UNRECOGNIZED")),
    ("GET", "/pushrules/global/override/nope", None, None, (404, "M_NOT_FOUND")),
    ("GET", "/pushrules/global/override/nope/enabled", None, None, (404, "M_NOT_FOUND")),
    ("GET", "/pushrules/global/override/nope/actions", None, None, (404, "M_NOT_FOUND")),
    ("PUT", "/pushrules/global/override/nope/enabled", {"enabled": True}, None, (404, "M_NOT_FOUND")),
    ("PUT", "/pushrules/global/override/nope/actions", {"actions": []}, None, (404, "M_NOT_FOUND")),
    ("DELETE", "/pushrules/global/override/.m.rule.master", None, None, (404, "M_NOT_FOUND")),
    ("DELETE", "/pushrules/global/bogus/x", None, None, (400, "M_INVALID_PARAM")),
    ("PUT", "/pushrules/global/override/.mine", {"actions": []}, None, (400, "M_INVALID_PARAM")),
    ("PUT", "/pushrules/global/bogus/x", {"actions": []}, None, (400, "M_INVALID_PARAM")),
    ("PUT", "/pushrules/global/override/x%5Cy", {"actions": []}, None, (400, "M_INVALID_PARAM")),
    ("PUT", "/pushrules/global/override/x", {"conditions": []}, None, (400, "M_BAD_JSON")),
    ("PUT", "/pushrules/global/override/x", {"actions": ["explode"]}, None, (400, "M_INVALID_PARAM")),
    ("PUT", "/pushrules/global/override/x", {"actions": [], "conditions": [{}]}, None, (400, "M_BAD_JSON")),
    ("PUT", "/pushrules/global/content/x", {"actions": []}, None, (400, "M_BAD_JSON")),
    ("PUT", "/pushrules/global/override/x", {"actions": []}, {"before": "missing"}, (400, "M_INVALID_PARAM")),
    ("PUT", "/pushrules/global/override/x", {"actions": []}, {"after": ".m.rule.master"},
     (400, "M_INVALID_PARAM")),
    ("PUT", "/pushrules/global/override/.m.rule.master/enabled", {"enabled": "yes"}, None, (400, "M_BAD_JSON")),
    ("PUT", "/pushrules/global/override/.m.rule.master/enabled", {}, None, (400, "M_MISSING_PARAM")),
    ("PUT", "/pushrules/global/override/.m.rule.master/actions", {"actions": "notify"}, None, (400, "M_BAD_JSON")),
    ("PUT", "/pushrules/global/override/x", "{not json", None, (400, "M_NOT_JSON")),
])
def test_push_rule_errors(homeserver, method, path, body, params, expected):
    user = homeserver.register()
    assert error(user.request(method, path, body, params=params)) == expected


def test_push_rules_change_what_counts(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    muted, normal = alice.create_room(), alice.create_room()
    for room in (muted, normal):
        alice.invite(room, bob)
        bob.join(room)
    bob.ok("PUT", f"/pushrules/global/room/{q(muted)}", {"actions": []})
    since = bob.sync()["next_batch"]
    alice.send(muted, "shh")
    event = alice.send(normal, "hey")
    entry, since = room_with_event(bob, normal, event, since)
    assert entry["unread_notifications"] == counts(1)
    assert room_of(bob.sync(), muted)["unread_notifications"] == counts(0)

    bob.ok("PUT", "/pushrules/global/override/.m.rule.master/enabled", {"enabled": True})
    event = alice.send(normal, mention(bob.user_id))
    entry, since = room_with_event(bob, normal, event, since)
    assert entry["unread_notifications"] == counts(1)

    bob.ok("PUT", "/pushrules/global/override/.m.rule.master/enabled", {"enabled": False})
    bob.ok("PUT", "/pushrules/global/content/cake", {"pattern": "cake", "actions": ["notify", {"set_tweak": "highlight"}]})
    event = alice.send(normal, "Cake time!")
    entry, _ = room_with_event(bob, normal, event, since)
    assert entry["unread_notifications"] == counts(2, 1)



def test_members_with_their_own_rules_among_default_ones(homeserver):
    """Members with the default rules are evaluated together: one with a muted room, one with a content rule
    and one mentioned or invited still get their own actions."""
    alice = homeserver.register()
    bob, carol, dave, erin = (homeserver.register() for _ in range(4))
    room = alice.create_room(preset="public_chat")
    for user in (bob, carol, dave, erin):
        user.join(room)
    bob.ok("PUT", f"/pushrules/global/room/{q(room)}", {"actions": []})
    carol.ok("PUT", "/pushrules/global/content/cats",
             {"pattern": "cats", "actions": ["notify", {"set_tweak": "highlight"}]})
    since = {u.user_id: u.sync()["next_batch"] for u in (bob, carol, dave, erin)}
    alice.send(room, "cats!")
    alice.send(room, mention(dave.user_id.upper()))  # m.mentions compares IDs exactly
    alice.send(room, mention(dave.user_id))
    last = alice.send(room, {"msgtype": "m.notice", "body": "bot"})
    expected = [(bob, counts(0)), (carol, counts(3, 1)), (dave, counts(3, 1)), (erin, counts(3))]
    for user, want in expected:
        entry, _ = room_with_event(user, room, last, since[user.user_id])
        assert entry["unread_notifications"] == want, user.user_id
    frank = homeserver.register()
    alice.invite(room, frank)
    assert frank.ok("GET", "/notifications")["notifications"][0]["event"]["state_key"] == frank.user_id


# -- presence -------------------------------------------------------------------------------------

def presence_of(resp: dict, user_id: str) -> dict | None:
    return next((e["content"] for e in resp["presence"]["events"] if e["sender"] == user_id), None)


def test_presence_seen_by_room_peers_only(homeserver):
    alice, bob, stranger = homeserver.register(), homeserver.register(), homeserver.register()
    room = alice.create_room()
    alice.invite(room, bob)
    bob.join(room)
    since = bob.sync()["next_batch"]
    alice.ok("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "online", "status_msg": "at lunch"})
    seen, since = bob.sync_until(lambda r: presence_of(r, alice.user_id), since)
    assert seen["presence"] == "online" and seen["status_msg"] == "at lunch" and seen["currently_active"] is True
    assert isinstance(seen["last_active_ago"], int)
    status = bob.ok("GET", f"/presence/{q(alice.user_id)}/status")
    assert status["presence"] == "online" and status["status_msg"] == "at lunch"

    alice.ok("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "unavailable"})
    seen, since = bob.sync_until(lambda r: presence_of(r, alice.user_id), since)
    assert seen["presence"] == "unavailable" and "status_msg" not in seen and "currently_active" not in seen

    first = stranger.sync()
    assert presence_of(first, alice.user_id) is None
    assert error(stranger.request("GET", f"/presence/{q(alice.user_id)}/status")) == (403, "M_FORBIDDEN")
    assert error(bob.request("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "online"})) == (
        403, "M_FORBIDDEN")

    alice.invite(room, stranger)  # sending an event is activity: alice is online again
    assert bob.ok("GET", f"/presence/{q(alice.user_id)}/status")["presence"] == "online"
    stranger.join(room)  # now sharing a room: the next sync brings alice's presence along
    seen, _ = stranger.sync_until(lambda r: presence_of(r, alice.user_id), first["next_batch"])
    assert seen["presence"] == "online" and seen["currently_active"] is True


def test_sync_set_presence(homeserver):
    user = homeserver.register()
    user.sync(set_presence="unavailable")
    assert user.ok("GET", f"/presence/{q(user.user_id)}/status")["presence"] == "unavailable"
    user.sync(set_presence="offline")  # changes nothing
    assert user.ok("GET", f"/presence/{q(user.user_id)}/status")["presence"] == "unavailable"
    first = user.sync()
    own = user.ok("GET", f"/presence/{q(user.user_id)}/status")
    assert own["presence"] == "online" and own["currently_active"] is True
    assert presence_of(user.sync(), user.user_id)["presence"] == "online"
    assert first["next_batch"]
    assert error(user.request("GET", "/sync", params={"set_presence": "away"})) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize("body, expected", [
    ({"presence": "busy"}, (400, "M_INVALID_PARAM")), ({}, (400, "M_BAD_JSON")),
    ({"presence": 1}, (400, "M_BAD_JSON")), ({"presence": "online", "status_msg": 3}, (400, "M_BAD_JSON")),
    ({"presence": "online", "mood": "great"}, (400, "M_BAD_JSON")),
])
def test_presence_errors(homeserver, body, expected):
    user = homeserver.register()
    assert error(user.request("PUT", f"/presence/{q(user.user_id)}/status", body)) == expected


def test_presence_disabled(homeserver_factory):
    server = homeserver_factory(presence={"enabled": False})
    alice, bob = server.register(), server.register()
    room = alice.create_room()
    alice.invite(room, bob)
    bob.join(room)
    alice.ok("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "online", "status_msg": "hi"})
    assert bob.ok("GET", f"/presence/{q(alice.user_id)}/status") == {"presence": "offline"}
    assert bob.sync()["presence"]["events"] == []
    assert error(alice.request("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "nope"})) == (
        400, "M_INVALID_PARAM")


# -- user directory -----------------------------------------------------------------------------

def search_users(user, term: str, **extra) -> dict:
    return user.ok("POST", "/user_directory/search", {"search_term": term, **extra})


def found(user, term: str, **extra) -> list[str]:
    return [r["user_id"] for r in search_users(user, term, **extra)["results"]]


def test_user_directory_finds_room_peers_not_strangers(homeserver):
    alice, bob, stranger = homeserver.register(), homeserver.register(), homeserver.register()
    tag = unique("zq")
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": f"Quixotic {tag} Zebra"})
    room = alice.create_room()
    alice.invite(room, bob)
    bob.join(room)
    result = search_users(bob, f"quixotic {tag}")
    assert result == {"limited": False, "results": [
        {"user_id": alice.user_id, "display_name": f"Quixotic {tag} Zebra"}]}
    assert found(bob, f"QUIX {tag[:4]}") == [alice.user_id]  # word prefixes, any case
    assert found(bob, tag[2:]) == []  # not the middle of a word
    assert found(bob, alice.user_id.split(":")[0][1:]) == [alice.user_id]  # the localpart
    assert found(stranger, tag) == []


def test_user_directory_searcher_finds_themself_only_through_a_public_room(homeserver):
    """As Synapse: sharing a private room with oneself does not list oneself; being in a public room does."""
    owner, user = homeserver.register(), homeserver.register()
    tag = unique("self")
    user.ok("PUT", f"/profile/{q(user.user_id)}/displayname", {"displayname": f"{tag} me"})
    room = owner.create_room(preset="private_chat")
    owner.invite(room, user)
    user.join(room)
    assert found(user, tag) == [] and found(owner, tag) == [user.user_id]
    owner.put_state(room, "m.room.join_rules", {"join_rule": "public"})
    assert found(user, tag) == [user.user_id]
    owner.put_state(room, "m.room.join_rules", {"join_rule": "invite"})
    owner.put_state(room, "m.room.history_visibility", {"history_visibility": "world_readable"})
    assert found(user, tag) == [user.user_id]
    owner.put_state(room, "m.room.history_visibility", {"history_visibility": "shared"})
    assert found(user, tag) == []


def test_user_directory_public_rooms_and_limit(homeserver):
    owner, searcher = homeserver.register(), homeserver.register()
    tag = unique("pub")
    members = [homeserver.register() for _ in range(3)]
    room = owner.create_room(preset="public_chat")
    for member in members:
        member.ok("PUT", f"/profile/{q(member.user_id)}/displayname", {"displayname": f"{tag} member"})
        member.join(room)
    assert sorted(found(searcher, tag)) == sorted(m.user_id for m in members)
    limited = search_users(searcher, tag, limit=2)
    assert len(limited["results"]) == 2 and limited["limited"] is True
    owner.put_state(room, "m.room.join_rules", {"join_rule": "invite"})
    assert found(searcher, tag) == []


@pytest.mark.parametrize("body, expected", [
    ({}, (400, "M_MISSING_PARAM")), ({"search_term": 3}, (400, "M_BAD_JSON")),
    ({"search_term": "x", "limit": "10"}, (400, "M_BAD_JSON")),
])
def test_user_directory_errors(homeserver, body, expected):
    user = homeserver.register()
    assert error(user.request("POST", "/user_directory/search", body)) == expected


def test_user_directory_multi_word_terms_whichever_word_is_rarest(homeserver):
    """Every word of a term must start a word of the user's (storage/user_directory.py reads the users of its
    rarest word, whether it sorts first or last, and checks the other words on them): room peers only."""
    searcher, stranger = homeserver.register(), homeserver.register()
    common, first, last = unique("mmm"), unique("aaa"), unique("zzz")
    room = searcher.create_room(preset="private_chat")
    peers = [homeserver.register() for _ in range(4)]
    names = [f"{common} {first}", f"{common} {last} x", f"{common} {last} y", f"{common}"]
    for peer, name in zip(peers, names):
        peer.ok("PUT", f"/profile/{q(peer.user_id)}/displayname", {"displayname": name})
        searcher.invite(room, peer)
        peer.join(room)
    assert sorted(found(searcher, common)) == sorted(p.user_id for p in peers)
    assert found(searcher, f"{common} {first}") == [peers[0].user_id]
    assert found(searcher, f"{first} {common}") == [peers[0].user_id]
    assert sorted(found(searcher, f"{common} {last}")) == sorted([peers[1].user_id, peers[2].user_id])
    assert found(searcher, f"{last} {common} y") == [peers[2].user_id]
    assert found(searcher, f"{first} {last}") == []
    assert found(stranger, f"{common} {first}") == []


def test_user_directory_search_all_users(homeserver_factory):
    server = homeserver_factory(user_directory={"search_all_users": True})
    loner, searcher = server.register(), server.register()
    assert found(searcher, loner.user_id.split(":")[0][1:]) == [loner.user_id]
    assert found(searcher, searcher.user_id.split(":")[0][1:]) == []  # never oneself (as Synapse)
    # a member of the searcher's room, once deactivated, is not found either (all local users are looked up)
    peer, tag = server.register(), unique("peer")
    peer.ok("PUT", f"/profile/{q(peer.user_id)}/displayname", {"displayname": f"{tag} {tag}x"})
    room = searcher.create_room(preset="public_chat")
    peer.join(room)
    assert found(searcher, f"{tag}x {tag}") == [peer.user_id]
    peer.ok("POST", "/account/deactivate", {"auth": {"type": "m.login.password", "user": peer.user_id,
                                                      "password": peer.password}})
    assert found(searcher, tag) == []


# -- search ------------------------------------------------------------------------------------

def search(user, term: str, next_batch: str | None = None, **criteria) -> dict:
    body = {"search_categories": {"room_events": {"search_term": term, **criteria}}}
    return user.ok("POST", "/search", body, params={"next_batch": next_batch})["search_categories"]["room_events"]


def result_ids(res: dict) -> list[str]:
    return [r["result"]["event_id"] for r in res["results"]]


def test_search_finds_messages_of_joined_rooms_only(trio, homeserver):
    alice, bob, _, room = trio
    word = unique("kumquat")
    event = alice.send(room, f"Who ate the {word}?")
    alice.send(room, "unrelated chatter")
    res = search(bob, word)
    assert result_ids(res) == [event] and res["count"] == 1 and res["highlights"] == [word]
    hit = res["results"][0]
    assert hit["result"]["room_id"] == room and hit["result"]["content"]["body"] == f"Who ate the {word}?"
    assert isinstance(hit["rank"], (int, float)) and "next_batch" not in res
    assert search(bob, word.upper())["results"][0]["result"]["event_id"] == event
    outsider = homeserver.register()
    assert search(outsider, word)["results"] == []

    bob.leave(room)
    assert search(bob, word)["results"] == []


def test_search_respects_history_visibility_and_redaction(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(initial_state=[{"type": "m.room.history_visibility", "content": {
        "history_visibility": "joined"}}])
    word = unique("secret")
    before = alice.send(room, f"{word} before bob")
    alice.invite(room, bob)
    bob.join(room)
    after = alice.send(room, f"{word} after bob")
    assert result_ids(search(bob, word)) == [after]
    assert sorted(result_ids(search(alice, word))) == sorted([before, after])
    alice.ok("PUT", f"/rooms/{q(room)}/redact/{q(after)}/{unique('txn')}", {})
    assert result_ids(search(bob, word)) == []


def test_search_pagination_recent(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    word = unique("page")
    sent = [alice.send(room, f"{word} number {i}") for i in range(5)]
    seen, token, pages = [], None, 0
    while True:
        res = search(alice, word, token, order_by="recent", filter={"limit": 2})
        seen += result_ids(res)
        pages += 1
        assert len(res["results"]) <= 2 and res["count"] == 5
        token = res.get("next_batch")
        if token is None:
            break
    assert seen == sent[::-1] and pages == 3
    ranked = search(alice, word, filter={"limit": 3})
    assert len(ranked["results"]) == 3 and ranked["next_batch"]
    rest = search(alice, word, ranked["next_batch"], filter={"limit": 3})
    assert sorted(result_ids(ranked) + result_ids(rest)) == sorted(sent)


def test_search_keys_context_groups_and_state(homeserver):
    alice = homeserver.register()
    word = unique("zanzibar")
    room = alice.create_room(name=f"Trip to {word}")
    other = alice.create_room()
    before = alice.send(room, "warming up")
    hit = alice.send(room, f"{word} pictures")
    after = alice.send(room, "so nice")
    elsewhere = alice.send(other, f"{word} again")
    assert len(search(alice, word, keys=["content.body"])["results"]) == 2
    names = search(alice, word, keys=["content.name"])
    assert [r["result"]["type"] for r in names["results"]] == ["m.room.name"]
    only_room = search(alice, word, keys=["content.body"], filter={"rooms": [room]})
    assert result_ids(only_room) == [hit]

    res = search(alice, word, keys=["content.body"], order_by="recent", include_state=True,
                 event_context={"before_limit": 1, "after_limit": 1, "include_profile": True},
                 groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]})
    assert result_ids(res) == [elsewhere, hit]
    context = res["results"][1]["context"]
    assert [e["event_id"] for e in context["events_before"]] == [before]
    assert [e["event_id"] for e in context["events_after"]] == [after]
    assert context["start"] and context["end"] and alice.user_id in context["profile_info"]
    assert res["groups"]["room_id"][room]["results"] == [hit]
    assert res["groups"]["room_id"][other] == {"results": [elsewhere], "order": 1}
    assert res["groups"]["sender"][alice.user_id]["results"] == [elsewhere, hit]
    assert {e["type"] for e in res["state"][room]} >= {"m.room.create", "m.room.name"}


@pytest.mark.parametrize("body, params, expected", [
    ({}, None, (400, "M_MISSING_PARAM")),
    ({"search_categories": []}, None, (400, "M_BAD_JSON")),
    ({"search_categories": {"room_events": {}}}, None, (400, "M_MISSING_PARAM")),
    ({"search_categories": {"room_events": {"search_term": 5}}}, None, (400, "M_BAD_JSON")),
    ({"search_categories": {"room_events": {"search_term": "x", "order_by": "best"}}}, None, (400, "M_INVALID_PARAM")),
    ({"search_categories": {"room_events": {"search_term": "x", "keys": ["content.url"]}}}, None,
     (400, "M_INVALID_PARAM")),
    ({"search_categories": {"room_events": {"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}}}},
     None, (400, "M_INVALID_PARAM")),
    ({"search_categories": {"room_events": {"search_term": "x", "event_context": {"before_limit": -1}}}}, None,
     (400, "M_BAD_JSON")),
    ({"search_categories": {"room_events": {"search_term": "x"}}}, {"next_batch": "garbage"},
     (400, "M_INVALID_PARAM")),
])
def test_search_errors(homeserver, body, params, expected):
    user = homeserver.register()
    assert error(user.request("POST", "/search", body, params=params)) == expected


def test_search_without_room_events_category(homeserver):
    user = homeserver.register()
    assert user.ok("POST", "/search", {"search_categories": {}}) == {"search_categories": {}}


def test_user_directory_index_follows_renames_and_deactivation(homeserver_factory):
    """The words index (storage/user_directory.py) is rewritten with each profile change: a user in no room
    (search_all_users) is found by their new name, not by their old one, and no longer once deactivated."""
    server = homeserver_factory(user_directory={"search_all_users": True})
    loner, searcher = server.register(), server.register()
    old, new = unique("oldname"), unique("newname")
    loner.ok("PUT", f"/profile/{q(loner.user_id)}/displayname", {"displayname": f"Ada {old}"})
    assert found(searcher, old) == [loner.user_id]
    loner.ok("PUT", f"/profile/{q(loner.user_id)}/displayname", {"displayname": f"Ada {new}"})
    assert found(searcher, new[:-2]) == [loner.user_id]  # a prefix of a word of the new name
    assert found(searcher, old) == []
    assert found(searcher, f"ada {new}") == [loner.user_id]
    loner.ok("POST", "/account/deactivate", {"auth": {"type": "m.login.password", "user": loner.user_id,
                                                       "password": loner.password}})
    assert found(searcher, new) == []


def test_first_sync_shows_own_presence_and_peers_see_it_after(homeserver):
    """/sync sets the user online (services/presence.py user_syncing; the initial sync reads states from memory
    first): the first initial sync already shows the user online, and a room peer's next syncs do."""
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    since = alice.sync(set_presence="offline")["next_batch"]
    first = bob.sync()
    assert presence_of(first, bob.user_id)["presence"] == "online"
    seen = alice.sync_until(lambda r: (presence_of(r, bob.user_id) or {}).get("presence") == "online", since)
    assert seen

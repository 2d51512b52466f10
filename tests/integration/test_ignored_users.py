"""Ignoring users: ``m.ignored_user_list`` hides their messages and invites.

Spec v1.19 client-server "Ignoring Users": the server leaves out the ignored users' events (their state
events stay, as Synapse) from /sync and the other read paths, and their invites.
"""

from __future__ import annotations

from tests.integration.harness import q, timeline_events


def ignore(user, *others) -> None:
    user.ok("PUT", f"/user/{q(user.user_id)}/account_data/m.ignored_user_list",
            {"ignored_users": {o.user_id: {} for o in others}})


def test_ignored_users_messages_are_left_out(homeserver):
    alice, bob, carol = homeserver.register(), homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    bob.send(room, "before")
    ignore(alice, bob)
    since = alice.sync()["next_batch"]
    bob.send(room, "ignored")
    marker = alice.put_state(room, "m.room.topic", {"topic": "marker"})   # to know bob's message is in
    resp = alice.sync(since)
    assert [e["event_id"] for e in timeline_events(resp, room)] == [marker]
    since = resp["next_batch"]
    bob.send(room, "only bob")
    _, since = carol.sync_until(lambda r: timeline_events(r, room))   # bob's message is committed
    assert room not in alice.sync(since)["rooms"]["join"]   # nothing else new: no entry for the room
    carol.send(room, "from carol")
    event, _ = alice.timeline_until(room, lambda e: e["type"] == "m.room.message", since=since)
    assert event["sender"] == carol.user_id
    bodies = [e["content"].get("body") for e in alice.messages(room, dir="b", limit=50)["chunk"]
              if e["type"] == "m.room.message"]
    assert "from carol" in bodies and not {"before", "ignored", "only bob"} & set(bodies)
    # state events of an ignored user stay (bob's membership)
    members = alice.ok("GET", f"/rooms/{q(room)}/members")["chunk"]
    assert bob.user_id in {m["state_key"] for m in members}


def test_invites_from_ignored_users_are_left_out(homeserver):
    alice, bob, carol = homeserver.register(), homeserver.register(), homeserver.register()
    ignore(alice, bob)
    since = alice.sync()["next_batch"]
    room = bob.create_room()
    bob.invite(room, alice)
    other = carol.create_room()
    carol.invite(other, alice)
    invites, _ = alice.sync_until(lambda r: r["rooms"]["invite"], since=since)
    assert set(invites) == {other}
    assert set(alice.sync()["rooms"]["invite"]) == {other}

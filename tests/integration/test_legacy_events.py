"""The deprecated event stream and initial syncs over real HTTP (spec v1.19 client-server, deprecated forms
of "Syncing"): GET /events (long-polled, woken by a message), GET /events/{eventId}, GET /initialSync,
GET /rooms/{roomId}/initialSync."""

from __future__ import annotations

import threading

from tests.integration.harness import q


def test_events_starts_now_and_wakes_on_a_message(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    first = alice.ok("GET", "/events", params={"timeout": 0})
    assert first["chunk"] == [] and first["start"] and first["end"]
    answer = {}

    def poll():   # long-polls until the message comes (presence changes may come first)
        token = first["end"]
        while not any(e.get("type") == "m.room.message" for e in answer.get("chunk", [])):
            answer.update(alice.ok("GET", "/events", params={"from": token, "timeout": 20000}, timeout=30))
            token = answer["end"]

    poller = threading.Thread(target=poll)
    poller.start()
    event_id = alice.send(room, "hello old stream")
    poller.join(30)
    assert [e["event_id"] for e in answer["chunk"] if e.get("type") == "m.room.message"] == [event_id]
    assert next(e for e in answer["chunk"] if e.get("event_id") == event_id)["room_id"] == room
    again = alice.ok("GET", "/events", params={"from": answer["end"], "timeout": 0})
    assert not [e for e in again["chunk"] if e.get("type") == "m.room.message"]


def test_events_shows_a_newly_joined_room_from_the_join(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    alice.send(room, "before bob")
    token = bob.ok("GET", "/events", params={"timeout": 0})["end"]
    bob.join(room)
    chunk = bob.ok("GET", "/events", params={"from": token, "timeout": 0})["chunk"]
    types = [(e["type"], e.get("state_key")) for e in chunk if "room_id" in e and e["room_id"] == room]
    assert types[0] == ("m.room.member", bob.user_id)
    assert ("m.room.create", "") not in types


def test_event_by_id_respects_membership(homeserver):
    alice, eve = homeserver.register(), homeserver.register()
    room = alice.create_room()
    event_id = alice.send(room, "secret")
    assert alice.ok("GET", f"/events/{q(event_id)}")["content"]["body"] == "secret"
    status, _ = eve.request("GET", f"/events/{q(event_id)}")
    assert status in (403, 404)


def test_initial_sync_lists_rooms_state_messages_and_receipts(homeserver):
    alice = homeserver.register()
    room = alice.create_room(name="old style")
    event_id = alice.send(room, "one")
    alice.ok("POST", f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {})
    alice.ok("PUT", f"/user/{q(alice.user_id)}/rooms/{q(room)}/tags/work", {"order": 0.5})
    body = alice.ok("GET", "/initialSync", params={"limit": 2})
    info = next(r for r in body["rooms"] if r["room_id"] == room)
    assert info["membership"] == "join"
    assert [e["event_id"] for e in info["messages"]["chunk"]][-1] == event_id
    assert len(info["messages"]["chunk"]) == 2
    assert {"m.room.create", "m.room.name", "m.room.member"} <= {e["type"] for e in info["state"]}
    assert any(e["type"] == "m.tag" for e in info["account_data"])
    assert any(r["room_id"] == room and event_id in r["content"] for r in body["receipts"])
    assert body["end"]
    assert "m.push_rules" not in [e["type"] for e in body["account_data"]]


def test_initial_sync_archived_includes_left_rooms(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    alice.leave(room)
    assert room not in [r["room_id"] for r in alice.ok("GET", "/initialSync")["rooms"]]
    left = next(r for r in alice.ok("GET", "/initialSync", params={"archived": "true"})["rooms"]
                if r["room_id"] == room)
    assert left["membership"] == "leave"


def test_room_initial_sync(homeserver):
    alice, eve = homeserver.register(), homeserver.register()
    room = alice.create_room()
    ids = [alice.send(room, f"m{i}") for i in range(3)]
    body = alice.ok("GET", f"/rooms/{q(room)}/initialSync", params={"limit": 2})
    assert body["room_id"] == room and body["membership"] == "join"
    assert [e["event_id"] for e in body["messages"]["chunk"]] == ids[1:]
    older = alice.messages(room, dir="b", **{"from": body["messages"]["start"]}, limit=1)
    assert older["chunk"][0]["event_id"] == ids[0]
    assert any(e["type"] == "m.room.create" for e in body["state"])
    own = next(e for e in body["state"] if e["type"] == "m.room.member")
    assert own["user_id"] == alice.user_id   # the old format's sender
    assert alice.user_id in [p["content"]["user_id"] for p in body["presence"]]
    status, resp = eve.request("GET", f"/rooms/{q(room)}/initialSync")
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")


def test_initial_sync_marks_the_user_online(homeserver):
    alice = homeserver.register()
    own = next(p for p in alice.ok("GET", "/initialSync")["presence"] if p["content"]["user_id"] == alice.user_id)
    assert own["content"]["presence"] == "online"


def test_events_refuses_a_bad_limit(homeserver):
    alice = homeserver.register()
    for limit in ("hello", "-1"):
        status, resp = alice.request("GET", "/events", params={"timeout": 0, "limit": limit})
        assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM")


def test_events_with_a_limit_pages_through_the_oldest_first(homeserver):
    """As Synapse: ``limit`` takes the oldest events after ``from`` across the user's rooms, and ``end`` resumes
    after them, so a client catching up sees every message once, in order."""
    alice = homeserver.register()
    rooms = [alice.create_room(), alice.create_room()]
    token = alice.ok("GET", "/events", params={"timeout": 0})["end"]
    sent = [alice.send(rooms[i % 2], f"message {i}") for i in range(13)]
    seen: list[str] = []
    for _ in range(10):
        page = alice.ok("GET", "/events", params={"from": token, "timeout": 0, "limit": 4})
        messages = [e for e in page["chunk"] if e.get("type") == "m.room.message"]
        assert len(messages) <= 4
        seen += [e["event_id"] for e in messages]
        token = page["end"]
        if len(seen) >= len(sent):
            break
    assert seen == sent


def test_room_initial_sync_of_a_departed_room(homeserver):
    """A former member's room initialSync shows the room up to their leave, without presence or receipts
    (as Synapse)."""
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    before = alice.send(room, "before bob left")
    bob.ok("POST", f"/rooms/{q(room)}/receipt/m.read/{q(before)}", {})
    bob.ok("POST", f"/rooms/{q(room)}/leave", {})
    alice.send(room, "after bob left")
    body = bob.ok("GET", f"/rooms/{q(room)}/initialSync", params={"limit": 3})
    assert body["membership"] == "leave"
    bodies = [e["content"].get("body") for e in body["messages"]["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["before bob left"]
    assert body["presence"] == [] and body["receipts"] == []
    joined = alice.ok("GET", f"/rooms/{q(room)}/initialSync")
    assert joined["receipts"] and joined["presence"]

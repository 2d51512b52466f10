"""Peeking and history visibility for non-members and guests over real HTTP (spec v1.19 client-server
"Room History Visibility", "Guest Access"): a ``world_readable`` room is readable by anyone through
/messages, /state, /event, /context, /rooms/{roomId}/initialSync and /events?room_id=; any other
visibility keeps non-members out of every read path, and members see what it allows them."""

from __future__ import annotations

import pytest

from tests.integration.harness import User, q


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory(allow_guest_access=True)


def guest(server) -> User:
    status, resp = server.request("POST", "/register", {}, params={"kind": "guest"})
    assert status == 200, resp
    return User(server, resp["user_id"], resp["access_token"], resp["device_id"])


def room_with(owner, visibility: str) -> tuple[str, str]:
    room = owner.create_room(preset="public_chat")
    owner.put_state(room, "m.room.history_visibility", {"history_visibility": visibility})
    return room, owner.send(room, f"said under {visibility}")


def reads(reader, room: str, event_id: str) -> dict[str, int]:
    """The status of each read path for ``reader``."""
    paths = {"messages": f"/rooms/{q(room)}/messages?dir=b", "state": f"/rooms/{q(room)}/state",
             "event": f"/rooms/{q(room)}/event/{q(event_id)}", "context": f"/rooms/{q(room)}/context/{q(event_id)}",
             "initialSync": f"/rooms/{q(room)}/initialSync", "members": f"/rooms/{q(room)}/members",
             "events": f"/events?room_id={q(room)}&timeout=0"}
    return {name: reader.request("GET", path)[0] for name, path in paths.items()}


@pytest.mark.parametrize("kind", ["user", "guest"])
def test_world_readable_room_is_readable_by_non_members(server, kind):
    owner = server.register()
    room, event_id = room_with(owner, "world_readable")
    reader = server.register() if kind == "user" else guest(server)
    assert set(reads(reader, room, event_id).values()) == {200}
    chunk = reader.ok("GET", f"/rooms/{q(room)}/messages", params={"dir": "b"})["chunk"]
    assert event_id in [e["event_id"] for e in chunk]
    sync = reader.ok("GET", f"/rooms/{q(room)}/initialSync")
    assert event_id in [e["event_id"] for e in sync["messages"]["chunk"]]


@pytest.mark.parametrize("visibility", ["shared", "invited", "joined"])
def test_other_visibilities_keep_non_members_out(server, visibility):
    owner = server.register()
    room, event_id = room_with(owner, visibility)
    for reader in (server.register(), guest(server)):
        statuses = reads(reader, room, event_id)
        assert all(s in (403, 404) for s in statuses.values()), (reader.user_id, statuses)


def test_peek_stream_wakes_on_new_events(server):
    owner = server.register()
    room, _ = room_with(owner, "world_readable")
    peeker = guest(server)
    first = peeker.ok("GET", "/events", params={"room_id": room, "timeout": 0})
    event_id = owner.send(room, "news")
    body = peeker.ok("GET", "/events", params={"room_id": room, "from": first["end"], "timeout": 10000})
    assert [e["event_id"] for e in body["chunk"]] == [event_id]
    empty = peeker.ok("GET", "/events", params={"room_id": room, "from": body["end"], "timeout": 0})
    assert empty["chunk"] == []


def test_peek_stream_carries_receipts_typing_and_members_presence(server):
    """As Synapse, the stream of a peeked room (/events?room_id=) also gives the room's receipts and typing
    notifications and its members' presence (each once), never the presence of users outside the room."""
    owner, outsider = server.register(), server.register()
    room, _ = room_with(owner, "world_readable")
    event_id = owner.send(room, "read me")
    peeker = guest(server)
    token = peeker.ok("GET", "/events", params={"room_id": room, "timeout": 0})["end"]

    def next_of(event_type: str) -> dict:
        nonlocal token
        for _ in range(20):
            body = peeker.ok("GET", "/events", params={"room_id": room, "from": token, "timeout": 10000})
            token = body["end"]
            found = [e for e in body["chunk"] if e["type"] == event_type]
            assert not [e for e in body["chunk"] if e["type"] == "m.presence"
                        and e["content"]["user_id"] == outsider.user_id]
            if found:
                return found[0]
        raise AssertionError(f"no {event_type} in the peek stream")

    outsider.ok("PUT", f"/presence/{q(outsider.user_id)}/status", {"presence": "online", "status_msg": "away"})
    owner.ok("PUT", f"/presence/{q(owner.user_id)}/status", {"presence": "online", "status_msg": "lemurs"})
    presence = next_of("m.presence")
    assert presence["content"]["user_id"] == owner.user_id and presence["content"]["status_msg"] == "lemurs"
    owner.ok("POST", f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {})
    receipt = next_of("m.receipt")
    assert receipt["room_id"] == room and owner.user_id in receipt["content"][event_id]["m.read"]
    owner.ok("PUT", f"/rooms/{q(room)}/typing/{q(owner.user_id)}", {"typing": True, "timeout": 30000})
    typing = next_of("m.typing")
    assert typing["room_id"] == room and typing["content"]["user_ids"] == [owner.user_id]
    quiet = peeker.ok("GET", "/events", params={"room_id": room, "from": token, "timeout": 0})
    assert [e for e in quiet["chunk"] if e["type"] in ("m.receipt", "m.typing")] == []


def test_guest_without_room_id_cannot_stream_everything(server):
    status, _ = guest(server).request("GET", "/events", params={"timeout": 0})
    assert 400 <= status < 500


def test_joined_visibility_hides_history_before_the_join_on_every_path(server):
    owner = server.register()
    room, before = room_with(owner, "joined")
    late = server.register()
    late.join(room)
    after = owner.send(room, "after the join")
    assert before not in [e["event_id"] for e in late.messages(room, dir="b")["chunk"]]
    assert late.request("GET", f"/rooms/{q(room)}/event/{q(before)}")[0] == 404
    assert late.request("GET", f"/rooms/{q(room)}/context/{q(before)}")[0] == 404
    status, ctx = late.request("GET", f"/rooms/{q(room)}/context/{q(after)}")
    assert status == 200 and before not in [e["event_id"] for e in ctx["events_before"]]
    timeline = late.sync()["rooms"]["join"][room]["timeline"]["events"]
    assert before not in [e["event_id"] for e in timeline] and after in [e["event_id"] for e in timeline]
    results = late.ok("POST", "/search", {"search_categories": {"room_events": {"search_term": "said"}}})
    assert not results["search_categories"]["room_events"]["results"]
    init = late.ok("GET", f"/rooms/{q(room)}/initialSync")
    assert before not in [e["event_id"] for e in init["messages"]["chunk"]]


def test_shared_visibility_shows_history_to_a_later_member(server):
    owner = server.register()
    room, before = room_with(owner, "shared")
    late = server.register()
    late.join(room)
    assert before in [e["event_id"] for e in late.messages(room, dir="b")["chunk"]]
    assert late.request("GET", f"/rooms/{q(room)}/event/{q(before)}")[0] == 200

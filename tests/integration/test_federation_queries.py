"""Federation queries: profiles and room directories across servers (Hexagone and Synapse),
OpenID userinfo, hierarchy and timestamp_to_event answered to a signed peer."""

from __future__ import annotations

import time


from tests.integration.harness import q, unique


def test_remote_profile(pair):
    asking, answering = pair
    remote, local = answering.process.register(), asking.process.register()
    name = unique("Name ")
    remote.ok("PUT", f"/profile/{q(remote.user_id)}/displayname", {"displayname": name})
    assert local.ok("GET", f"/profile/{q(remote.user_id)}")["displayname"] == name
    assert local.ok("GET", f"/profile/{q(remote.user_id)}/displayname") == {"displayname": name}


def test_remote_public_room_directory(pair):
    asking, answering = pair
    owner, browser = answering.process.register(), asking.process.register()
    topic = unique("topic")
    room_id = owner.create_room(visibility="public", preset="public_chat", name="Listed", topic=topic)
    deadline = time.monotonic() + 30  # Synapse refreshes its room list in the background
    while True:
        listing = browser.ok("POST", "/publicRooms", {"filter": {"generic_search_term": topic}},
                             params={"server": answering.name})
        if listing["chunk"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [r["room_id"] for r in listing["chunk"]] == [room_id], listing


def test_room_directory_is_private_to_other_servers_by_default(fed, home):
    closed = fed()
    owner, browser = closed.process.register(), home.process.register()
    owner.create_room(visibility="public", preset="public_chat", name="Listed")
    status, err = browser.request("GET", "/publicRooms", params={"server": closed.name})
    assert status == 502 and "403" in err["error"], err


def test_openid_userinfo(home):
    user = home.process.register()
    token = user.ok("POST", f"/user/{q(user.user_id)}/openid/request_token", {})
    assert token["matrix_server_name"] == home.name and token["token_type"] == "Bearer"
    status, info = home.https("GET", f"/_matrix/federation/v1/openid/userinfo?access_token={token['access_token']}")
    assert (status, info) == (200, {"sub": user.user_id})
    status, err = home.https("GET", "/_matrix/federation/v1/openid/userinfo?access_token=forged")
    assert (status, err["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_hierarchy_and_timestamp_to_event_for_a_signed_peer(fed, home):
    other = fed()
    owner = home.process.register()
    space_id = owner.create_room(preset="public_chat", visibility="public", name="Space",
                                 creation_content={"type": "m.space"}, initial_state=[{
                                     "type": "m.room.history_visibility",
                                     "content": {"history_visibility": "world_readable"}}])
    child_id = owner.create_room(preset="public_chat", name="Child")
    owner.put_state(space_id, "m.space.child", {"via": [home.name]}, state_key=child_id)
    status, body = home.signed("GET", f"/_matrix/federation/v1/hierarchy/{q(space_id)}",
                               origin=other.name, key=other.signing_key)
    assert status == 200, body
    assert body["room"]["room_type"] == "m.space" and [c["room_id"] for c in body["children"]] == [child_id]

    before = int(time.time() * 1000)
    event_id = owner.send(space_id, "at a known time")
    status, body = home.signed("GET", f"/_matrix/federation/v1/timestamp_to_event/{q(space_id)}?ts={before}&dir=f",
                               origin=other.name, key=other.signing_key)
    assert status == 200 and body["event_id"] == event_id, body
    status, body = home.signed("GET", f"/_matrix/federation/v1/timestamp_to_event/{q(child_id)}?ts={before}&dir=f",
                               origin=other.name, key=other.signing_key)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")  # not world-readable, and no member there
    status, body = home.signed("GET", f"/_matrix/federation/v1/timestamp_to_event/{q(space_id)}?ts={before}",
                               origin=other.name, key=other.signing_key, destination="someone.else")
    assert status == 401, body


def test_a_redacted_event_reaches_other_servers_pruned(fed, home):
    """Server-server "Redactions": /event, /state and /event_auth send a redacted event in its pruned form."""
    other = fed()
    owner = home.process.register()
    room_id = owner.create_room(preset="public_chat", initial_state=[{
        "type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}])
    message_id = owner.send(room_id, "said, then taken back")
    topic_id = owner.put_state(room_id, "m.room.topic", {"topic": "secret topic"})
    later_id = owner.send(room_id, "after")
    for redacted in (message_id, topic_id):
        owner.ok("PUT", f"/rooms/{q(room_id)}/redact/{q(redacted)}/{unique('txn')}", {"reason": "oops"})

    def get(path):
        status, body = home.signed("GET", f"/_matrix/federation/v1/{path}", origin=other.name, key=other.signing_key)
        assert status == 200, body
        return body

    (message,) = get(f"event/{q(message_id)}")["pdus"]
    assert message["content"] == {} and message["type"] == "m.room.message"
    state = get(f"state/{q(room_id)}?event_id={q(later_id)}")
    (topic,) = [p for p in state["pdus"] if p["type"] == "m.room.topic"]
    assert topic["content"] == {}
    assert {p["type"] for p in state["pdus"]} >= {"m.room.create", "m.room.power_levels", "m.room.member"}
    assert all(p["type"] != "m.room.topic" for p in state["auth_chain"])
    (untouched,) = get(f"event/{q(later_id)}")["pdus"]
    assert untouched["content"]["body"] == "after"

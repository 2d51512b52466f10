"""Rooms over real HTTP: creation options, state, membership, aliases, upgrades, member lists (creation on
a server built in this process, ``inprocess_server``, through the same client API).

Spec v1.19 client-server "Creation", "Room membership", "Room aliases",
"Room upgrades", "Getting events for a room" (state, members).
"""

from __future__ import annotations

import pytest

from tests.integration.harness import CLIENT_V1, q, unique


def state_content(user, room_id: str, event_type: str, state_key: str = "") -> dict | None:
    status, content = user.state(room_id, event_type, state_key)
    if status == 404:
        assert content["errcode"] == "M_NOT_FOUND"
        return None
    assert status == 200, content
    return content


def room_events(user, room_id: str) -> list[dict]:
    """Every event of the room, oldest first."""
    return user.messages(room_id, dir="f", limit=100)["chunk"]


def membership_of(user, room_id: str, target: str) -> str | None:
    content = state_content(user, room_id, "m.room.member", target)
    return None if content is None else content["membership"]


# -- creation (room service behaviour: on a server built in this process) --------------------------

@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_create_room_versions(inprocess_server, version):
    alice = inprocess_server.register()
    room = alice.create_room(room_version=version)
    create = alice.ok("GET", f"/rooms/{q(room)}/state/m.room.create/", params={"format": "event"})
    assert create["content"]["room_version"] == version
    assert create["sender"] == alice.user_id
    if version == "10":
        assert create["content"]["creator"] == alice.user_id
        assert room.endswith(":test.local")
    else:
        assert "creator" not in create["content"]
    power = state_content(alice, room, "m.room.power_levels")
    if version == "12":
        assert ":" not in room and create["event_id"] == "$" + room[1:]  # room id from the create event
        assert alice.user_id not in power["users"]  # creators have infinite power
        assert power["events"]["m.room.tombstone"] > power["state_default"]
    else:
        assert power["users"][alice.user_id] == 100
    alice.put_state(room, "m.room.name", {"name": f"v{version}"})
    assert state_content(alice, room, "m.room.name") == {"name": f"v{version}"}


def test_create_room_unsupported_version(inprocess_server):
    alice = inprocess_server.register()
    for version in ("999", ""):
        status, resp = alice.request("POST", "/createRoom", {"room_version": version})
        assert (status, resp["errcode"]) == (400, "M_UNSUPPORTED_ROOM_VERSION"), version


def test_create_room_event_order_and_options(inprocess_server):
    """Spec /createRoom: create, creator join, power levels, alias, preset, initial_state, name/topic, invites."""
    alice, bob = inprocess_server.register(), inprocess_server.register()
    alias_name = unique("opts")
    body = {
        "preset": "private_chat", "room_alias_name": alias_name, "name": "Options", "topic": "All of them",
        "invite": [bob.user_id], "is_direct": True,
        "initial_state": [{"type": "com.example.custom", "state_key": "k", "content": {"x": 1}},
                          {"type": "m.room.history_visibility", "content": {"history_visibility": "invited"}},
                          {"type": "m.room.name", "content": {"name": "overridden by name"}}],
        "power_level_content_override": {"events_default": 10, "users": {bob.user_id: 60}},
        "creation_content": {"m.federate": False, "type": "org.example.room"},
    }
    resp = alice.ok("POST", "/createRoom", body)
    room = resp["room_id"]
    assert resp.get("room_alias", f"#{alias_name}:test.local") == f"#{alias_name}:test.local"
    types = [(e["type"], e.get("state_key")) for e in room_events(alice, room)]
    # initial_state's history visibility takes the preset's place (as Synapse: the preset's is not sent)
    assert types == [
        ("m.room.create", ""), ("m.room.member", alice.user_id), ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""), ("m.room.join_rules", ""),
        ("m.room.guest_access", ""), ("com.example.custom", "k"), ("m.room.history_visibility", ""),
        ("m.room.name", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.member", bob.user_id)]

    create = alice.ok("GET", f"/rooms/{q(room)}/state/m.room.create/", params={"format": "event"})["content"]
    assert create["m.federate"] is False and create["type"] == "org.example.room"
    assert state_content(alice, room, "m.room.join_rules") == {"join_rule": "invite"}
    assert state_content(alice, room, "m.room.history_visibility") == {"history_visibility": "invited"}
    assert state_content(alice, room, "m.room.guest_access") == {"guest_access": "can_join"}
    assert state_content(alice, room, "com.example.custom", "k") == {"x": 1}
    assert state_content(alice, room, "m.room.name") == {"name": "Options"}
    assert state_content(alice, room, "m.room.topic") == {
        "topic": "All of them", "m.topic": {"m.text": [{"body": "All of them", "mimetype": "text/plain"}]}}
    assert state_content(alice, room, "m.room.canonical_alias")["alias"] == f"#{alias_name}:test.local"
    power = state_content(alice, room, "m.room.power_levels")
    assert power["events_default"] == 10 and power["users"][bob.user_id] == 60
    alias = f"#{alias_name}:test.local"
    assert inprocess_server.request("GET", f"/directory/room/{q(alias)}")[1]["room_id"] == room

    # the invitee sees a direct invite
    invite, _ = bob.sync_until(lambda r: r["rooms"]["invite"].get(room))
    own = [e for e in invite["invite_state"]["events"] if e["type"] == "m.room.member"
           and e["state_key"] == bob.user_id]
    assert own and own[0]["content"]["membership"] == "invite" and own[0]["content"]["is_direct"] is True


def test_create_room_third_party_invites_are_refused_before_anything_is_written(inprocess_server):
    """Spec /createRoom invite_3pid: no identity server is trusted here, so no room half-made without them."""
    alice = inprocess_server.register()
    before = alice.ok("GET", "/joined_rooms")["joined_rooms"]
    invite = {"id_server": "id.example.org", "id_access_token": "t", "medium": "email", "address": "b@example.org"}
    status, resp = alice.request("POST", "/createRoom", {"invite_3pid": [invite]})
    assert (status, resp["errcode"]) == (400, "M_SERVER_NOT_TRUSTED")
    status, resp = alice.request("POST", "/createRoom", {"invite_3pid": "b@example.org"})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")
    assert alice.ok("GET", "/joined_rooms")["joined_rooms"] == before
    assert alice.create_room(invite_3pid=[])  # the empty list clients send is fine


def test_create_room_presets(inprocess_server):
    alice, bob = inprocess_server.register(), inprocess_server.register()
    public = alice.create_room(preset="public_chat")
    assert state_content(alice, public, "m.room.join_rules") == {"join_rule": "public"}
    assert state_content(alice, public, "m.room.history_visibility") == {"history_visibility": "shared"}
    assert (state_content(alice, public, "m.room.guest_access") or {"guest_access": "forbidden"}) == \
        {"guest_access": "forbidden"}
    by_visibility = alice.create_room(visibility="public")
    assert state_content(alice, by_visibility, "m.room.join_rules") == {"join_rule": "public"}
    assert alice.ok("GET", f"/directory/list/room/{q(by_visibility)}")["visibility"] == "public"
    default = alice.create_room()
    assert state_content(alice, default, "m.room.join_rules") == {"join_rule": "invite"}

    carol = inprocess_server.register()
    for version in ("11", "12"):
        trusted = alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], room_version=version,
                                    creation_content={"additional_creators": [carol.user_id, bob.user_id]})
        assert state_content(alice, trusted, "m.room.join_rules") == {"join_rule": "invite"}
        if version == "12":  # spec: invitees are combined into additional_creators, deduplicated
            create = alice.ok("GET", f"/rooms/{q(trusted)}/state/m.room.create/", params={"format": "event"})
            assert create["content"]["additional_creators"] == [carol.user_id, bob.user_id]
        else:
            assert state_content(alice, trusted, "m.room.power_levels")["users"][bob.user_id] == 100

    status, resp = alice.request("POST", "/createRoom", {"preset": "no_such_preset"})
    assert status == 400 and resp["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM")


def test_create_room_bad_requests(inprocess_server):
    alice = inprocess_server.register()
    alias_name = unique("taken")
    alice.create_room(room_alias_name=alias_name)
    status, resp = alice.request("POST", "/createRoom", {"room_alias_name": alias_name})
    assert (status, resp["errcode"]) == (400, "M_ROOM_IN_USE")
    status, resp = alice.request("POST", "/createRoom", {"name": 42})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")
    status, resp = alice.request("POST", "/createRoom", {"invite": "@bob:test.local"})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")


# -- state -------------------------------------------------------------------------------------

def test_state_get_put(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat", name="Stateful")
    first = alice.put_state(room, "com.example.state", {"v": 1}, "key one")
    assert state_content(alice, room, "com.example.state", "key one") == {"v": 1}
    second = alice.put_state(room, "com.example.state", {"v": 2}, "key one")
    assert second != first
    assert state_content(alice, room, "com.example.state", "key one") == {"v": 2}
    full = alice.ok("GET", f"/rooms/{q(room)}/state/com.example.state/{q('key one')}", params={"format": "event"})
    assert full["event_id"] == second and full["state_key"] == "key one" and full["content"] == {"v": 2}
    # the state key defaults to ""
    alice.ok("PUT", f"/rooms/{q(room)}/state/m.room.topic", {"topic": "no key"})
    assert state_content(alice, room, "m.room.topic") == {"topic": "no key"}
    assert state_content(alice, room, "com.example.state", "missing") is None

    state = alice.ok("GET", f"/rooms/{q(room)}/state")
    assert isinstance(state, list)
    keys = {(e["type"], e["state_key"]) for e in state}
    assert {("m.room.create", ""), ("m.room.name", ""), ("com.example.state", "key one")} <= keys

    # a non-member may not read it; a member without power may not change it
    status, resp = bob.request("GET", f"/rooms/{q(room)}/state")
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = bob.state(room, "m.room.name")
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    bob.join(room)
    status, resp = bob.request("PUT", f"/rooms/{q(room)}/state/m.room.name/", {"name": "hijack"})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    assert state_content(bob, room, "m.room.name") == {"name": "Stateful"}


# -- membership ------------------------------------------------------------------------------

def test_invite_join_leave(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(name="Invite only")
    status, resp = bob.request("POST", f"/join/{q(room)}", {})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    alice.invite(room, bob)
    invite, since = bob.sync_until(lambda r: r["rooms"]["invite"].get(room))
    stripped = {(e["type"], e["state_key"]): e for e in invite["invite_state"]["events"]}
    assert stripped[("m.room.name", "")]["content"] == {"name": "Invite only"}
    assert stripped[("m.room.member", bob.user_id)]["sender"] == alice.user_id

    status, resp = alice.request("POST", f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    assert status in (200, 403)  # re-inviting an invited user is allowed or refused, never an error 500
    assert bob.ok("POST", f"/rooms/{q(room)}/join", {"reason": "hi"})["room_id"] == room
    assert membership_of(alice, room, bob.user_id) == "join"
    assert room in bob.ok("GET", "/joined_rooms")["joined_rooms"]
    status, resp = alice.request("POST", f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")

    bob.leave(room)
    assert membership_of(alice, room, bob.user_id) == "leave"
    assert room not in bob.ok("GET", "/joined_rooms")["joined_rooms"]
    status, resp = alice.request("POST", f"/rooms/{q(room)}/invite", {})
    assert status == 400 and resp["errcode"] in ("M_MISSING_PARAM", "M_BAD_JSON")


def test_reject_invite(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room()
    alice.invite(room, bob)
    bob.leave(room)
    assert membership_of(alice, room, bob.user_id) == "leave"


def test_join_by_alias(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    alias = f"#{unique('pub')}:test.local"
    room = alice.create_room(preset="public_chat", room_alias_name=alias[1:].split(":")[0])
    assert bob.join(alias) == room
    assert membership_of(alice, room, bob.user_id) == "join"
    status, resp = bob.request("POST", f"/join/{q('#nope' + unique() + ':test.local')}", {})
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")
    # an alias added later works too, and lists under /aliases
    extra = f"#{unique('extra')}:test.local"
    alice.ok("PUT", f"/directory/room/{q(extra)}", {"room_id": room})
    carol = homeserver.register()
    assert carol.join(extra) == room
    assert extra in alice.ok("GET", f"/rooms/{q(room)}/aliases")["aliases"]


def test_join_content_redaction_room_and_numeric_version(homeserver):
    """As Synapse: a join's other body keys go into the member event; redacting an event of another room and a
    room version given as a number are bad requests."""
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.ok("POST", f"/join/{q(room)}", {"foo": "bar", "reason": "hello"})
    assert state_content(bob, room, "m.room.member", bob.user_id) | {"displayname": None} == \
        {"membership": "join", "foo": "bar", "reason": "hello", "displayname": None}
    other = bob.create_room()
    message = alice.send(room, "not yours")
    status, body = bob.request("PUT", f"/rooms/{q(other)}/redact/{q(message)}/{unique('txn')}", {})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = alice.request("POST", "/createRoom", {"room_version": 1})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")


def test_a_deleted_alias_leaves_the_canonical_alias(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    main, alt = f"#{unique('main')}:test.local", f"#{unique('alt')}:test.local"
    for alias in (main, alt):
        alice.ok("PUT", f"/directory/room/{q(alias)}", {"room_id": room})
    for bad, errcode in ((f"#{unique('nowhere')}:test.local", "M_BAD_ALIAS"), ("%not-an-alias", "M_INVALID_PARAM")):
        status, body = alice.request("PUT", f"/rooms/{q(room)}/state/m.room.canonical_alias/",
                                     {"alias": main, "alt_aliases": [bad]})
        assert (status, body["errcode"]) == (400, errcode)
    alice.put_state(room, "m.room.canonical_alias", {"alias": main, "alt_aliases": [alt]})
    alice.ok("DELETE", f"/directory/room/{q(alt)}")
    assert state_content(alice, room, "m.room.canonical_alias") == {"alias": main, "alt_aliases": []}
    alice.ok("DELETE", f"/directory/room/{q(main)}")
    assert state_content(alice, room, "m.room.canonical_alias") == {"alt_aliases": []}


def test_kick_ban_unban(homeserver):
    alice, bob, carol = homeserver.register(), homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)

    status, resp = bob.request("POST", f"/rooms/{q(room)}/kick", {"user_id": carol.user_id})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    alice.ok("POST", f"/rooms/{q(room)}/kick", {"user_id": bob.user_id, "reason": "be nice"})
    kicked = alice.ok("GET", f"/rooms/{q(room)}/state/m.room.member/{q(bob.user_id)}", params={"format": "event"})
    assert kicked["content"]["membership"] == "leave" and kicked["content"]["reason"] == "be nice"
    assert kicked["sender"] == alice.user_id
    bob.join(room)  # a kick is not a ban

    alice.ok("POST", f"/rooms/{q(room)}/ban", {"user_id": bob.user_id, "reason": "spam"})
    assert membership_of(alice, room, bob.user_id) == "ban"
    status, resp = bob.request("POST", f"/join/{q(room)}", {})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = bob.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique()}", {"body": "x"})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    # banning someone who never joined works too
    dave = homeserver.register()
    alice.ok("POST", f"/rooms/{q(room)}/ban", {"user_id": dave.user_id})
    assert dave.request("POST", f"/join/{q(room)}", {})[0] == 403

    status, resp = carol.request("POST", f"/rooms/{q(room)}/unban", {"user_id": bob.user_id})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    alice.ok("POST", f"/rooms/{q(room)}/unban", {"user_id": bob.user_id})
    assert membership_of(alice, room, bob.user_id) == "leave"
    bob.join(room)
    assert membership_of(alice, room, bob.user_id) == "join"


def test_knock(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(room_version="11", initial_state=[
        {"type": "m.room.join_rules", "content": {"join_rule": "knock"}}], name="Knock knock")
    closed = alice.create_room()

    status, resp = bob.request("POST", f"/knock/{q(closed)}", {})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    assert bob.ok("POST", f"/knock/{q(room)}", {"reason": "let me in"})["room_id"] == room
    knock, _ = bob.sync_until(lambda r: r["rooms"]["knock"].get(room))
    names = [e for e in knock["knock_state"]["events"] if e["type"] == "m.room.name"]
    assert names and names[0]["content"]["name"] == "Knock knock"
    event, _ = alice.timeline_until(room, lambda e: e["type"] == "m.room.member" and e["state_key"] == bob.user_id)
    assert event["content"]["membership"] == "knock" and event["content"]["reason"] == "let me in"
    # a knock does not let anyone in
    status, resp = bob.request("POST", f"/join/{q(room)}", {})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")

    alice.invite(room, bob)
    bob.join(room)
    assert membership_of(alice, room, bob.user_id) == "join"
    status, resp = bob.request("POST", f"/knock/{q(room)}", {})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")


def test_forget(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    status, resp = bob.request("POST", f"/rooms/{q(room)}/forget", {})
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN")
    bob.leave(room)
    leave_filter = {"room": {"include_leave": True}}
    assert room in bob.sync(filter=leave_filter)["rooms"]["leave"]
    assert bob.ok("POST", f"/rooms/{q(room)}/forget", {}) == {}
    assert room not in bob.sync(filter=leave_filter)["rooms"]["leave"]
    never = alice.create_room()
    status, resp = bob.request("POST", f"/rooms/{q(never)}/forget", {})
    assert status in (400, 404)


# -- member lists -----------------------------------------------------------------------------

def test_members_joined_members_joined_rooms(homeserver):
    alice, bob, carol, dave = (homeserver.register() for _ in range(4))
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice A"})
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    carol.leave(room)
    alice.invite(room, dave)

    def members(**params):
        chunk = alice.ok("GET", f"/rooms/{q(room)}/members", params=params)["chunk"]
        return {e["state_key"]: e["content"]["membership"] for e in chunk}

    assert members() == {alice.user_id: "join", bob.user_id: "join", carol.user_id: "leave",
                         dave.user_id: "invite"}
    assert members(membership="join") == {alice.user_id: "join", bob.user_id: "join"}
    assert members(not_membership="leave") == {alice.user_id: "join", bob.user_id: "join",
                                               dave.user_id: "invite"}
    assert members(membership="invite") == {dave.user_id: "invite"}

    joined = alice.ok("GET", f"/rooms/{q(room)}/joined_members")["joined"]
    assert set(joined) == {alice.user_id, bob.user_id}
    assert joined[alice.user_id]["display_name"] == "Alice A"

    stranger = homeserver.register()
    status, resp = stranger.request("GET", f"/rooms/{q(room)}/members")
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = stranger.request("GET", f"/rooms/{q(room)}/joined_members")
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")

    assert room in alice.ok("GET", "/joined_rooms")["joined_rooms"]
    assert room not in carol.ok("GET", "/joined_rooms")["joined_rooms"]
    assert room not in dave.ok("GET", "/joined_rooms")["joined_rooms"]


def test_members_at_token(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    before = alice.sync()["next_batch"]
    bob.join(room)
    chunk = alice.ok("GET", f"/rooms/{q(room)}/members", params={"at": before})["chunk"]
    assert {e["state_key"] for e in chunk} == {alice.user_id}
    chunk = alice.ok("GET", f"/rooms/{q(room)}/members")["chunk"]
    assert {e["state_key"] for e in chunk} == {alice.user_id, bob.user_id}


# -- upgrades ----------------------------------------------------------------------------------

def test_room_upgrade(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    alias_name = unique("upg")
    old = alice.create_room(preset="public_chat", room_version="10", name="Before", topic="t",
                            room_alias_name=alias_name)
    bob.join(old)
    status, resp = bob.request("POST", f"/rooms/{q(old)}/upgrade", {"new_version": "11"})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = alice.request("POST", f"/rooms/{q(old)}/upgrade", {"new_version": "99"})
    assert (status, resp["errcode"]) == (400, "M_UNSUPPORTED_ROOM_VERSION")

    new = alice.ok("POST", f"/rooms/{q(old)}/upgrade", {"new_version": "12"})["replacement_room"]
    assert new != old
    tombstone = state_content(alice, old, "m.room.tombstone")
    assert tombstone["replacement_room"] == new and tombstone["body"]
    create = alice.ok("GET", f"/rooms/{q(new)}/state/m.room.create/", params={"format": "event"})["content"]
    assert create["room_version"] == "12" and create["predecessor"]["room_id"] == old
    assert state_content(alice, new, "m.room.name") == {"name": "Before"}
    assert state_content(alice, new, "m.room.join_rules") == {"join_rule": "public"}
    assert state_content(alice, new, "m.room.canonical_alias")["alias"] == f"#{alias_name}:test.local"
    # the old room is locked down; bob can follow the tombstone
    old_power = state_content(alice, old, "m.room.power_levels")
    assert old_power["events_default"] >= 50
    status, resp = bob.request("PUT", f"/rooms/{q(old)}/send/m.room.message/{unique()}", {"body": "late"})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    assert bob.join(new) == new
    status, resp = alice.request("POST", f"/rooms/{q(old)}/upgrade", {})
    assert (status, resp["errcode"]) == (400, "M_MISSING_PARAM")


def test_strangers_cannot_read_a_private_room(homeserver):
    alice, stranger = homeserver.register(), homeserver.register()
    room = alice.create_room()
    for path in (f"/rooms/{q(room)}/messages", f"/rooms/{q(room)}/state/m.room.create/"):
        status, resp = stranger.request("GET", path)
        assert (status, resp["errcode"]) == (403, "M_FORBIDDEN"), path
    status, resp = stranger.request("GET", CLIENT_V1 + f"/rooms/{q(room)}/threads")
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")

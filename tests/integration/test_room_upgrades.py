"""Room upgrades as clients (and SyTest's 30rooms/60version_upgrade.pl) expect them.

Spec v1.19 client-server "Room Upgrades" (server behaviour) and, where it says less, Synapse: the
predecessor names the tombstone, bans and ``m.federate`` carry over, aliases and the directory entry move,
the upgrader's ``m.direct`` and tags follow, and a moderator upgrading keeps their level in both rooms.
"""

from __future__ import annotations

from tests.integration.harness import q, unique


def content(user, room_id: str, event_type: str, state_key: str = "") -> dict:
    status, body = user.state(room_id, event_type, state_key)
    assert status == 200, body
    return body


def upgrade(user, room_id: str, version: str = "11") -> str:
    return user.ok("POST", f"/rooms/{q(room_id)}/upgrade", {"new_version": version})["replacement_room"]


def test_upgrade_links_moves_and_copies(homeserver):
    alice = homeserver.register()
    alias, alt = f"#{unique('up')}:test.local", f"#{unique('alt')}:test.local"
    old = alice.create_room(room_version="10", creation_content={"m.federate": False})
    for a in (alias, alt):
        alice.ok("PUT", f"/directory/room/{q(a)}", {"room_id": old})
    alice.put_state(old, "m.room.canonical_alias", {"alias": alias, "alt_aliases": [alt]})
    alice.put_state(old, "m.room.member", {"membership": "ban"}, "@bob:elsewhere.example")
    alice.ok("PUT", f"/directory/list/room/{q(old)}", {"visibility": "public"})
    alice.put_state(old, "m.room.history_visibility", {"history_visibility": "joined"})
    alice.ok("PUT", f"/user/{q(alice.user_id)}/account_data/m.direct", {"@friend:test.local": [old]})
    alice.ok("PUT", f"/user/{q(alice.user_id)}/rooms/{q(old)}/tags/u.work", {"order": 0.5})

    new = upgrade(alice, old)
    tombstone = alice.ok("GET", f"/rooms/{q(old)}/state/m.room.tombstone/", params={"format": "event"})
    assert tombstone["content"]["replacement_room"] == new
    create = content(alice, new, "m.room.create")
    assert create["predecessor"] == {"room_id": old, "event_id": tombstone["event_id"]}
    assert create["m.federate"] is False and create["room_version"] == "11"
    assert content(alice, new, "m.room.member", "@bob:elsewhere.example") == {"membership": "ban"}
    for a in (alias, alt):
        assert alice.ok("GET", f"/directory/room/{q(a)}")["room_id"] == new
    assert content(alice, new, "m.room.canonical_alias") == {"alias": alias, "alt_aliases": [alt]}
    assert content(alice, old, "m.room.canonical_alias") == {}
    assert alice.ok("GET", f"/directory/list/room/{q(new)}")["visibility"] == "public"
    assert alice.ok("GET", f"/directory/list/room/{q(old)}")["visibility"] == "private"
    # the copied state is the room's first of its type (the createRoom preset's is not sent as well)
    events = alice.messages(new, dir="f", limit=50)["chunk"]
    assert [e["content"] for e in events if e["type"] == "m.room.history_visibility"] == \
        [{"history_visibility": "joined"}]
    direct = alice.ok("GET", f"/user/{q(alice.user_id)}/account_data/m.direct")
    assert direct == {"@friend:test.local": [old, new]}
    tags = alice.ok("GET", f"/user/{q(alice.user_id)}/rooms/{q(new)}/tags")["tags"]
    assert tags == {"u.work": {"order": 0.5}}


def test_a_member_joining_the_new_room_keeps_their_tags_and_direct_chat(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    old = alice.create_room(preset="public_chat")
    bob.join(old)
    bob.ok("PUT", f"/user/{q(bob.user_id)}/rooms/{q(old)}/tags/u.team", {})
    bob.ok("PUT", f"/user/{q(bob.user_id)}/account_data/m.direct", {alice.user_id: [old]})
    new = upgrade(alice, old)
    for _ in range(2):  # joining again changes nothing more
        bob.join(new)
        assert bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(new)}/tags")["tags"] == {"u.team": {}}
        assert bob.ok("GET", f"/user/{q(bob.user_id)}/account_data/m.direct") == {alice.user_id: [old, new]}


def test_moderator_upgrade_keeps_power_levels(homeserver):
    alice, mod = homeserver.register(), homeserver.register()
    old = alice.create_room(room_version="10", preset="public_chat")
    mod.join(old)
    levels = content(alice, old, "m.room.power_levels")
    levels["users"][mod.user_id] = 50
    levels["events"]["m.room.tombstone"] = 50
    alice.put_state(old, "m.room.power_levels", levels)
    new = upgrade(mod, old)
    assert content(mod, new, "m.room.power_levels") == levels
    assert content(mod, old, "m.room.power_levels") == levels   # a moderator cannot restrict the old room


def test_upgrade_errors(homeserver):
    alice = homeserver.register()
    status, err = alice.request("POST", f"/rooms/{q('!fail:unknown')}/upgrade", {"new_version": "11"})
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND")
    room = alice.create_room()
    status, err = alice.request("PUT", f"/rooms/{q(room)}/send/m.room.tombstone/{unique('t')}",
                                {"replacement_room": room})
    assert status == 400, err
    status, err = alice.request("PUT", f"/rooms/{q(room)}/state/m.room.tombstone/", {"replacement_room": room})
    assert status == 400, err

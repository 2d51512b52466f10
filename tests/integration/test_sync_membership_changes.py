"""Incremental /sync around membership changes over real HTTP (spec v1.19 client-server "Syncing"): a
profile change (a join after a join) is not a new join, and a room joined and left between two syncs
comes with its whole state."""

from __future__ import annotations

from tests.integration.harness import q


def test_displayname_change_is_not_a_new_join(homeserver):
    alice = homeserver.register()
    room = alice.create_room(name="profiled")
    since = alice.sync()["next_batch"]
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice B."})
    (room_part, _) = alice.sync_until(lambda r: r["rooms"]["join"].get(room), since=since)
    assert room_part["state"]["events"] == []   # no full state again
    timeline = room_part["timeline"]["events"]
    assert [(e["type"], e["content"].get("displayname")) for e in timeline] == [("m.room.member", "Alice B.")]


def test_room_joined_and_left_between_syncs_has_its_state(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat", name="brief visit")
    since = bob.sync()["next_batch"]
    bob.join(room)
    bob.leave(room)
    (left, _) = bob.sync_until(lambda r: r["rooms"]["leave"].get(room), since=since)
    state = {(e["type"], e["state_key"]) for e in left["state"]["events"] + left["timeline"]["events"]
             if "state_key" in e}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", bob.user_id)} <= state


def test_incremental_lazy_sync_sends_each_new_senders_membership_once(homeserver):
    alice, bob, charlie = homeserver.register(), homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    charlie.join(room)
    for i in range(10):
        bob.send(room, f"filler {i}")
    lazy = '{"room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": true}}}'
    first = alice.sync(filter=lazy)
    members = {e["state_key"] for e in first["rooms"]["join"][room]["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}
    charlie.send(room, "from charlie")
    (part, since) = alice.sync_until(lambda r: r["rooms"]["join"].get(room), since=first["next_batch"], filter=lazy)
    assert [(e["type"], e["state_key"]) for e in part["state"]["events"]] == [("m.room.member", charlie.user_id)]
    charlie.send(room, "again")
    (part, _) = alice.sync_until(lambda r: r["rooms"]["join"].get(room), since=since, filter=lazy)
    assert part["state"]["events"] == []   # not sent twice to this device
    redundant = '{"room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": true, ' \
                '"include_redundant_members": true}}}'
    charlie.send(room, "and again")
    (part, _) = alice.sync_until(lambda r: r["rooms"]["join"].get(room), since=since, filter=redundant)
    assert ("m.room.member", charlie.user_id) in [(e["type"], e["state_key"]) for e in part["state"]["events"]]


def test_rejoined_room_shows_current_state_set_while_away(homeserver):
    """As Synapse: current state shows in the timeline of a room joined again, though the history visibility
    (here ``joined``) hides the time the user was away."""
    creator, syncer, invitee = homeserver.register(), homeserver.register(), homeserver.register()
    room = creator.create_room(preset="public_chat")
    syncer.join(room)
    creator.put_state(room, "m.room.history_visibility", {"history_visibility": "joined"})
    creator.invite(room, invitee)
    since = syncer.sync()["next_batch"]
    syncer.leave(room)
    invitee.join(room)
    creator.send(room, "hidden from the syncer")
    syncer.join(room)
    (part, _) = syncer.sync_until(lambda r: r["rooms"]["join"].get(room), since=since)
    events = part["timeline"]["events"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == invitee.user_id
               and e["content"]["membership"] == "join" for e in events)
    assert "hidden from the syncer" not in [e["content"].get("body") for e in events]


def test_incremental_sync_leaves_out_rooms_whose_changes_are_all_filtered(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    only_custom = '{"room": {"timeline": {"types": []}, "state": {"types": ["a.custom"]}, ' \
                  '"ephemeral": {"types": []}}, "presence": {"types": []}}'
    since = alice.sync(filter=only_custom)["next_batch"]
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "boris"})
    alice.send(room, "filtered out")
    assert room not in alice.sync(since=since, filter=only_custom)["rooms"]["join"]
    assert room in alice.sync(since=since)["rooms"]["join"]


def test_incremental_sync_brings_presence_of_newly_met_users_offline_or_not(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    alice_since = alice.sync()["next_batch"]
    bob_since = bob.sync(set_presence="offline")["next_batch"]
    bob.join(room)
    (found, _) = alice.sync_until(lambda r: [p for p in r["presence"]["events"] if p["sender"] == bob.user_id],
                                  since=alice_since, set_presence="offline")
    assert found[0]["content"]["presence"] == "offline"   # who joined alice's room, though offline
    (found, _) = bob.sync_until(lambda r: [p for p in r["presence"]["events"] if p["sender"] == alice.user_id],
                                since=bob_since, set_presence="offline")
    assert found   # the members of the room bob joined

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

"""Rooms shared over real TLS federation between Hexagone and a peer that is another Hexagone
or a real Synapse, in both directions: joins by alias and by invite, messages and state both ways,
back-pagination of history from before the join, bans, room versions 10 to 12."""

from __future__ import annotations

import pytest

from tests.integration.federation import FedServer
from tests.integration.harness import q, shared_room, unique


def register(server):
    return server.process.register()


def body_is(text):
    return lambda e: e.get("type") == "m.room.message" and e["content"].get("body") == text


@pytest.mark.parametrize("version", [str(v) for v in range(1, 13)])
def test_join_by_alias_and_chat_both_ways(pair, version):
    a, b = pair
    alice, bob = register(a), register(b)
    alias_name = unique("fed")
    room_id = alice.create_room(preset="public_chat", room_alias_name=alias_name, room_version=version,
                                name="Federated")
    alice.send(room_id, "before bob joined")
    alias = f"#{alias_name}:{a.name}"
    assert bob.join(alias) == room_id

    # Bob sees the room's state and the history from before the join.
    event, since_b = bob.timeline_until(room_id, lambda e: e["type"] == "m.room.member"
                                        and e["state_key"] == bob.user_id)
    status, name = bob.state(room_id, "m.room.name")
    assert status == 200 and name == {"name": "Federated"}
    history = bob.messages(room_id, dir="b", limit=50)
    assert any(body_is("before bob joined")(e) for e in history["chunk"]), history

    # Alice sees Bob's join, then messages flow both ways.
    alice.timeline_until(room_id, lambda e: e["type"] == "m.room.member"
                         and e["state_key"] == bob.user_id)
    alice.send(room_id, "hello bob")
    bob.timeline_until(room_id, body_is("hello bob"), since_b)
    bob.send(room_id, "hello alice")
    alice.timeline_until(room_id, body_is("hello alice"))

    # State changes flow too, and both servers compute the same room state.
    alice.put_state(room_id, "m.room.topic", {"topic": "federated topic"})
    bob.timeline_until(room_id, lambda e: e["type"] == "m.room.topic")
    assert bob.state(room_id, "m.room.topic") == (200, {"topic": "federated topic"})
    assert_same_state(alice, bob, room_id)


def state_ids(user, room_id):
    return {(e["type"], e["state_key"]): e["event_id"] for e in user.ok("GET", f"/rooms/{q(room_id)}/state")}


def assert_same_state(first, second, room_id):
    assert state_ids(first, room_id) == state_ids(second, room_id)


def test_concurrent_state_changes_resolve_identically(pair):
    """Both servers change the same state at once; state resolution must agree on each side."""
    a, b = pair
    alice, bob = register(a), register(b)
    room_id = shared_room(alice, bob, public=True)
    levels = alice.ok("GET", f"/rooms/{q(room_id)}/state/m.room.power_levels")
    levels.setdefault("users", {})[bob.user_id] = 50
    alice.put_state(room_id, "m.room.power_levels", levels)
    bob.timeline_until(room_id, lambda e: e["type"] == "m.room.power_levels")
    for i in range(3):  # topics sent from both sides without waiting for each other: forks to resolve
        alice.put_state(room_id, "m.room.topic", {"topic": f"alice {i}"})
        bob.put_state(room_id, "m.room.topic", {"topic": f"bob {i}"})
    final_a = alice.put_state(room_id, "m.room.name", {"name": "settled by alice"})
    bob.timeline_until(room_id, lambda e: e["event_id"] == final_a, deadline_s=30)
    final_b = bob.put_state(room_id, "org.example.marker", {"done": True})
    alice.timeline_until(room_id, lambda e: e["event_id"] == final_b, deadline_s=30)
    assert_same_state(alice, bob, room_id)


def test_invite_across_servers(pair):
    a, b = pair
    alice, bob = register(a), register(b)
    room_id = bob.create_room(preset="private_chat")
    bob.invite(room_id, alice)
    invite, _ = alice.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room_id))
    assert any(e["type"] == "m.room.member" and e["content"]["membership"] == "invite"
               for e in invite["invite_state"]["events"])
    assert alice.join(room_id) == room_id
    bob.timeline_until(room_id, lambda e: e["type"] == "m.room.member"
                       and e["state_key"] == alice.user_id and e["content"]["membership"] == "join")
    alice.send(room_id, "thanks for the invite")
    bob.timeline_until(room_id, body_is("thanks for the invite"))


def test_create_room_invites_a_remote_user(pair):
    """/createRoom's ``invite`` reaches a user of another server as /rooms/{roomId}/invite does (their server
    co-signs it), with ``is_direct``; the invitee joins and chats."""
    a, b = pair
    alice, bob = register(a), register(b)
    room_id = alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], is_direct=True, name="DM")
    invite, _ = bob.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room_id))
    own = [e for e in invite["invite_state"]["events"] if e["type"] == "m.room.member"
           and e["state_key"] == bob.user_id]
    assert own and own[0]["content"]["membership"] == "invite" and own[0]["content"].get("is_direct") is True
    assert bob.join(room_id) == room_id
    alice.timeline_until(room_id, lambda e: e["type"] == "m.room.member"
                         and e["state_key"] == bob.user_id and e["content"]["membership"] == "join")
    bob.send(room_id, "joined from the createRoom invite")
    alice.timeline_until(room_id, body_is("joined from the createRoom invite"))
    assert bob.state(room_id, "m.room.name") == (200, {"name": "DM"})


def test_rejecting_a_remote_invite(pair):
    a, b = pair
    alice, bob = register(a), register(b)
    room_id = bob.create_room(preset="private_chat")
    bob.invite(room_id, alice)
    alice.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room_id))
    alice.leave(room_id)
    bob.timeline_until(room_id, lambda e: e["type"] == "m.room.member"
                       and e["state_key"] == alice.user_id and e["content"]["membership"] == "leave")


def test_ban_keeps_a_remote_user_out(pair):
    a, b = pair
    alice, bob = register(a), register(b)
    room_id = shared_room(alice, bob, public=True)
    since = bob.sync()["next_batch"]  # an initial /sync would leave the room out once Bob is banned
    alice.ok("POST", f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id, "reason": "spam"})
    bob.sync_until(lambda r: r.get("rooms", {}).get("leave", {}).get(room_id), since)
    status, err = bob.request("POST", f"/join/{q(room_id)}", {}, params={"via": a.name})
    assert status == 403, err
    status, err = bob.request("PUT", f"/rooms/{q(room_id)}/send/m.room.message/{unique('t')}",
                              {"msgtype": "m.text", "body": "let me in"})
    assert status == 403, err


def test_back_pagination_fetches_older_history(pair):
    a, b = pair
    alice, bob = register(a), register(b)
    alias_name = unique("hist")
    room_id = alice.create_room(preset="public_chat", room_alias_name=alias_name)
    for i in range(30):
        alice.send(room_id, f"old {i}")
    bob.join(f"#{alias_name}:{a.name}")
    seen, token = [], None
    for _ in range(20):
        params = {"dir": "b", "limit": 10}
        if token:
            params["from"] = token
        page = bob.messages(room_id, **params)
        seen += [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]
        token = page.get("end")
        if not token:
            break
    assert [f"old {i}" for i in range(29, -1, -1)] == [s for s in seen if s and s.startswith("old")]


def test_knock_then_invite_across_servers(pair):
    host, other = pair
    owner, knocker = register(host), register(other)
    room_id = owner.create_room(preset="private_chat", room_version="12",
                                initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    knocker.ok("POST", f"/knock/{q(room_id)}", {"reason": "let me in"}, params={"via": host.name})
    knocks, _ = knocker.sync_until(lambda r: r.get("rooms", {}).get("knock", {}).get(room_id))
    owner.timeline_until(room_id, lambda e: e.get("state_key") == knocker.user_id
                         and e["content"].get("membership") == "knock")
    owner.invite(room_id, knocker)
    knocker.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room_id))
    assert knocker.join(room_id) == room_id
    owner.timeline_until(room_id, lambda e: e.get("state_key") == knocker.user_id
                         and e["content"].get("membership") == "join")


def test_restricted_join_across_servers(pair):
    host, other = pair
    owner, joiner = register(host), register(other)
    space_alias = unique("space")
    space_id = owner.create_room(preset="public_chat", room_alias_name=space_alias, room_version="10")
    room_id = owner.create_room(preset="private_chat", room_version="10", initial_state=[{
        "type": "m.room.join_rules",
        "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space_id}]}}])
    status, err = joiner.request("POST", f"/join/{q(room_id)}", {}, params={"via": host.name})
    assert status == 403, err  # not a member of the space yet
    joiner.join(f"#{space_alias}:{host.name}")
    owner.timeline_until(space_id, lambda e: e.get("state_key") == joiner.user_id)
    status, body = joiner.request("POST", f"/join/{q(room_id)}", {}, params={"via": host.name})
    assert status == 200, body
    event, _ = owner.timeline_until(room_id, lambda e: e.get("state_key") == joiner.user_id)
    assert event["content"]["membership"] == "join"
    assert event["content"].get("join_authorised_via_users_server") == owner.user_id


def test_join_right_after_an_invite_to_a_room_this_server_is_in(pair):
    """The invitee's server already takes part in the room: joining at once must not wait for /send."""
    host, other = pair
    owner, first, second = register(host), register(other), register(other)
    room_id = shared_room(owner, first, public=True)
    owner.ok("PUT", f"/rooms/{q(room_id)}/state/m.room.join_rules", {"join_rule": "invite"})
    first.timeline_until(room_id, lambda e: e["type"] == "m.room.join_rules")
    owner.invite(room_id, second)
    assert second.join(room_id) == room_id


def test_a_join_without_member_events_completes_before_the_room_is_used(pair):
    """Server-server send_join ``omit_members``: the joining server is answered without the room's member
    events and fetches them after the join is accepted; requests about the room wait for that, so the
    joiner never sees a partial member list, and what it sends reaches the room."""
    a, b = pair
    alice, bob = register(a), register(b)
    others = [register(a) for _ in range(6)]
    alias_name = unique("partial")
    room_id = alice.create_room(preset="public_chat", room_alias_name=alias_name)  # no name: heroes come along
    for user in others:
        user.join(room_id)
    alice.put_state(room_id, "org.example.setting", {"n": 1}, state_key="k")

    assert bob.join(f"#{alias_name}:{a.name}") == room_id
    bob.send(room_id, "first words")  # at once: it waits for the join to complete
    joined = bob.ok("GET", f"/rooms/{q(room_id)}/joined_members")["joined"]
    assert set(joined) == {alice.user_id, bob.user_id, *(u.user_id for u in others)}
    alice.timeline_until(room_id, body_is("first words"))
    sync = bob.sync(timeout_ms=0)
    room = sync["rooms"]["join"][room_id]
    seen = {e["state_key"] for e in room["state"]["events"] + room["timeline"]["events"]
            if e["type"] == "m.room.member"}
    assert seen == set(joined), seen
    assert_same_state(alice, bob, room_id)
    if isinstance(a, FedServer) and isinstance(b, FedServer):  # Hexagone on both sides: the partial path ran
        assert f"Joined {room_id} with its whole state" in b.process.log(tail=2000)

"""A space with nested rooms across two servers, browsed by the client ``GET /hierarchy`` (spec v1.19
"Spaces"), whose remote children come from the server-server ``GET /hierarchy``; against a second Hexagone
and against Synapse, each serving the other. Also ``/room_summary`` of a remote room (``via``), what
``/hierarchy`` tells another server directly, and ``federation_domain_whitelist`` keeping remote children out.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import q
from tests.integration.test_spaces import V1, hierarchy, names


def space(owner, name: str) -> str:
    return owner.create_room(name=name, preset="public_chat", creation_content={"type": "m.space"})


def add_child(owner, space_id: str, child_id: str, server: str, order: str) -> None:
    owner.put_state(space_id, "m.space.child", {"via": [server], "order": order}, child_id)


@pytest.fixture(scope="module")
def remote_space(peer):
    """On ``peer``: a public space PS holding R1 (public), R2 (private) and the sub-space PT holding R3."""
    owner = peer.process.register()
    ps, pt = space(owner, "PS"), space(owner, "PT")
    r1, r3 = (owner.create_room(name=n, preset="public_chat") for n in ("R1", "R3"))
    r2 = owner.create_room(name="R2", preset="private_chat")
    for order, child in enumerate((r1, r2, pt)):
        add_child(owner, ps, child, peer.name, str(order))
    add_child(owner, pt, r3, peer.name, "0")
    return {"PS": ps, "PT": pt, "R1": r1, "R2": r2, "R3": r3}


def test_a_local_space_with_a_remote_sub_space(home, peer, remote_space):
    owner, viewer = home.process.register(), home.process.register()
    hs = space(owner, "HS")
    local = owner.create_room(name="L", preset="public_chat")
    add_child(owner, hs, local, home.name, "0")
    add_child(owner, hs, remote_space["PS"], peer.name, "1")
    body = hierarchy(viewer, hs)[1]
    assert names(body) == ["HS", "L", "PS", "R1", "PT", "R3"], body  # R2 is private: not shown
    ps = body["rooms"][2]
    assert ps["room_id"] == remote_space["PS"] and ps["room_type"] == "m.space" and ps["num_joined_members"] == 1
    assert [c["state_key"] for c in ps["children_state"]] == [remote_space[n] for n in ("R1", "R2", "PT")]
    assert all("allowed_room_ids" not in room for room in body["rooms"])
    assert names(hierarchy(viewer, hs, max_depth=2)[1]) == ["HS", "L", "PS", "R1", "PT"]
    first = hierarchy(viewer, hs, limit=3)[1]
    assert names(first) == ["HS", "L", "PS"]
    assert names(hierarchy(viewer, hs, limit=3, **{"from": first["next_batch"]})[1]) == ["R1", "PT", "R3"]


def test_a_remote_space_with_local_children(home, peer):
    """The peer's user browses the peer's space, whose children are on ``home``: ``home`` answers /hierarchy
    for them, and keeps its private room to itself."""
    owner, peer_owner = home.process.register(), peer.process.register()
    public = owner.create_room(name="HR", preset="public_chat")
    private = owner.create_room(name="HP", preset="private_chat")
    ps = space(peer_owner, "PS2")
    add_child(peer_owner, ps, public, home.name, "0")
    add_child(peer_owner, ps, private, home.name, "1")
    assert names(hierarchy(peer_owner, ps)[1]) == ["PS2", "HR"]
    hs = space(owner, "HS2")
    add_child(owner, hs, public, home.name, "0")
    add_child(owner, hs, private, home.name, "1")
    add_child(peer_owner, ps, hs, home.name, "2")
    assert names(hierarchy(peer_owner, ps)[1]) == ["PS2", "HR", "HS2"]


def test_room_summary_of_a_remote_room(home, peer, remote_space):
    viewer = home.process.register()
    body = viewer.ok("GET", f"{V1}/room_summary/{q(remote_space['R1'])}", params={"via": peer.name})
    assert (body["name"], body["membership"], body["join_rule"]) == ("R1", "leave", "public")
    for room, params in ((remote_space["R2"], {"via": peer.name}), (remote_space["R1"], {})):
        status, body = viewer.request("GET", f"{V1}/room_summary/{q(room)}", params=params)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), (room, params)


def test_what_hierarchy_tells_another_server(home, hexagone_peer):
    owner = home.process.register()
    hs = space(owner, "HS3")
    public = owner.create_room(name="A", preset="public_chat")
    private = owner.create_room(name="B", preset="private_chat")
    unknown = "!unknown:" + home.name.split(":")[0]
    for order, child in enumerate((public, private, unknown)):
        add_child(owner, hs, child, home.name, str(order))
    status, body = home.signed("GET", f"/_matrix/federation/v1/hierarchy/{q(hs)}?suggested_only=false",
                               origin=hexagone_peer.name, key=hexagone_peer.signing_key)
    assert status == 200, body
    assert body["room"]["room_id"] == hs and len(body["room"]["children_state"]) == 3
    assert [c["room_id"] for c in body["children"]] == [public] and "children_state" not in body["children"][0]
    assert body["inaccessible_children"] == [private]  # the unknown room is left out
    status, body = home.signed("GET", f"/_matrix/federation/v1/hierarchy/{q(private)}",
                               origin=hexagone_peer.name, key=hexagone_peer.signing_key)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


def test_the_federation_allow_list_keeps_remote_children_out(fed, hexagone_peer):
    closed = fed(federation_domain_whitelist=["elsewhere.example"])
    peer_owner, owner = hexagone_peer.process.register(), closed.process.register()
    remote = peer_owner.create_room(name="far", preset="public_chat")
    hs = space(owner, "closed")
    local = owner.create_room(name="near", preset="public_chat")
    add_child(owner, hs, remote, hexagone_peer.name, "0")
    add_child(owner, hs, local, closed.name, "1")
    assert names(hierarchy(owner, hs)[1]) == ["closed", "near"]
    assert q(remote) not in hexagone_peer.process.log(tail=100000)


def test_a_remote_restricted_room_shows_to_members_of_its_allowed_room(home, peer):
    """The peer's space PR holds R (restricted to PR's members, room version 10). Once a user of ``home`` is in
    PR, ``home`` sees R over federation with its ``allowed_room_ids``, and shows it to PR's members only."""
    peer_owner = peer.process.register()
    pr = peer_owner.create_room(name="PR", preset="public_chat", room_version="10",
                                creation_content={"type": "m.space"})
    r = peer_owner.create_room(name="R", room_version="10", initial_state=[{"type": "m.room.join_rules", "content": {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": pr}]}}])
    add_child(peer_owner, pr, r, peer.name, "0")
    member, outsider = home.process.register(), home.process.register()
    member.ok("POST", f"/join/{q(pr)}", {}, params={"via": peer.name})
    assert names(hierarchy(member, pr)[1]) == ["PR", "R"]
    assert names(hierarchy(outsider, pr)[1]) == ["PR"]


def test_an_invitee_previews_the_remote_private_room(home, peer):
    """Previewing an invite: ``home`` knows the room only by the invite, the peer shows it to ``home`` (one of
    its users is invited), and ``home`` to the invitee only."""
    peer_owner, invitee, other = peer.process.register(), home.process.register(), home.process.register()
    room = peer_owner.create_room(name="secret", preset="private_chat")
    peer_owner.invite(room, invitee)
    invitee.sync_until(lambda sync: room in sync.get("rooms", {}).get("invite", {}))
    body = invitee.ok("GET", f"{V1}/room_summary/{q(room)}", params={"via": peer.name})
    assert (body["name"], body["membership"], body["join_rule"]) == ("secret", "invite", "invite")
    status, body = other.request("GET", f"{V1}/room_summary/{q(room)}", params={"via": peer.name})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

"""Spaces, room summaries, mutual rooms, whois, capabilities and versions on one server.

Spec v1.19 client-server "Spaces" (``GET /rooms/{roomId}/hierarchy``: depth first, children by ``order``
then ``origin_server_ts`` then room id, ``suggested_only``, ``max_depth``, ``limit``, ``from``), "Room
Summaries" (``GET /room_summary``), "Mutual rooms", "Server Administration" (``/admin/whois``),
"Capabilities negotiation" and ``/versions``. The federated hierarchy is in ``test_spaces_federation.py``.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import q, register_admin, unique

V1 = "/_matrix/client/v1"


def space(owner, name: str, **extra) -> str:
    return owner.create_room(name=name, creation_content={"type": "m.space"}, **extra)


def add_child(owner, space_id: str, child_id: str, **content) -> None:
    server = owner.user_id.split(":", 1)[1]
    owner.put_state(space_id, "m.space.child", {"via": [server], **content}, child_id)


def hierarchy(user, room_id: str, **params) -> tuple[int, dict]:
    return user.request("GET", f"{V1}/rooms/{q(room_id)}/hierarchy", params=params)


def names(body: dict) -> list[str]:
    return [room.get("name") for room in body["rooms"]]


@pytest.fixture(scope="module")
def tree(homeserver):
    """A public space S: B (order "a"), A (order "b", suggested), sub-space T holding D, then C (no order;
    T's child event is older than C's); and a private room P, a restricted room R admitting S's members
    and a knock_restricted room K, children of S too, which outsiders see only when the rules say so."""
    owner = homeserver.register()
    s = space(owner, "S", preset="public_chat")
    rooms = {n: owner.create_room(name=n, preset="public_chat") for n in "ABCD"}
    t = space(owner, "T", preset="public_chat")
    p = owner.create_room(name="P", preset="private_chat")
    r = owner.create_room(name="R", room_version="10", initial_state=[{"type": "m.room.join_rules", "content": {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": s}]}}])
    k = owner.create_room(name="K", room_version="10", initial_state=[{"type": "m.room.join_rules", "content": {
        "join_rule": "knock_restricted", "allow": [{"type": "m.room_membership", "room_id": s}]}}])
    add_child(owner, s, t)
    add_child(owner, t, rooms["D"])
    add_child(owner, s, rooms["C"])
    add_child(owner, s, rooms["A"], order="b", suggested=True)
    add_child(owner, s, rooms["B"], order="a")
    for hidden in (p, r, k):
        add_child(owner, s, hidden, order="z")
    return {"owner": owner, "S": s, "T": t, "P": p, "R": r, "K": k, **rooms}


def test_the_tree_depth_first_in_the_spec_order(tree, homeserver):
    owner = tree["owner"]
    body = hierarchy(owner, tree["S"])[1]
    assert names(body) == ["S", "B", "A", "P", "R", "K", "T", "D", "C"], body
    assert "next_batch" not in body
    root = body["rooms"][0]
    assert [c["state_key"] for c in root["children_state"]] == [
        tree[n] for n in "BAPRKTC"]  # P, R, K: the same order, so by origin_server_ts
    child = root["children_state"][1]
    assert child["type"] == "m.space.child" and child["sender"] == owner.user_id and child["content"]["suggested"]
    assert isinstance(child["origin_server_ts"], int)
    assert {k: root[k] for k in ("room_id", "room_type", "join_rule", "world_readable", "guest_can_join",
                                 "num_joined_members")} == {
        "room_id": tree["S"], "room_type": "m.space", "join_rule": "public", "world_readable": False,
        "guest_can_join": False, "num_joined_members": 1}
    assert "room_version" in root and "allowed_room_ids" not in body["rooms"][5]
    assert body["rooms"][1]["children_state"] == []  # not a space


def test_an_outsider_sees_only_what_the_join_rules_show(tree, homeserver):
    outsider = homeserver.register()
    assert names(hierarchy(outsider, tree["S"])[1]) == ["S", "B", "A", "K", "T", "D", "C"]
    member = homeserver.register()
    member.join(tree["S"])  # a member of S may join R (restricted to S's members), so sees it
    assert names(hierarchy(member, tree["S"])[1]) == ["S", "B", "A", "R", "K", "T", "D", "C"]
    status, body = hierarchy(outsider, tree["P"])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = hierarchy(outsider, f"!unknown:{homeserver.config['server_name']}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_max_depth_and_suggested_only(tree):
    owner = tree["owner"]
    assert names(hierarchy(owner, tree["S"], max_depth=0)[1]) == ["S"]
    assert names(hierarchy(owner, tree["S"], max_depth=1)[1]) == ["S", "B", "A", "P", "R", "K", "T", "C"]
    body = hierarchy(owner, tree["S"], suggested_only="true")[1]
    assert names(body) == ["S", "A"]
    assert [c["state_key"] for c in body["rooms"][0]["children_state"]] == [tree["A"]]


def test_pages_follow_on_and_keep_their_parameters(tree):
    owner = tree["owner"]
    seen, token, pages = [], None, 0
    while True:
        body = hierarchy(owner, tree["S"], limit=2, **({"from": token} if token else {}))[1]
        seen += names(body)
        pages += 1
        assert len(body["rooms"]) <= 2
        token = body.get("next_batch")
        if token is None:
            break
    assert seen == ["S", "B", "A", "P", "R", "K", "T", "D", "C"] and pages == 5
    token = hierarchy(owner, tree["S"], limit=2)[1]["next_batch"]
    for changed in ({"max_depth": 1}, {"suggested_only": "true"}):
        status, body = hierarchy(owner, tree["S"], limit=2, **{"from": token}, **changed)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), changed
    status, body = hierarchy(owner, tree["S"], **{"from": "not-a-token"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    other = hierarchy(owner, tree["S"], limit=2)[1]["next_batch"]
    assert names(hierarchy(owner, tree["S"], limit=3, **{"from": other})[1]) == ["A", "P", "R"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "x"}, {"max_depth": -1}, {"suggested_only": "yes"}])
def test_bad_parameters(tree, params):
    status, body = hierarchy(tree["owner"], tree["S"], **params)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), params


def test_room_summary(tree, homeserver):
    owner, anonymous = tree["owner"], homeserver.client()
    alias = unique("summary")
    owner.ok("PUT", f"/directory/room/{q(f'#{alias}:' + homeserver.config['server_name'])}",
             {"room_id": tree["A"]})
    path = f"{V1}/room_summary/" + q(f"#{alias}:{homeserver.config['server_name']}")
    status, body = anonymous.request("GET", path)
    assert status == 200 and body["room_id"] == tree["A"] and body["name"] == "A" and "membership" not in body
    assert body["join_rule"] == "public" and "children_state" not in body and body["room_version"]
    assert owner.ok("GET", f"{V1}/room_summary/{q(tree['P'])}")["membership"] == "join"
    stranger = homeserver.register()
    assert stranger.ok("GET", f"{V1}/room_summary/{q(tree['A'])}")["membership"] == "leave"
    unknown = f"!nope:{homeserver.config['server_name']}"
    for who, room in ((anonymous, tree["P"]), (stranger, tree["P"]), (stranger, unknown)):
        status, body = who.request("GET", f"{V1}/room_summary/{q(room)}")
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    encrypted = owner.create_room(name="E", preset="private_chat", initial_state=[
        {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    assert owner.ok("GET", f"{V1}/room_summary/{q(encrypted)}")["encryption"] == "m.megolm.v1.aes-sha2"
    status, body = owner.request("GET", f"{V1}/room_summary/not-a-room")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


def test_mutual_rooms(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    shared = sorted(alice.create_room(preset="public_chat") for _ in range(2))
    for room in shared:
        bob.join(room)
    alice.create_room(preset="public_chat")  # bob not in it
    invited = alice.create_room()
    alice.invite(invited, bob)  # invited is not joined
    body = alice.ok("GET", f"{V1}/mutual_rooms", params={"user_id": bob.user_id})
    assert body == {"joined": shared, "count": 2}
    for params, code in (({}, "M_MISSING_PARAM"), ({"user_id": alice.user_id}, "M_INVALID_PARAM"),
                         ({"user_id": "bob"}, "M_INVALID_PARAM"),
                         ({"user_id": bob.user_id, "from": "x"}, "M_INVALID_PARAM")):
        status, body = alice.request("GET", f"{V1}/mutual_rooms", params=params)
        assert (status, body["errcode"]) == (400, code), params


def test_whois(homeserver):
    user, other = homeserver.register(), homeserver.register()
    body = user.ok("GET", f"/admin/whois/{q(user.user_id)}")
    assert body["user_id"] == user.user_id and user.device_id in body["devices"]
    assert "sessions" in body["devices"][user.device_id]
    status, body = user.request("GET", f"/admin/whois/{q(other.user_id)}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    admin = register_admin(homeserver)
    assert other.device_id in admin.ok("GET", f"/admin/whois/{q(other.user_id)}")["devices"]
    status, body = admin.request("GET", f"/admin/whois/{q('@someone:elsewhere.example')}")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


def test_versions_and_capabilities(homeserver):
    user = homeserver.register()
    versions = homeserver.client().request("GET", "/_matrix/client/versions")[1]
    assert [f"v1.{n}" for n in range(1, 20)] == [v for v in versions["versions"] if v.startswith("v1.")]
    caps = user.ok("GET", "/capabilities")["capabilities"]
    assert caps["m.profile_fields"] == {"enabled": True, "allowed": ["avatar_url", "displayname"]}
    assert caps["m.set_displayname"] == caps["m.set_avatar_url"] == caps["m.change_password"] == {"enabled": True}
    assert caps["m.forget_forced_upon_leave"] == {"enabled": False}
    assert "m.account_moderation" not in caps


def test_support_information_and_auth_metadata(homeserver):
    """/.well-known/matrix/support from ``admin_contact`` (404 unset); /auth_metadata 404 M_UNRECOGNIZED: no
    OAuth 2.0 API here, so clients use the legacy one."""
    anonymous = homeserver.client()
    status, body = anonymous.request("GET", "/.well-known/matrix/support")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = anonymous.request("GET", f"{V1}/auth_metadata")
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")
    for contact, expected in (("mailto:help@example.org", {"contacts": [{"role": "m.role.admin",
                                                                          "email_address": "help@example.org"}]}),
                              ("https://help.example.org/", {"support_page": "https://help.example.org/"})):
        homeserver.reconfigure(admin_contact=contact)
        homeserver.stop()
        homeserver.start()
        assert anonymous.request("GET", "/.well-known/matrix/support") == (200, expected)

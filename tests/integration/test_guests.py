"""Guest accounts over real HTTP (spec v1.19 client-server "Guest Access"): ``allow_guest_access``,
``POST /register?kind=guest``, the endpoints a guest may call, joins only where ``guest_access`` is
``can_join``, and the upgrade of a guest to a full account keeping its user id."""

from __future__ import annotations

import pytest

from tests.integration.harness import PASSWORD, User, q


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory(allow_guest_access=True)


def register_guest(server, **body) -> User:
    status, resp = server.request("POST", "/register", body, params={"kind": "guest"})
    assert status == 200, (status, resp)
    return User(server, resp["user_id"], resp["access_token"], resp["device_id"])


def test_guest_registration_is_off_by_default(homeserver):
    status, resp = homeserver.request("POST", "/register", {}, params={"kind": "guest"})
    assert (status, resp["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


def test_guest_gets_a_numeric_user_id_and_a_token(server):
    guest = register_guest(server, initial_device_display_name="kiosk")
    assert guest.user_id.split(":")[0][1:].isdigit()
    assert guest.ok("GET", "/account/whoami")["user_id"] == guest.user_id
    assert guest.ok("GET", f"/devices/{q(guest.device_id)}")["display_name"] == "kiosk"


def test_guest_is_refused_what_the_spec_does_not_list(server):
    guest = register_guest(server)
    for method, path, body in [("POST", "/createRoom", {}), ("GET", "/joined_rooms", None),
                               ("PUT", f"/user/{q(guest.user_id)}/account_data/x", {}),
                               ("POST", "/user_directory/search", {"search_term": "a"})]:
        status, resp = guest.request(method, path, body)
        assert (status, resp.get("errcode")) == (403, "M_GUEST_ACCESS_FORBIDDEN"), (method, path, resp)


def test_guest_joins_only_can_join_rooms_and_chats_there(server):
    owner = server.register()
    closed = owner.create_room(preset="public_chat")
    open_room = owner.create_room(preset="public_chat")
    owner.put_state(open_room, "m.room.guest_access", {"guest_access": "can_join"})
    guest = register_guest(server)
    status, resp = guest.request("POST", f"/rooms/{q(closed)}/join", {})
    assert (status, resp["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    assert guest.join(open_room) == open_room
    guest.ok("PUT", f"/profile/{q(guest.user_id)}/displayname", {"displayname": "creeper"})
    event_id = guest.send(open_room, "sup")
    event, _ = owner.timeline_until(open_room, lambda e: e["event_id"] == event_id)
    assert event["sender"] == guest.user_id
    status, member = guest.state(open_room, "m.room.member", guest.user_id)
    assert (status, member["displayname"]) == (200, "creeper")
    status, resp = guest.request("PUT", f"/rooms/{q(open_room)}/state/m.room.topic/", {"topic": "no"})
    assert (status, resp["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


def test_guest_upgrades_keeping_its_user_id(server):
    guest = register_guest(server)
    localpart = guest.user_id.split(":")[0][1:]
    other = register_guest(server)
    status, _ = server.request("POST", "/register", {"username": localpart, "password": PASSWORD,
                                                     "guest_access_token": other.token,
                                                     "auth": {"type": "m.login.dummy"}})
    assert status == 403   # one guest cannot take another's id
    status, resp = server.request("POST", "/register", {"username": localpart, "password": PASSWORD,
                                                        "guest_access_token": guest.token,
                                                        "auth": {"type": "m.login.dummy"}})
    assert status == 200, resp
    assert resp["user_id"] == guest.user_id
    full = User(server, resp["user_id"], resp["access_token"], resp["device_id"])
    full.ok("POST", "/createRoom", {})
    assert server.login(guest.user_id).user_id == guest.user_id   # the password set at the upgrade
    # the guest token now belongs to a full account too
    guest.ok("GET", "/joined_rooms")
    status, _ = server.request("POST", "/register", {"username": localpart, "password": PASSWORD,
                                                     "guest_access_token": guest.token,
                                                     "auth": {"type": "m.login.dummy"}})
    assert status == 403   # no longer a guest


def test_guests_leave_when_guest_access_is_revoked(server):
    owner = server.register()
    room = owner.create_room(preset="public_chat")
    owner.put_state(room, "m.room.guest_access", {"guest_access": "can_join"})
    guest, member = register_guest(server), server.register()
    guest.join(room)
    member.join(room)
    owner.put_state(room, "m.room.guest_access", {"guest_access": "forbidden"})
    owner.timeline_until(room, lambda e: e["type"] == "m.room.member" and e["state_key"] == guest.user_id
                         and e["content"]["membership"] == "leave")
    assert owner.state(room, "m.room.member", member.user_id)[1]["membership"] == "join"

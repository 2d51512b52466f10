"""Account suspension and locking by a server admin (spec v1.19 client-server "Server Administration",
``/admin/suspend/{userId}`` and ``/admin/lock/{userId}``, v1.18): who may, on whom, and what a suspended or
locked account can still do; the state survives a restart."""

from __future__ import annotations

import pytest

from tests.integration.harness import q, register_admin

V1 = "/_matrix/client/v1/admin"


@pytest.fixture(scope="module")
def admin(homeserver):
    return register_admin(homeserver)


def moderate(admin, what: str, user_id: str, value: bool) -> None:
    key = "suspended" if what == "suspend" else "locked"
    assert admin.ok("PUT", f"{V1}/{what}/{q(user_id)}", {key: value}) == {key: value}


@pytest.mark.parametrize("what, key", [("suspend", "suspended"), ("lock", "locked")])
def test_who_may_moderate_whom(homeserver, admin, what, key):
    user, other_admin = homeserver.register(), register_admin(homeserver)
    status, body = user.request("PUT", f"{V1}/{what}/{q(admin.user_id)}", {key: True})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = user.request("GET", f"{V1}/{what}/{q(user.user_id)}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert admin.ok("GET", f"{V1}/{what}/{q(user.user_id)}") == {key: False}
    server = homeserver.config["server_name"]
    for target, body, expected in (
            ("@someone:elsewhere.example", {key: True}, (400, "M_INVALID_PARAM")),
            (f"@nobody-here:{server}", {key: True}, (404, "M_NOT_FOUND")),
            (admin.user_id, {key: True}, (403, "M_FORBIDDEN")),
            (other_admin.user_id, {key: True}, (403, "M_FORBIDDEN")),
            (user.user_id, {key: "yes"}, (400, "M_BAD_JSON")),
            (user.user_id, {}, (400, "M_MISSING_PARAM"))):
        status, answer = admin.request("PUT", f"{V1}/{what}/{q(target)}", body)
        assert (status, answer["errcode"]) == expected, (target, body)
    status, answer = admin.request("GET", f"{V1}/{what}/{q(f'@nobody-here:{server}')}")
    assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")


def test_a_suspended_account_reads_leaves_and_redacts_only(homeserver, admin):
    user, friend = homeserver.register(), homeserver.register()
    room = friend.create_room(preset="public_chat")
    user.join(room)
    said = user.send(room, "before")
    moderate(admin, "suspend", user.user_id, True)
    assert admin.ok("GET", f"{V1}/suspend/{q(user.user_id)}") == {"suspended": True}
    other = friend.create_room(preset="public_chat")
    for method, path, body in (
            ("PUT", f"/rooms/{q(room)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "no"}),
            ("PUT", f"/rooms/{q(room)}/state/m.room.topic/", {"topic": "no"}),
            ("POST", "/createRoom", {}),
            ("POST", f"/join/{q(other)}", {}),
            ("POST", f"/rooms/{q(room)}/invite", {"user_id": admin.user_id}),
            ("PUT", f"/profile/{q(user.user_id)}/displayname", {"displayname": "no"})):
        status, answer = user.request(method, path, body)
        assert (status, answer.get("errcode")) == (403, "M_USER_SUSPENDED"), path
    user.sync()
    user.ok("PUT", f"/rooms/{q(room)}/redact/{q(said)}/r1", {})
    user.leave(room)
    moderate(admin, "suspend", user.user_id, False)
    user.create_room()


def test_a_locked_account_may_only_log_out_and_stays_locked_over_a_restart(homeserver, admin):
    user = homeserver.register()
    second = homeserver.login(user.user_id)
    moderate(admin, "lock", user.user_id, True)
    status, body = user.request("GET", "/sync")
    assert (status, body["errcode"], body["soft_logout"]) == (401, "M_USER_LOCKED", True)
    status, body = homeserver.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password})
    assert (status, body["errcode"]) == (401, "M_USER_LOCKED")
    second.ok("POST", "/logout", {})
    homeserver.stop()
    homeserver.start()
    assert admin.ok("GET", f"{V1}/lock/{q(user.user_id)}") == {"locked": True}
    assert user.request("GET", "/account/whoami")[1]["errcode"] == "M_USER_LOCKED"
    moderate(admin, "lock", user.user_id, False)
    assert user.ok("GET", "/account/whoami")["user_id"] == user.user_id


def test_the_capability_is_an_admins(homeserver, admin):
    assert admin.ok("GET", "/capabilities")["capabilities"]["m.account_moderation"] == {"suspend": True, "lock": True}
    assert "m.account_moderation" not in homeserver.register().ok("GET", "/capabilities")["capabilities"]


def test_synapse_admin_api_reads_both_and_locks(homeserver, admin):
    user = homeserver.register()
    moderate(admin, "suspend", user.user_id, True)
    path = f"/_synapse/admin/v2/users/{q(user.user_id)}"
    assert {k: admin.ok("GET", path)[k] for k in ("suspended", "locked")} == {"suspended": True, "locked": False}
    assert admin.ok("PUT", path, {"locked": True})["locked"] is True
    assert user.request("GET", "/account/whoami")[1]["errcode"] == "M_USER_LOCKED"
    assert admin.ok("GET", f"{V1}/lock/{q(user.user_id)}") == {"locked": True}
    admin.ok("PUT", path, {"locked": False})
    assert admin.ok("GET", f"{V1}/suspend/{q(user.user_id)}") == {"suspended": True}
    user.ok("GET", "/account/whoami")

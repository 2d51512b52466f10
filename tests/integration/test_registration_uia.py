"""Registration through user-interactive auth as clients (and SyTest's 11register.pl) drive it.

Spec v1.19 client-server "Account registration and management" and "User-Interactive Authentication API";
where the spec is silent, Synapse: a request within a session may carry ``auth`` alone (the parameters of
the request that opened the session apply), and a retry of a completed registration answers with the same
user (logged in again), so that a client that lost the response can retry.
"""

from __future__ import annotations

from tests.integration.harness import PASSWORD, unique


def open_session(server, body: dict) -> str:
    status, challenge = server.request("POST", "/register", body)
    assert status == 401 and challenge["session"], challenge
    return challenge["session"]


def dummy(session: str) -> dict:
    return {"type": "m.login.dummy", "session": session}


def test_idempotent_without_username(homeserver):
    session = open_session(homeserver, {"password": PASSWORD})
    status, first = homeserver.request("POST", "/register", {"password": PASSWORD, "auth": dummy(session)})
    assert status == 200 and first["access_token"], first
    status, again = homeserver.request("POST", "/register", {"password": PASSWORD, "auth": dummy(session)})
    assert status == 200 and again["user_id"] == first["user_id"] and again["access_token"], again
    assert homeserver.request("GET", "/account/whoami", token=again["access_token"])[1]["user_id"] == first["user_id"]


def test_idempotent_with_username_and_bound_to_it(homeserver):
    localpart = unique("idem")
    body = {"username": localpart, "password": PASSWORD}
    session = open_session(homeserver, body)
    status, first = homeserver.request("POST", "/register", {**body, "auth": dummy(session)})
    assert status == 200 and first["user_id"] == f"@{localpart}:test.local"
    status, again = homeserver.request("POST", "/register", {**body, "auth": dummy(session)})
    assert (status, again["user_id"]) == (200, first["user_id"])
    # the session cannot register another name
    status, other = homeserver.request("POST", "/register", {"username": unique("other"), "password": PASSWORD,
                                                             "auth": dummy(session)})
    assert status == 403 and "access_token" not in other, other


def test_session_remembers_parameters(homeserver):
    localpart = unique("remember")
    session = open_session(homeserver, {"username": localpart, "password": "übers3kr1t", "device_id": "xyzzy",
                                        "initial_device_display_name": "display_name"})
    status, done = homeserver.request("POST", "/register", {"auth": dummy(session)})
    assert status == 200 and done["user_id"] == f"@{localpart}:test.local" and done["device_id"] == "xyzzy", done
    status, device = homeserver.request("GET", "/devices/xyzzy", token=done["access_token"])
    assert status == 200 and device["display_name"] == "display_name"
    status, login = homeserver.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
        "password": "übers3kr1t"})
    assert status == 200, login


def test_inhibit_login_remembered(homeserver):
    localpart = unique("inhibit")
    session = open_session(homeserver, {"username": localpart, "password": PASSWORD, "inhibit_login": True})
    status, done = homeserver.request("POST", "/register", {"auth": dummy(session)})
    assert status == 200 and done["user_id"] == f"@{localpart}:test.local"
    assert "access_token" not in done and "device_id" not in done


def test_unknown_session_and_taken_username(homeserver):
    status, err = homeserver.request("POST", "/register", {"password": PASSWORD, "auth": dummy("nosuchsession")})
    assert (status, err["errcode"]) == (400, "M_UNKNOWN")
    taken = homeserver.register().user_id[1:].split(":")[0]
    status, err = homeserver.request("POST", "/register", {"username": taken, "password": PASSWORD})
    assert (status, err["errcode"]) == (400, "M_USER_IN_USE")


def test_username_with_a_final_newline_is_invalid(homeserver):
    for name in (unique("nl") + "\n", unique("nl") + "\nx"):
        status, err = homeserver.request("POST", "/register", {"username": name, "password": PASSWORD,
                                                               "auth": {"type": "m.login.dummy"}})
        assert (status, err["errcode"]) == (400, "M_INVALID_USERNAME"), name
        status, err = homeserver.request("GET", "/register/available", params={"username": name})
        assert (status, err["errcode"]) == (400, "M_INVALID_USERNAME"), name

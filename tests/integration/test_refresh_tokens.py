"""Refresh tokens, expiring access tokens and login tokens, on a server built in this process (its fake clock
makes tokens expire on demand).

Spec v1.19 client-server "Refreshing access tokens" (``refresh_token`` on /login and /register, POST
/refresh, ``expires_in_ms``, soft logout), "Login" (``m.login.token``) and POST /login/get_token (v1.7);
Synapse's ``refreshable_access_token_lifetime``, ``refresh_token_lifetime``,
``nonrefreshable_access_token_lifetime`` and ``login_via_existing_session``.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import CLIENT_V1, PASSWORD, unique
from tests.integration.inprocess import InProcessServer

LIFETIME_MS = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = InProcessServer(tmp_path_factory.mktemp("refresh"), refreshable_access_token_lifetime="1m",
                             refresh_token_lifetime="1h",
                             login_via_existing_session={"enabled": True, "token_timeout": "2m"})
    yield server
    server.close()


def register(server, **extra) -> dict:
    body = {"username": unique("rt"), "password": PASSWORD, "auth": {"type": "m.login.dummy"}, **extra}
    status, resp = server.request("POST", "/register", body)
    assert status == 200, resp
    return resp


def whoami(server, token: str) -> tuple[int, dict]:
    return server.request("GET", "/account/whoami", token=token)


def refresh(server, refresh_token: str) -> tuple[int, dict]:
    return server.request("POST", "/refresh", {"refresh_token": refresh_token})


def test_register_and_login_with_refresh_token(server):
    plain = register(server)
    assert "refresh_token" not in plain and "expires_in_ms" not in plain
    resp = register(server, refresh_token=True)
    assert resp["refresh_token"] and resp["expires_in_ms"] == LIFETIME_MS
    status, login = server.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": resp["user_id"]},
        "password": PASSWORD, "refresh_token": True})
    assert status == 200 and login["refresh_token"] and login["expires_in_ms"] == LIFETIME_MS
    assert whoami(server, login["access_token"])[0] == 200
    status, err = server.request("POST", "/register", {"username": unique("rt"), "password": PASSWORD,
                                                       "auth": {"type": "m.login.dummy"}, "refresh_token": "yes"})
    assert (status, err["errcode"]) == (400, "M_BAD_JSON")


def test_access_token_expires_with_soft_logout_then_refresh(server):
    resp = register(server, refresh_token=True)
    assert whoami(server, resp["access_token"])[0] == 200
    server.reactor.advance(LIFETIME_MS / 1000 + 1)
    status, err = whoami(server, resp["access_token"])
    assert (status, err["errcode"], err["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", True)
    status, new = refresh(server, resp["refresh_token"])
    assert status == 200, new
    assert new["expires_in_ms"] == LIFETIME_MS and new["refresh_token"] != resp["refresh_token"]
    status, me = whoami(server, new["access_token"])
    assert (status, me["device_id"]) == (200, resp["device_id"])


def test_rotation_old_refresh_token_revoked_once_new_access_token_used(server):
    resp = register(server, refresh_token=True)
    status, first = refresh(server, resp["refresh_token"])
    assert status == 200
    # Spec: the old refresh token stays valid until the new access token or refresh token is used; a
    # second exchange supersedes the unused first one.
    status, second = refresh(server, resp["refresh_token"])
    assert status == 200
    assert whoami(server, first["access_token"])[0] == 401
    assert refresh(server, first["refresh_token"])[0] == 401
    assert whoami(server, second["access_token"])[0] == 200
    status, err = refresh(server, resp["refresh_token"])
    assert (status, err["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert whoami(server, resp["access_token"])[0] == 401   # the old access token went with it
    # using the new refresh token (not its access token) revokes the one before it too
    status, third = refresh(server, second["refresh_token"])
    assert status == 200
    status, fourth = refresh(server, third["refresh_token"])
    assert status == 200
    assert refresh(server, second["refresh_token"])[0] == 401
    assert whoami(server, fourth["access_token"])[0] == 200


def test_refresh_errors(server):
    status, err = refresh(server, "syr_unknown")
    assert (status, err["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, err = server.request("POST", "/refresh", {})
    assert (status, err["errcode"]) == (400, "M_MISSING_PARAM")
    resp = register(server, refresh_token=True)
    server.reactor.advance(3600 + 1)   # refresh_token_lifetime
    status, err = refresh(server, resp["refresh_token"])
    assert (status, err["errcode"], err["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", True)


def test_logout_revokes_refresh_token(server):
    resp = register(server, refresh_token=True)
    assert server.request("POST", "/logout", {}, token=resp["access_token"])[0] == 200
    assert refresh(server, resp["refresh_token"])[0] == 401
    # a login reusing the device id drops the device's earlier refresh tokens with its access tokens
    resp = register(server, refresh_token=True)
    status, _ = server.request("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": resp["user_id"]},
        "password": PASSWORD, "device_id": resp["device_id"]})
    assert status == 200
    assert refresh(server, resp["refresh_token"])[0] == 401


def test_get_login_token_and_login_with_it(server):
    resp = register(server)
    status, flows = server.request("GET", "/login")
    assert {"type": "m.login.token", "get_login_token": True} in flows["flows"]
    status, challenge = server.request("POST", f"{CLIENT_V1}/login/get_token", {}, token=resp["access_token"])
    assert status == 401 and {"stages": ["m.login.password"]} in challenge["flows"]
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": resp["user_id"]},
            "password": PASSWORD, "session": challenge["session"]}
    status, issued = server.request("POST", f"{CLIENT_V1}/login/get_token", {"auth": auth},
                                    token=resp["access_token"])
    assert status == 200 and issued["expires_in_ms"] == 120_000, issued
    status, login = server.request("POST", "/login", {"type": "m.login.token", "token": issued["login_token"]})
    assert status == 200 and login["user_id"] == resp["user_id"] and login["device_id"] != resp["device_id"]
    # single use
    status, err = server.request("POST", "/login", {"type": "m.login.token", "token": issued["login_token"]})
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
    status, err = server.request("POST", "/login", {"type": "m.login.token", "token": "syl_bogus"})
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")


def test_login_token_expires(server):
    resp = register(server)
    issued = server.run(server.hs.session_tokens.issue_login_token(resp["user_id"]))
    server.reactor.advance(120 + 1)
    status, err = server.request("POST", "/login", {"type": "m.login.token", "token": issued["login_token"]})
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")


def test_get_login_token_disabled_and_nonrefreshable_lifetime(tmp_path_factory):
    other = InProcessServer(tmp_path_factory.mktemp("norefresh"), nonrefreshable_access_token_lifetime="10m")
    try:
        resp = register(other)
        assert "expires_in_ms" not in resp
        status, flows = other.request("GET", "/login")
        assert all(flow["type"] != "m.login.token" for flow in flows["flows"])
        status, err = other.request("POST", f"{CLIENT_V1}/login/get_token", {}, token=resp["access_token"])
        assert (status, err["errcode"]) == (404, "M_UNRECOGNIZED")
        assert whoami(other, resp["access_token"])[0] == 200
        other.reactor.advance(600 + 1)
        status, err = whoami(other, resp["access_token"])
        assert (status, err["errcode"], err["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", True)
    finally:
        other.close()

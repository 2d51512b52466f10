"""The audit trail over real HTTP: security events recorded with actor, target, origin and time, queried and
exported by admins only, append-only in the database, and never holding a password or an access token."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.integration.harness import database_rows, register_admin, unique

SECRET_PASSWORD = "audit-secret-Pa55word-1"
NEW_PASSWORD = "audit-secret-Pa55word-2"


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory()


@pytest.fixture(scope="module")
def admin(server):
    return register_admin(server, SECRET_PASSWORD)


def events(admin, **filters) -> list[dict]:
    args = "&".join(f"{k}={quote(str(v))}" for k, v in filters.items())
    return admin.ok("GET", f"/_hexagone/admin/v1/audit?{args}")["events"]


def test_logins_registrations_password_and_device_changes_are_recorded(server, admin):
    user = server.register(unique("alice"), SECRET_PASSWORD)
    second = server.login(user.user_id, SECRET_PASSWORD)
    status, _ = server.request("POST", "/login", {"type": "m.login.password", "password": "wrong guess",
                                                   "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert status == 403
    user.ok("POST", "/account/password", {"new_password": NEW_PASSWORD, "logout_devices": False,
                                          "auth": {"type": "m.login.password", "password": SECRET_PASSWORD,
                                                   "identifier": {"type": "m.id.user", "user": user.user_id}}})
    user.ok("POST", "/delete_devices", {"devices": [second.device_id], "auth": {
        "type": "m.login.password", "password": NEW_PASSWORD,
        "identifier": {"type": "m.id.user", "user": user.user_id}}})

    mine = events(admin, actor=user.user_id)
    kinds = [e["kind"] for e in reversed(mine)]  # oldest first
    assert kinds == ["registration", "login", "login_failed", "password_change", "device_delete"], kinds
    assert all(e["origin"] == "127.0.0.1" and e["ts"] > 0 for e in mine)
    assert {e["target"] for e in mine if e["kind"] == "login"} == {second.device_id}
    assert events(admin, kind="login_failed", actor=user.user_id)[0]["details"] == {"errcode": "M_FORBIDDEN"}

    # Secrets are nowhere: not in the table, not in the server's log.
    dump = json.dumps(database_rows(server, "SELECT * FROM audit_log"))
    log = server.log(tail=100000)
    for secret in (SECRET_PASSWORD, NEW_PASSWORD, "wrong guess", user.token, second.token,
                   admin.token, server.config["registration_shared_secret"]):
        assert secret not in dump and secret not in log


def test_pagination_filters_and_export(server, admin):
    user = server.register(unique("bob"), SECRET_PASSWORD)
    for _ in range(3):
        server.login(user.user_id, SECRET_PASSWORD)
    page = admin.ok("GET", f"/_hexagone/admin/v1/audit?actor={quote(user.user_id)}&limit=2")
    assert len(page["events"]) == 2 and "next_token" in page
    rest = admin.ok("GET", f"/_hexagone/admin/v1/audit?actor={quote(user.user_id)}&limit=2"
                           f"&from={page['next_token']}")
    ids = [e["id"] for e in page["events"] + rest["events"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 4 and "next_token" not in rest
    assert [e["kind"] for e in events(admin, actor=user.user_id, kind="login")] == ["login"] * 3

    status, headers, body = server.client().send(
        "GET", f"/_hexagone/admin/v1/audit/export?actor={quote(user.user_id)}",
        None, {"Authorization": f"Bearer {admin.token}"}, 60)
    assert status == 200 and headers.get("content-type", "").startswith("application/x-ndjson")
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [e["id"] for e in lines] == ids


def test_non_admins_are_refused_and_the_table_is_append_only(server, admin):
    user = server.register()
    for path in ("/_hexagone/admin/v1/audit", "/_hexagone/admin/v1/audit/export"):
        status, body = user.request("GET", path)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    with pytest.raises(Exception, match="append-only"):
        database_rows(server, "UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(Exception, match="append-only"):
        database_rows(server, "DELETE FROM audit_log")
    assert events(admin, limit=1)

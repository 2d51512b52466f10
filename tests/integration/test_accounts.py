"""Accounts over real HTTP: registration, login, passwords, deactivation, devices.

Spec v1.19 client-server "Account registration and management", "Login",
"User-Interactive Authentication API", "Device management"; Synapse's
shared-secret registration admin API.
"""

from __future__ import annotations

import hashlib

from tests.integration.harness import CLIENT_V1, PASSWORD, database_rows, hexagone_cli, q, unique


def password_auth(user, session: str | None = None, password: str | None = None) -> dict:
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": password or user.password}
    if session:
        auth["session"] = session
    return auth


# -- registration --------------------------------------------------------------------------

def test_register_dummy_flow_uia_dance(homeserver):
    localpart = unique("dance")
    body = {"username": localpart, "password": PASSWORD, "initial_device_display_name": "phone"}
    status, challenge = homeserver.request("POST", "/register", body)
    assert status == 401, challenge
    assert {"stages": ["m.login.dummy"]} in challenge["flows"]
    assert challenge["session"] and challenge["completed"] == []

    body["auth"] = {"type": "m.login.dummy", "session": challenge["session"]}
    status, done = homeserver.request("POST", "/register", body)
    assert status == 200, done
    assert done["user_id"] == f"@{localpart}:test.local"
    assert done["access_token"] and done["device_id"]
    status, me = homeserver.request("GET", "/account/whoami", token=done["access_token"])
    assert (status, me["user_id"], me["device_id"]) == (200, done["user_id"], done["device_id"])
    status, device = homeserver.request("GET", f"/devices/{done['device_id']}", token=done["access_token"])
    assert status == 200 and device["display_name"] == "phone"

    # the completed session cannot be replayed for a second account
    body["username"] = unique("replay")
    status, again = homeserver.request("POST", "/register", body)
    assert status in (400, 401, 403) and "access_token" not in again, again


def test_register_inhibit_login_and_user_in_use(homeserver):
    localpart = unique("inhibit")
    body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}, "inhibit_login": True}
    status, resp = homeserver.request("POST", "/register", body)
    assert status == 200 and "access_token" not in resp and "device_id" not in resp
    status, resp = homeserver.request("POST", "/register", body)
    assert (status, resp["errcode"]) == (400, "M_USER_IN_USE")


def test_username_available_in_use_invalid(homeserver):
    free = unique("free")
    assert homeserver.request("GET", "/register/available", params={"username": free}) == (200, {"available": True})
    taken = homeserver.register().user_id[1:].split(":")[0]
    status, resp = homeserver.request("GET", "/register/available", params={"username": taken})
    assert (status, resp["errcode"]) == (400, "M_USER_IN_USE")
    status, resp = homeserver.request("GET", "/register/available", params={"username": taken.upper()})
    assert (status, resp["errcode"]) == (400, "M_USER_IN_USE")
    for invalid in ("has space", "ümlaut", "a:b", "#hash"):
        status, resp = homeserver.request("GET", "/register/available", params={"username": invalid})
        assert (status, resp["errcode"]) == (400, "M_INVALID_USERNAME"), invalid
    status, resp = homeserver.request("POST", "/register", {"username": "bad name", "password": PASSWORD,
                                                            "auth": {"type": "m.login.dummy"}})
    assert (status, resp["errcode"]) == (400, "M_INVALID_USERNAME")


def test_registration_disabled(homeserver_factory):
    closed = homeserver_factory(enable_registration=False)
    status, resp = closed.request("POST", "/register", {"username": "nobody", "password": PASSWORD,
                                                        "auth": {"type": "m.login.dummy"}})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = closed.request("POST", "/register", {"username": "nobody", "password": PASSWORD},
                                  params={"kind": "guest"})
    assert (status, resp["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    closed.stop()


def test_registration_token_required(homeserver_factory):
    """Spec "Token-authenticated registration": the flow is offered, bad tokens are refused, and a
    token created with Synapse's admin API registers exactly as many users as it allows."""
    gated = homeserver_factory(registration_requires_token=True)
    status, challenge = gated.request("POST", "/register", {"username": "gated", "password": PASSWORD})
    assert status == 401
    assert challenge["flows"] == [{"stages": ["m.login.registration_token"]}]
    status, resp = gated.request("POST", "/register", {
        "username": "gated", "password": PASSWORD,
        "auth": {"type": "m.login.registration_token", "token": "wrong", "session": challenge["session"]}})
    assert status == 401 and resp["errcode"] == "M_FORBIDDEN" and resp["completed"] == []
    status, resp = gated.request("POST", "/register", {"username": "gated", "password": PASSWORD,
                                                       "auth": {"type": "m.login.dummy"}})
    assert status == 401 and "access_token" not in resp
    validity = CLIENT_V1 + "/register/m.login.registration_token/validity"
    assert gated.request("GET", validity, params={"token": "wrong"}) == (200, {"valid": False})
    status, resp = gated.request("GET", validity)
    assert (status, resp["errcode"]) == (400, "M_MISSING_PARAM")

    admin = gated.shared_secret_register(unique("admin"), admin=True)["body"]
    tokens = "/_synapse/admin/v1/registration_tokens"
    assert gated.request("POST", tokens + "/new", {"uses_allowed": 1})[0] == 401  # no token at all
    status, created = gated.request("POST", tokens + "/new", {"token": "letmein", "uses_allowed": 1},
                                    token=admin["access_token"])
    assert status == 200 and created["token"] == "letmein" and created["completed"] == 0, created
    status, resp = gated.request("POST", tokens + "/new", {"token": "letmein"}, token=admin["access_token"])
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM")
    assert gated.request("GET", validity, params={"token": "letmein"}) == (200, {"valid": True})

    def register_with_token(username):
        status, challenge = gated.request("POST", "/register", {"username": username, "password": PASSWORD})
        assert status == 401
        return gated.request("POST", "/register", {
            "username": username, "password": PASSWORD,
            "auth": {"type": "m.login.registration_token", "token": "letmein", "session": challenge["session"]}})

    status, resp = register_with_token(unique("tok"))
    assert status == 200 and resp["access_token"], resp
    assert gated.request("GET", tokens + "/letmein", token=admin["access_token"])[1]["completed"] == 1
    status, resp = register_with_token(unique("tok"))  # the one use is spent
    assert status == 401 and "access_token" not in resp
    non_admin = gated.shared_secret_register(unique("plain"))["body"]
    status, resp = gated.request("GET", tokens, token=non_admin["access_token"])
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = gated.request("GET", tokens, token=admin["access_token"])
    assert status == 200 and [t["token"] for t in resp["registration_tokens"]] == ["letmein"]
    gated.stop()


def test_shared_secret_registration(homeserver):
    localpart = unique("admin")
    result = homeserver.shared_secret_register(localpart, admin=True)
    assert result["status"] == 200, result
    assert result["body"]["user_id"] == f"@{localpart}:test.local"
    status, me = homeserver.request("GET", "/account/whoami", token=result["body"]["access_token"])
    assert (status, me["user_id"]) == (200, f"@{localpart}:test.local")
    homeserver.login(f"@{localpart}:test.local")

    # a wrong MAC and a replayed nonce are refused
    status, nonce = homeserver.request("GET", "/_synapse/admin/v1/register")
    bad = {"nonce": nonce["nonce"], "username": unique("x"), "password": PASSWORD, "mac": "00" * 20}
    status, resp = homeserver.request("POST", "/_synapse/admin/v1/register", bad)
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = homeserver.request("POST", "/_synapse/admin/v1/register", bad)
    assert status == 400


def test_cli_register_user(homeserver):
    localpart = unique("cli")
    r = hexagone_cli("register-user", "--config", homeserver.config_path, "--user", localpart,
                     "--password", "s3cret-cli", cwd=homeserver.dir)
    assert r.returncode == 0, r.stderr
    assert f"@{localpart}:test.local" in r.stdout
    user = homeserver.login(localpart, "s3cret-cli")
    assert user.ok("GET", "/account/whoami")["user_id"] == f"@{localpart}:test.local"
    again = hexagone_cli("register-user", "--config", homeserver.config_path, "--user", localpart,
                         "--password", "x", cwd=homeserver.dir)
    assert again.returncode == 1 and "M_USER_IN_USE" in again.stderr


def test_cli_register_user_password_off_the_command_line(homeserver, tmp_path):
    """``register-user --password-file FILE|-``: the password need not be on the command line, where other
    local users can read it; a password over 72 bytes is refused there as well."""
    path = tmp_path / "password"
    path.write_text("from a file\n")
    for source, stdin, password in ((str(path), None, "from a file"), ("-", "from stdin\n", "from stdin")):
        localpart = unique("clifile")
        r = hexagone_cli("register-user", "--config", homeserver.config_path, "--user", localpart,
                         "--password-file", source, cwd=homeserver.dir, stdin=stdin)
        assert r.returncode == 0, r.stderr
        homeserver.login(localpart, password)
    r = hexagone_cli("register-user", "--config", homeserver.config_path, "--user", unique("clilong"),
                     "--password-file", "-", cwd=homeserver.dir, stdin="x" * 73 + "\n")
    assert r.returncode == 1 and "M_WEAK_PASSWORD" in r.stderr
    r = hexagone_cli("register-user", "--config", homeserver.config_path, "--user", unique("clinone"),
                     cwd=homeserver.dir)
    assert r.returncode == 2 and "--password-file" in r.stderr


# -- login, logout, whoami -----------------------------------------------------------------------

def test_login_logout_whoami(homeserver):
    alice = homeserver.register()
    assert homeserver.request("GET", "/login")[1]["flows"] == [{"type": "m.login.password"}]
    localpart = alice.user_id[1:].split(":")[0]
    status, resp = homeserver.request("POST", "/login", {"type": "m.login.password", "user": localpart,
                                                         "password": PASSWORD, "device_id": "MYDEVICE"})
    assert status == 200 and resp["device_id"] == "MYDEVICE" and resp["user_id"] == alice.user_id
    second = resp["access_token"]
    assert homeserver.request("GET", "/account/whoami", token=second)[1]["device_id"] == "MYDEVICE"

    status, resp = homeserver.request("POST", "/login", {"type": "m.login.password", "user": localpart,
                                                         "password": "wrong"})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = homeserver.request("POST", "/login", {"type": "m.login.password",
                                                         "identifier": {"type": "m.id.user", "user": "nobody"},
                                                         "password": PASSWORD})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")

    assert homeserver.request("POST", "/logout", {}, token=second) == (200, {})
    status, resp = homeserver.request("GET", "/account/whoami", token=second)
    assert (status, resp["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert "MYDEVICE" not in [d["device_id"] for d in alice.ok("GET", "/devices")["devices"]]
    assert alice.ok("GET", "/account/whoami")["user_id"] == alice.user_id


def test_logout_all(homeserver):
    alice = homeserver.register()
    other = homeserver.login(alice.user_id)
    assert alice.ok("POST", "/logout/all", {}) == {}
    for token in (alice.token, other.token):
        status, resp = homeserver.request("GET", "/account/whoami", token=token)
        assert (status, resp["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert homeserver.login(alice.user_id).ok("GET", "/devices")["devices"][0]["device_id"]


def test_password_change(homeserver):
    alice = homeserver.register()
    laptop = homeserver.login(alice.user_id)
    body = {"new_password": "new password 2"}
    status, challenge = alice.request("POST", "/account/password", body)
    assert status == 401 and {"stages": ["m.login.password"]} in challenge["flows"]
    body["auth"] = password_auth(alice, challenge["session"], "not my password")
    status, resp = alice.request("POST", "/account/password", body)
    assert status == 401 and resp["errcode"] == "M_FORBIDDEN"
    body["auth"] = password_auth(alice, resp["session"])
    assert alice.ok("POST", "/account/password", body) == {}

    status, resp = laptop.request("GET", "/account/whoami")
    assert (status, resp["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert alice.ok("GET", "/account/whoami")["user_id"] == alice.user_id
    status, resp = homeserver.request("POST", "/login", {"type": "m.login.password", "user": alice.user_id,
                                                         "password": PASSWORD})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    homeserver.login(alice.user_id, "new password 2")


def test_deactivate(homeserver):
    alice = homeserver.register()
    bob = homeserver.register()
    room = alice.create_room(preset="public_chat")
    status, challenge = alice.request("POST", "/account/deactivate", {})
    assert status == 401 and {"stages": ["m.login.password"]} in challenge["flows"]
    body = {"auth": password_auth(alice, challenge["session"])}
    assert alice.ok("POST", "/account/deactivate", body)["id_server_unbind_result"] in ("success", "no-support")

    status, resp = alice.request("GET", "/account/whoami")
    assert (status, resp["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, resp = homeserver.request("POST", "/login", {"type": "m.login.password", "user": alice.user_id,
                                                         "password": PASSWORD})
    assert status == 403 and resp["errcode"] in ("M_FORBIDDEN", "M_USER_DEACTIVATED")
    # the account left its rooms, and its name stays taken
    bob.join(room)
    members = bob.ok("GET", f"/rooms/{q(room)}/joined_members")["joined"]
    assert alice.user_id not in members
    status, resp = homeserver.request("GET", "/register/available",
                                      params={"username": alice.user_id[1:].split(":")[0]})
    assert (status, resp["errcode"]) == (400, "M_USER_IN_USE")


def test_deactivate_with_erase_redacts_for_later_members_only(homeserver):
    """Synapse's ``erase`` (GDPR erasure): after it, the user's messages are redacted for those who were not
    in the room when they were sent (sync, /messages, /event, /context), not for those who were; a
    non-boolean ``erase`` is refused."""
    creator, member, joiner = homeserver.register(), homeserver.register(), homeserver.register()
    room = creator.create_room(preset="public_chat")
    member.join(room)
    message = creator.send(room, "body1")
    joiner.join(room)
    status, resp = creator.request("POST", "/account/deactivate", {"erase": "yes"})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")
    status, challenge = creator.request("POST", "/account/deactivate", {"erase": True})
    creator.ok("POST", "/account/deactivate", {"erase": True, "auth": password_auth(creator, challenge["session"])})

    def seen_by(user) -> list[dict]:
        timeline = user.sync()["rooms"]["join"][room]["timeline"]["events"]
        paged = user.messages(room, dir="b", limit=50)["chunk"]
        single = user.ok("GET", f"/rooms/{q(room)}/event/{q(message)}")
        context = user.ok("GET", f"/rooms/{q(room)}/context/{q(message)}", params={"limit": 2})["event"]
        return [e["content"] for e in timeline + paged if e["event_id"] == message] + [single["content"],
                                                                                       context["content"]]

    assert [c.get("body") for c in seen_by(member)] == ["body1"] * 4
    assert seen_by(joiner) == [{}] * 4


def test_erasure_in_an_initial_sync_of_several_rooms_follows_each_room(homeserver):
    """An initial sync looks up the erased senders of all its rooms at once (services/sync.py); each room's
    timeline is still redacted by when the reader joined that room."""
    creator, reader = homeserver.register(), homeserver.register()
    early, late = creator.create_room(preset="public_chat"), creator.create_room(preset="public_chat")
    reader.join(early)
    kept, hidden = creator.send(early, "kept"), creator.send(late, "hidden")
    reader.join(late)
    status, challenge = creator.request("POST", "/account/deactivate", {"erase": True})
    creator.ok("POST", "/account/deactivate", {"erase": True, "auth": password_auth(creator, challenge["session"])})
    joined = reader.sync()["rooms"]["join"]
    content = {e["event_id"]: e["content"] for room in (early, late) for e in joined[room]["timeline"]["events"]}
    assert content[kept].get("body") == "kept" and content[hidden] == {}


# -- devices ---------------------------------------------------------------------------------

def test_devices_list_get_rename_delete(homeserver):
    alice = homeserver.register()
    tablet = homeserver.login(alice.user_id, initial_device_display_name="tablet")
    devices = {d["device_id"]: d for d in alice.ok("GET", "/devices")["devices"]}
    assert set(devices) == {alice.device_id, tablet.device_id}
    assert devices[tablet.device_id]["display_name"] == "tablet"
    assert "last_seen_ts" in devices[tablet.device_id]

    assert alice.ok("PUT", f"/devices/{tablet.device_id}", {"display_name": "old tablet"}) == {}
    assert alice.ok("GET", f"/devices/{tablet.device_id}")["display_name"] == "old tablet"
    status, resp = alice.request("GET", "/devices/NOSUCHDEVICE")
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")
    status, resp = alice.request("PUT", "/devices/NOSUCHDEVICE", {"display_name": "x"})
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")

    # another user's device is not visible
    bob = homeserver.register()
    assert bob.request("GET", f"/devices/{tablet.device_id}")[0] == 404

    path = f"/devices/{tablet.device_id}"
    status, challenge = alice.request("DELETE", path, {})
    assert status == 401 and {"stages": ["m.login.password"]} in challenge["flows"]
    assert tablet.ok("GET", "/account/whoami")["device_id"] == tablet.device_id  # not deleted yet
    assert alice.ok("DELETE", path, {"auth": password_auth(alice, challenge["session"])}) == {}
    status, resp = tablet.request("GET", "/account/whoami")
    assert (status, resp["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert alice.request("GET", path)[0] == 404
    assert [d["device_id"] for d in alice.ok("GET", "/devices")["devices"]] == [alice.device_id]


def test_delete_devices_bulk(homeserver):
    alice = homeserver.register()
    others = [homeserver.login(alice.user_id) for _ in range(2)]
    body = {"devices": [u.device_id for u in others]}
    status, challenge = alice.request("POST", "/delete_devices", body)
    assert status == 401
    # another user's password: a wrong password is a stage to retry (401), a right one a plain 403 (as Synapse)
    eve = homeserver.register()
    status, again = alice.request("POST", "/delete_devices", body | {"auth": password_auth(
        eve, challenge["session"], password="wrong")})
    assert (status, again["errcode"], again["session"]) == (401, "M_FORBIDDEN", challenge["session"])
    status, refused = alice.request("POST", "/delete_devices", body | {"auth": password_auth(eve, challenge["session"])})
    assert (status, refused["errcode"]) == (403, "M_FORBIDDEN") and "flows" not in refused
    body["auth"] = password_auth(alice, challenge["session"])
    assert alice.ok("POST", "/delete_devices", body) == {}
    for other in others:
        assert other.request("GET", "/account/whoami")[0] == 401
    assert [d["device_id"] for d in alice.ok("GET", "/devices")["devices"]] == [alice.device_id]


# -- user-interactive auth: sessions, stages, the failed-attempt limiter (issue 13) ---------------

def test_uia_sessions_are_bounded_per_user_and_bound_to_their_owner(homeserver):
    """Spec "User-Interactive Authentication API": the server makes up session ids, so an unknown one is
    refused (400), and a user's live sessions are bounded (the oldest goes): six password-change
    challenges leave the first one unknown."""
    alice, bob = homeserver.register(), homeserver.register()
    body = {"new_password": "new password 3"}
    sessions = []
    for _ in range(6):
        status, challenge = alice.request("POST", "/account/password", body)
        assert status == 401, challenge
        sessions.append(challenge["session"])
    assert len(set(sessions)) == 6 and all(len(s) <= 32 for s in sessions)

    status, resp = alice.request("POST", "/account/password", {**body, "auth": password_auth(alice, sessions[0])})
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN"), resp
    status, resp = alice.request("POST", "/account/password", {**body, "auth": password_auth(alice, "x" * 10_000)})
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN"), resp
    assert "x" * 100 not in resp["error"]
    # another user's session is unknown to bob, whatever he sends with it
    status, resp = bob.request("POST", "/account/password", {**body, "auth": password_auth(bob, sessions[-1])})
    assert (status, resp["errcode"]) == (400, "M_UNKNOWN"), resp
    assert alice.ok("POST", "/account/password", {**body, "auth": password_auth(alice, sessions[-1])}) == {}
    homeserver.login(alice.user_id, "new password 3")


def test_register_does_not_check_existing_users_passwords(homeserver):
    """/register offers no m.login.password stage (as Synapse): a password stage naming an existing user
    is refused the same way whether the password is right or wrong, so it is no guessing oracle."""
    alice = homeserver.register()
    answers = []
    for password in (PASSWORD, "wrong guess"):
        body = {"username": unique("oracle"), "password": PASSWORD,
                "auth": {"type": "m.login.password", "password": password,
                         "identifier": {"type": "m.id.user", "user": alice.user_id}}}
        status, resp = homeserver.request("POST", "/register", body)
        assert status == 401 and "access_token" not in resp, resp
        answers.append((resp["completed"], resp.get("errcode"), resp.get("error")))
    assert answers[0] == answers[1] == ([], "M_UNRECOGNIZED", answers[0][2]), answers


LOCKOUT = {"rc_login": {"address": {"per_second": 10000, "burst_count": 100000},
                        "account": {"per_second": 10000, "burst_count": 100000},
                        "failed_attempts": {"per_second": 0.001, "burst_count": 3}}}


def test_password_confirmation_shares_the_failed_login_limiter(homeserver_factory):
    """Wrong passwords in UIA count against rc_login.failed_attempts like /login ones; once it is spent,
    even the right password is refused (429) before it is checked, in UIA and at /login alike."""
    server = homeserver_factory(**LOCKOUT)
    alice = server.register()
    device = server.login(alice.user_id)
    path = f"/devices/{device.device_id}"
    status, challenge = alice.request("DELETE", path, {})
    session = challenge["session"]
    for _ in range(3):
        status, resp = alice.request("DELETE", path, {"auth": password_auth(alice, session, "wrong")})
        assert (status, resp["errcode"]) == (401, "M_FORBIDDEN"), resp
        session = resp["session"]
    status, resp = alice.request("DELETE", path, {"auth": password_auth(alice, session)})
    assert (status, resp["errcode"]) == (429, "M_LIMIT_EXCEEDED") and resp["retry_after_ms"] > 0, resp
    status, resp = server.request("POST", "/login", {"type": "m.login.password", "user": alice.user_id,
                                                     "password": PASSWORD})
    assert (status, resp["errcode"]) == (429, "M_LIMIT_EXCEEDED"), resp
    assert device.ok("GET", "/account/whoami")["device_id"] == device.device_id
    server.stop()


def test_failed_login_limiter_counts_failures_only_and_is_checked_first(homeserver_factory):
    """rc_login.failed_attempts: successful logins take nothing from it; after three failures the right
    password gets 429 too, so a locked-out guesser learns nothing and costs no password hash."""
    server = homeserver_factory(**LOCKOUT)
    alice = server.register()
    for _ in range(5):
        server.login(alice.user_id)
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id}}
    for _ in range(3):
        status, resp = server.request("POST", "/login", {**login, "password": "wrong"})
        assert (status, resp["errcode"]) == (403, "M_FORBIDDEN"), resp
    for password in ("wrong", PASSWORD):
        status, resp = server.request("POST", "/login", {**login, "password": password})
        assert (status, resp["errcode"]) == (429, "M_LIMIT_EXCEEDED"), resp
    bob = server.register()  # another account is not locked out
    server.login(bob.user_id)
    server.stop()


# -- passwords longer than bcrypt reads (72 bytes) ----------------------------------------------------

def test_passwords_over_72_bytes_are_refused(homeserver):
    """bcrypt reads 72 bytes: a longer password is refused when set (400 M_WEAK_PASSWORD: /register, the
    shared-secret API, password change), and matches no account at /login; 72 bytes work."""
    too_long = ["x" * 73, "é" * 37]  # 73 and 74 bytes
    for password in too_long:
        body = {"username": unique("long"), "password": password, "auth": {"type": "m.login.dummy"}}
        status, resp = homeserver.request("POST", "/register", body)
        assert (status, resp["errcode"]) == (400, "M_WEAK_PASSWORD"), resp
    result = homeserver.shared_secret_register(unique("long"), password=too_long[0])
    assert (result["status"], result["body"]["errcode"]) == (400, "M_WEAK_PASSWORD"), result

    exact = "y" * 70 + "é"  # 72 bytes
    alice = homeserver.register(password=exact)
    homeserver.login(alice.user_id, exact)
    for password in (exact + "z", exact + "é"):
        status, resp = homeserver.request("POST", "/login", {"type": "m.login.password", "user": alice.user_id,
                                                             "password": password})
        assert (status, resp["errcode"]) == (403, "M_FORBIDDEN"), resp

    for password in too_long:
        status, resp = alice.request("POST", "/account/password", {"new_password": password,
                                                                   "auth": password_auth(alice)})
        assert (status, resp["errcode"]) == (400, "M_WEAK_PASSWORD"), resp
    homeserver.login(alice.user_id, exact)


# -- access tokens at rest --------------------------------------------------------------------------

def test_access_tokens_are_stored_hashed_and_clear_ones_migrated(homeserver_factory):
    """The database holds the SHA-256 of each access token, never the token; a database whose tokens are
    still in clear (accounts schema version 1) has them hashed at start-up, and they keep working."""
    server = homeserver_factory()
    alice, bob = server.register(), server.register()
    hashes = {r[0] for r in database_rows(server, "SELECT token_hash FROM access_tokens")}
    assert hashlib.sha256(alice.token.encode()).hexdigest() in hashes
    assert not {alice.token, bob.token} & hashes

    server.stop()  # back to version 1: the tokens in clear, in a column named token
    database_rows(server, "ALTER TABLE access_tokens RENAME COLUMN token_hash TO token")
    for user in (alice, bob):
        database_rows(server, "UPDATE access_tokens SET token = ? WHERE token = ?",
                      (user.token, hashlib.sha256(user.token.encode()).hexdigest()))
    database_rows(server, "DROP INDEX users_lower_user_id")  # added by version 3
    database_rows(server, "UPDATE schema_versions SET version = 1 WHERE domain = 'accounts'")
    assert {alice.token, bob.token} <= {r[0] for r in database_rows(server, "SELECT token FROM access_tokens")}
    server.start()
    for user in (alice, bob):
        assert user.ok("GET", "/account/whoami")["user_id"] == user.user_id
    hashes = {r[0] for r in database_rows(server, "SELECT token_hash FROM access_tokens")}
    assert {hashlib.sha256(u.token.encode()).hexdigest() for u in (alice, bob)} <= hashes
    assert not {alice.token, bob.token} & hashes
    assert alice.ok("POST", "/logout", {}) == {}
    assert alice.request("GET", "/account/whoami")[0] == 401
    server.stop()


def test_no_secret_reaches_the_log(homeserver):
    """Passwords (right, wrong, too long, new), access tokens and the shared-secret API's fields appear in
    no line of the server's log, whatever the request's outcome (a guard: nothing logs them today)."""
    secrets = ["pw-register-0xC0FFEE", "pw-wrong-0xBADBAD", "pw-new-0xFACADE", "pw-long-" + "L" * 70]
    alice = homeserver.register(password=secrets[0])
    homeserver.request("POST", "/login", {"type": "m.login.password", "user": alice.user_id, "password": secrets[1]})
    homeserver.request("POST", "/login", {"type": "m.login.password", "user": alice.user_id, "password": secrets[3]})
    laptop = homeserver.login(alice.user_id, secrets[0])
    alice.request("POST", "/account/password", {"new_password": secrets[3], "auth": password_auth(alice)})
    alice.ok("POST", "/account/password", {"new_password": secrets[2], "auth": password_auth(alice)})
    admin = homeserver.shared_secret_register(unique("admin"), password="pw-admin-0xDEC0DE")["body"]
    homeserver.request("GET", "/account/whoami", params={"access_token": admin["access_token"]})
    log = homeserver.log(tail=100_000)
    for secret in secrets + ["pw-admin-0xDEC0DE", alice.token, laptop.token, admin["access_token"],
                             homeserver.config["registration_shared_secret"]]:
        assert secret not in log, secret

"""Error paths over real HTTP: each with its spec errcode and HTTP status.

Spec v1.19 client-server "API Standards" (standard error response, common
error codes, rate limiting), "Client Authentication" (access tokens),
"Size limits" (65536-byte events).
"""

from __future__ import annotations

from tests.integration.harness import q, unique


def test_invalid_json_body(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    for raw in (b"{not json", b"", b"\xff\xfe", b'{"a": NaN}'):
        status, resp = alice.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique()}", raw)
        assert (status, resp["errcode"]) == (400, "M_NOT_JSON"), raw
    status, resp = homeserver.request("POST", "/login", b"login please")
    assert (status, resp["errcode"]) == (400, "M_NOT_JSON")
    assert alice.messages(room, dir="b", limit=50)["chunk"][0]["type"] != "m.room.message"


def test_wrong_types(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    cases = [
        ("POST", "/createRoom", {"name": 5}),
        ("POST", "/createRoom", {"initial_state": {"type": "x"}}),
        ("POST", "/createRoom", ["not", "an", "object"]),
        ("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique()}", ["a list"]),
        ("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": ["x"]}),
        ("PUT", f"/rooms/{q(room)}/state/m.room.member/{q(alice.user_id)}", {"membership": 7}),
        ("POST", f"/rooms/{q(room)}/leave", {"reason": 3}),
        ("POST", f"/user/{q(alice.user_id)}/filter", {"room": {"timeline": {"limit": "ten"}}}),
        ("PUT", f"/devices/{alice.device_id}", {"display_name": 12}),
    ]
    for method, path, body in cases:
        status, resp = alice.request(method, path, body)
        assert (status, resp["errcode"]) == (400, "M_BAD_JSON"), (method, path, body, resp)


def test_missing_and_unknown_token(homeserver):
    status, resp = homeserver.request("GET", "/account/whoami")
    assert (status, resp["errcode"]) == (401, "M_MISSING_TOKEN")
    status, resp = homeserver.request("GET", "/sync", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert (status, resp["errcode"]) == (401, "M_MISSING_TOKEN")
    status, resp = homeserver.request("GET", "/account/whoami", token="syt_not_a_real_token")
    assert (status, resp["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert resp.get("soft_logout", False) is False
    status, resp = homeserver.request("POST", "/createRoom", {}, params={"access_token": "nope"})
    assert (status, resp["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    # the query parameter works as well as the header
    alice = homeserver.register()
    status, resp = homeserver.request("GET", "/account/whoami", params={"access_token": alice.token})
    assert (status, resp["user_id"]) == (200, alice.user_id)


def test_forbidden_power_level_change(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat", room_version="11")
    bob.join(room)
    power = alice.ok("GET", f"/rooms/{q(room)}/state/m.room.power_levels/")
    hijack = dict(power, users=dict(power["users"], **{bob.user_id: 100}))
    status, resp = bob.request("PUT", f"/rooms/{q(room)}/state/m.room.power_levels/", hijack)
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    assert alice.ok("GET", f"/rooms/{q(room)}/state/m.room.power_levels/") == power
    # the admin may raise bob, but not above herself
    alice.put_state(room, "m.room.power_levels", dict(power, users=dict(power["users"], **{bob.user_id: 50})))
    status, resp = bob.request("PUT", f"/rooms/{q(room)}/state/m.room.power_levels/",
                               dict(power, users=dict(power["users"], **{bob.user_id: 100})))
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")


def test_oversize_event(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    before = alice.messages(room, dir="b", limit=1)["chunk"][0]["event_id"]
    big = {"msgtype": "m.text", "body": "x" * 70_000}
    status, resp = alice.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique()}", big)
    assert (status, resp["errcode"]) == (413, "M_TOO_LARGE")
    status, resp = alice.request("PUT", f"/rooms/{q(room)}/state/org.example.big/", {"blob": "y" * 70_000})
    assert (status, resp["errcode"]) == (413, "M_TOO_LARGE")
    assert alice.messages(room, dir="b", limit=1)["chunk"][0]["event_id"] == before
    assert alice.request("GET", f"/rooms/{q(room)}/state/org.example.big/")[0] == 404
    # just under the limit is fine
    assert alice.send(room, "z" * 60_000)


def test_unknown_endpoint_and_wrong_method(homeserver):
    alice = homeserver.register()
    for path in ("/_matrix/client/v3/no_such_thing", "/_matrix/client/v3/rooms", "/nope",
                 "/_matrix/client/v9/sync"):
        status, resp = alice.request("GET", path)
        assert (status, resp["errcode"]) == (404, "M_UNRECOGNIZED"), path
    for method, path in (("GET", "/createRoom"), ("DELETE", "/sync"), ("POST", "/_matrix/client/versions"),
                         ("PUT", "/login")):
        status, resp = alice.request(method, path, {} if method != "GET" else None)
        assert (status, resp["errcode"]) == (405, "M_UNRECOGNIZED"), (method, path)
    status, _ = alice.request("OPTIONS", "/createRoom")
    assert status in (200, 204)


def test_rate_limit(homeserver_factory):
    """A server with the default rc_message (0.2/s, burst 10) throttles a burst of messages."""
    server = homeserver_factory(throttled=True)
    alice = server.register()
    room = alice.create_room()
    statuses, limited = [], None
    for i in range(30):
        status, resp = alice.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique()}",
                                     {"msgtype": "m.text", "body": f"burst {i}"})
        statuses.append(status)
        if status == 429:
            limited = resp
            break
    assert limited is not None, statuses
    assert limited["errcode"] == "M_LIMIT_EXCEEDED"
    assert isinstance(limited["retry_after_ms"], int) and 0 < limited["retry_after_ms"] <= 10_000
    assert set(statuses[:-1]) == {200} and len(statuses) >= 10
    sent = [e for e in alice.messages(room, dir="b", limit=50)["chunk"] if e["type"] == "m.room.message"]
    assert len(sent) == len(statuses) - 1  # the refused one was not stored
    server.stop()

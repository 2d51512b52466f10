"""Hostile request bodies and query strings over real HTTP: 400s, never 500s, and nothing stored that
breaks a later response. Spec v1.19 client-server "API standards" (JSON in UTF-8, M_NOT_JSON/M_BAD_JSON).
"""

from __future__ import annotations

import json

import pytest

from tests.integration.harness import q, unique


@pytest.fixture(scope="module")
def alice(homeserver):
    return homeserver.register()


def _account_data(user, raw: bytes) -> tuple[int, dict]:
    return user.request("PUT", f"/user/{q(user.user_id)}/account_data/org.example.{unique()}", raw)


def _error(answer) -> tuple[int, str]:
    status, body = answer
    return status, body.get("errcode") if isinstance(body, dict) else body


def test_deep_nesting_is_refused(alice):
    for depth in (150, 100_000):
        raw = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
        assert _error(_account_data(alice, raw)) == (400, "M_BAD_JSON"), depth
    shallow = b'{"a": ' + b"[" * 90 + b"]" * 90 + b"}"
    assert _account_data(alice, shallow)[0] == 200
    deep_filter = '{"room": {"x": ' + "[" * 1500 + "]" * 1500 + "}}"
    assert _error(alice.request("GET", "/sync", params={"filter": deep_filter, "timeout": 0})) == (400, "M_BAD_JSON")


def test_lone_surrogates_are_refused_and_sync_keeps_working(alice):
    for raw in (b'{"a": "\\ud800"}', b'{"a": "x\\uDFFFy"}', b'{"\\udbff": 1}', b'{"a": ["\\ud83d"]}'):
        assert _error(_account_data(alice, raw)) == (400, "M_BAD_JSON"), raw
    kind = f"org.example.{unique()}"
    assert alice.request("PUT", f"/user/{q(alice.user_id)}/account_data/{kind}", b'{"a": "\\ud83d\\ude00"}')[0] == 200
    assert alice.ok("GET", f"/user/{q(alice.user_id)}/account_data/{kind}") == {"a": "\U0001F600"}
    assert "next_batch" in alice.sync()


def test_duplicate_keys_are_refused(alice):
    for raw in (b'{"a": 1, "a": 2}', b'{"x": {"b": true, "c": 1, "b": false}}'):
        assert _error(_account_data(alice, raw)) == (400, "M_BAD_JSON"), raw
    room = alice.create_room()
    status, body = alice.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique()}",
                                 b'{"msgtype": "m.text", "body": "a", "body": "b"}')
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")


def test_only_utf8_bodies_are_json(alice):
    text = json.dumps({"a": "é"}, ensure_ascii=False)
    for encoding in ("utf-16", "utf-16-le", "utf-32", "utf-32-be", "latin-1"):
        assert _error(_account_data(alice, text.encode(encoding))) == (400, "M_NOT_JSON"), encoding
    assert _error(_account_data(alice, b"\xef\xbb\xbf" + text.encode())) == (400, "M_NOT_JSON")  # BOM
    assert _account_data(alice, text.encode())[0] == 200


def test_query_parameters_must_be_utf8(homeserver, alice):
    assert _error(alice.request("GET", "/publicRooms?%FF=1")) == (400, "M_INVALID_PARAM")
    assert _error(alice.request("GET", "/publicRooms?server=%C3%28")) == (400, "M_INVALID_PARAM")
    assert _error(homeserver.request("GET", "/register/available?username=%FF")) == (400, "M_INVALID_PARAM")


def test_secret_query_parameters_are_not_logged(homeserver, alice):
    secret = unique("regtoken")
    homeserver.request("GET", "/register/m.login.registration_token/validity", params={"token": secret})
    # a percent-encoded parameter name is still the access token
    status, body = homeserver.request("GET", "/account/whoami?acc%65ss_token=" + alice.token)
    assert (status, body.get("user_id")) == (200, alice.user_id)
    assert homeserver.request("GET", "/account/whoami", params={"access_token": alice.token})[0] == 200
    log = homeserver.log(tail=2000)
    assert "validity?token=<redacted>" in log
    assert secret not in log and alice.token not in log

"""What the client-server fuzzing found, each as a real request to a real server (issue 13).

Each answered 500, or was accepted and then broke the federation queue in the background;
now each is a 4xx with the spec's errcode (or 502 when a remote server does not answer).
"""

from __future__ import annotations

import time

import pytest

from tests.fuzz.driver import log_size, log_tracebacks
from tests.integration.harness import free_port, q


@pytest.fixture(scope="module")
def alice(homeserver):
    return homeserver.register()


@pytest.fixture
def no_traceback(homeserver):
    """The test's requests leave no traceback in the server's log."""
    offset = log_size(homeserver)
    yield
    with open(homeserver.log_path, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        assert not log_tracebacks(f.read())


@pytest.mark.parametrize("body", [{"invite": ["not-a-user"]}, {"invite": ["@x:bad host"]}, {"invite": ["@x"]}])
def test_create_room_refuses_invitees_that_are_not_user_ids(alice, no_traceback, body):
    status, resp = alice.request("POST", "/createRoom", body)
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp


@pytest.mark.parametrize("state_key", ["abc", "", "@nohost", "@x:bad host"])
def test_membership_state_key_must_be_a_user_id(alice, no_traceback, state_key):
    room_id = alice.create_room()
    status, resp = alice.request("PUT", f"/rooms/{q(room_id)}/state/m.room.member/{q(state_key)}",
                                 {"membership": "invite"})
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp


@pytest.mark.parametrize("user_id", ["@:", "@x:bad host", "@x:", "x:y"])
def test_membership_targets_follow_the_user_id_grammar(alice, no_traceback, user_id):
    room_id = alice.create_room()
    for action in ("invite", "kick", "ban", "unban"):
        status, resp = alice.request("POST", f"/rooms/{q(room_id)}/{action}", {"user_id": user_id})
        assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), (action, resp)


def test_invite_to_a_server_that_does_not_answer(alice, no_traceback):
    room_id = alice.create_room()
    status, resp = alice.request("POST", f"/rooms/{q(room_id)}/invite",
                                 {"user_id": f"@bob:localhost:{free_port()}"})
    assert (status, resp["errcode"]) == (502, "M_UNKNOWN"), resp
    assert "localhost" in resp["error"] and "refused" not in resp["error"].lower()  # no connection error echoed


@pytest.mark.parametrize("body", [{"filter": True}, {"filter": {"generic_search_term": 5}}, {"since": False},
                                  {"since": 7}, {"limit": -1}, {"limit": "5"}, {"limit": True}])
def test_public_rooms_body_types(alice, no_traceback, body):
    alice.create_room(visibility="public", name="listed")
    status, resp = alice.request("POST", "/publicRooms", body)
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON"), resp


def test_public_rooms_of_a_malformed_server_name(alice, no_traceback):
    status, resp = alice.request("GET", "/publicRooms", params={"server": "bad\\name"})
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp


@pytest.mark.parametrize("ts", ["-14064005247578375454720", str(2 ** 63)])
def test_timestamp_out_of_range(alice, no_traceback, ts):
    room_id = alice.create_room()
    status, resp = alice.request("GET", f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event",
                                 params={"ts": ts, "dir": "f"})
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp
    status, resp = alice.request("GET", f"/rooms/{q(room_id)}/messages", params={"limit": ts, "dir": "b"})
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp


def test_nul_in_path_and_query_parameters(alice, no_traceback):
    """Found fuzzing on PostgreSQL (its text cannot hold U+0000): these were 500s there."""
    room_id = alice.create_room()
    for path, params in ((f"/rooms/{q(room_id)}/event/{q('$a' + chr(0))}", None),
                         (f"/rooms/{q('!a' + chr(0) + ':x')}/messages", None),
                         (f"/user/{q(alice.user_id)}/account_data/{q('a' + chr(0))}", None),
                         (f"/rooms/{q(room_id)}/messages", {"from": chr(0), "dir": "b"})):
        status, resp = alice.request("GET", path, params=params)
        assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), (path, resp)


def test_nul_in_stored_text(homeserver, alice, no_traceback):
    """PostgreSQL refuses U+0000 in text columns: a 400 there (SQLite stores it), never a 500; a message
    holding one is still sent and searchable, and does not keep the messages indexed with it out of search."""
    postgres = homeserver.config["database"]["name"] == "psycopg2"
    for method, path, body in (("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "a\x00"}),
                               ("PUT", f"/devices/{q(alice.device_id)}", {"display_name": "a\x00"}),
                               ("POST", "/createRoom", {"room_alias_name": "a\x00b"})):
        status, resp = alice.request(method, path, body)
        assert (status, resp.get("errcode")) == ((400, "M_INVALID_PARAM") if postgres else (200, None)), (path, resp)
    room_id = alice.create_room(name="nul\x00name")
    alice.send(room_id, "needle\x00one")
    alice.send(room_id, "needle two")
    query = {"search_categories": {"room_events": {"search_term": "needle", "filter": {"rooms": [room_id]}}}}
    deadline = time.monotonic() + 10
    while (count := alice.ok("POST", "/search", query)["search_categories"]["room_events"]["count"]) < 2:
        assert time.monotonic() < deadline, count
        time.sleep(0.05)


@pytest.mark.parametrize("version", ["1\u00b2", "9" * 30])
def test_key_backup_version_that_is_no_integer(alice, no_traceback, version):
    """Found by the fuzzer: ``"1²".isdigit()`` holds but int() refuses it, a 500."""
    room_id = alice.create_room()
    for method, path, body in (("PUT", f"/room_keys/keys/{q(room_id)}", {"sessions": {}}),
                               ("GET", "/room_keys/keys", None), ("GET", f"/room_keys/version/{q(version)}", None)):
        status, resp = alice.request(method, path, body, params=None if "version/" in path else {"version": version})
        assert (status, resp["errcode"]) == (404, "M_NOT_FOUND"), (method, path, resp)


@pytest.mark.parametrize("token", ["1\u00b2", "9" * 30])
def test_pagination_and_filter_ids_that_are_no_64_bit_integers(alice, no_traceback, token):
    """Like the key backup versions: what isdigit() accepts but int() or the database refuses was a 500."""
    room_id = alice.create_room()
    event_id = alice.send(room_id, "root")
    for path in (f"/_matrix/client/v1/rooms/{q(room_id)}/relations/{q(event_id)}",
                 f"/_matrix/client/v1/rooms/{q(room_id)}/threads"):
        status, resp = alice.request("GET", path, params={"from": token})
        assert status == 200, (path, resp)
    status, resp = alice.request("GET", "/sync", params={"filter": token})
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp
    status, resp = alice.request("GET", f"/user/{q(alice.user_id)}/filter/{q(token)}")
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND"), resp

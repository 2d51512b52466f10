"""Every server-server operation of the spec's OpenAPI fuzzed against a running Hexagone (issue 13).

The server under test (``home``) federates over TLS with a second Hexagone (``peer``) whose user
joined a room on ``home``; the fuzzer signs requests as ``peer`` with its real key (``home`` fetches
that key from ``peer``), so authenticated operations pass the signature check and path parameters
often name that room, one of its events, the peer's user. One request in three carries no
Authorization, a signature by another key, or a signature for another destination.
"""

from __future__ import annotations

import pytest
import requests
from hypothesis import strategies as st
from signedjson.key import generate_signing_key

from federation.request_auth import sign_request
from tests.fuzz.driver import (assert_clean, examples_per_operation, fuzz, json_or_none, log_size, prepare,
                               send_prepared)
from tests.fuzz.spec import load_schema
from tests.integration.harness import q

CI_EXAMPLES = 6
AUTH_MODES = ("signed", "signed", "signed", "signed", "none", "other key", "other destination")


def signed_header(key, origin: str, destination: str, request) -> str:
    """X-Matrix over the body as JSON; over no body when it is not JSON we can encode (the server
    must then refuse the signature cleanly)."""
    try:
        return sign_request(key, origin, destination, request.method, request.path_url, json_or_none(request.body))
    except ValueError:  # lone surrogates: no canonical JSON
        return sign_request(key, origin, destination, request.method, request.path_url)


def test_every_server_server_operation(federated_room):
    schema, total = load_schema("server-server")
    home, peer = federated_room.home, federated_room.peer
    real_values = {"roomId": [federated_room.room_id], "eventId": [federated_room.event_id],
                   "userId": [federated_room.guest.user_id, federated_room.owner.user_id],
                   "serverName": [home.name, peer.name], "queryType": ["profile", "directory"]}
    impostor = generate_signing_key(peer.signing_key.version)
    session = requests.Session()

    def send(case, draw):
        request = prepare(case, f"https://{home.name}", {})
        mode = draw(st.sampled_from(AUTH_MODES))
        if mode != "none":
            key = impostor if mode == "other key" else peer.signing_key
            destination = "elsewhere.example" if mode == "other destination" else home.name
            request.headers["Authorization"] = signed_header(key, peer.name, destination, request)
        return send_prepared(session, request, verify=home.ca_path)

    log_offset = log_size(home.process)
    report = fuzz(schema, send, examples=examples_per_operation(CI_EXAMPLES), real_values=real_values)
    assert_clean(report, home.process, log_offset, "server-server", total)


@pytest.mark.parametrize("body", [{"filter": True}, {"filter": {"generic_search_term": 5}}, {"since": False},
                                  {"limit": -1}, {"limit": "5"}])
def test_public_rooms_body_types(federated_room, body):
    """Found by the fuzzer: a non-string since or search term was a 500."""
    status, resp = federated_room.signed("POST", "/_matrix/federation/v1/publicRooms", body)
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON"), resp


def test_timestamp_out_of_range(federated_room):
    """Found by the fuzzer (client API, the same query parser): a ts beyond 64 bits was a 500."""
    path = f"/_matrix/federation/v1/timestamp_to_event/{q(federated_room.room_id)}?dir=f&ts={2 ** 70}"
    status, resp = federated_room.signed("GET", path)
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp


def test_nul_in_event_ids(federated_room):
    """Found fuzzing on PostgreSQL (its text cannot hold U+0000): a NUL in an event id looked up was a 500."""
    path = f"/_matrix/federation/v1/get_missing_events/{q(federated_room.room_id)}"
    status, resp = federated_room.signed("POST", path, {"latest_events": ["$a\x00"], "earliest_events": [],
                                                        "limit": 10})
    assert status < 500 and (status == 200 or resp["errcode"].startswith("M_")), resp
    status, resp = federated_room.signed("GET", f"/_matrix/federation/v1/event/{q('$a' + chr(0))}")
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM"), resp

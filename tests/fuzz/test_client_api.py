"""Every client-server operation of the spec's OpenAPI fuzzed against a running Hexagone (issue 13).

Cases come from schemathesis (see ``driver.py``); requests carry the access token of a registered
user (three in four of them) and path parameters are often a room that user created, its alias,
one of its events, its device. ``HEXAGONE_FUZZ_EXAMPLES`` raises the number of cases per operation.
"""

from __future__ import annotations

import requests
from hypothesis import strategies as st

from tests.fuzz.driver import assert_clean, examples_per_operation, fuzz, log_size, prepare, send_prepared
from tests.fuzz.spec import load_schema
from tests.integration.harness import SERVER_NAME, unique

CI_EXAMPLES = 6
# Operations that end the user's session or membership run after the others.
RUN_LAST = ("/kick", "/ban", "/upgrade", "/leave", "/forget", "/deactivate", "/logout")


def test_every_client_server_operation(homeserver):
    schema, total = load_schema("client-server")
    user = homeserver.register()
    other = homeserver.register()
    alias = f"#{unique('fuzz')}:{SERVER_NAME}"
    room_id = user.create_room(preset="public_chat", room_alias_name=alias[1:].split(":")[0])
    user.invite(room_id, other)
    event_id = user.send(room_id, "fuzz me")
    filter_id = user.ok("POST", f"/user/{user.user_id}/filter", {"room": {"timeline": {"limit": 5}}})["filter_id"]
    real_values = {"roomId": [room_id], "roomIdOrAlias": [room_id, alias], "roomAlias": [alias],
                   "userId": [user.user_id, other.user_id], "eventId": [event_id], "deviceId": [user.device_id],
                   "serverName": [SERVER_NAME], "filterId": [filter_id],
                   "eventType": ["m.room.message", "m.room.name"], "stateKey": ["", other.user_id]}
    session = requests.Session()

    def send(case, draw):
        token = draw(st.sampled_from([user.token, user.token, user.token, None]))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return send_prepared(session, prepare(case, homeserver.base_url, headers))

    log_offset = log_size(homeserver)
    report = fuzz(schema, send, examples=examples_per_operation(CI_EXAMPLES), real_values=real_values,
                  last=RUN_LAST)
    assert_clean(report, homeserver, log_offset, "client-server", total)

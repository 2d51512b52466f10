"""Malformed PDUs in PUT /send/{txnId}, from a peer that is in the room, are rejected cleanly (issue 13).

Cases come from ``pdus.malformed_transaction``. Each answer must be a 200 whose per-PDU results are
``{}`` or an ``error`` that is not an internal one, or a 4xx with an ``M_`` errcode; the server must
log no traceback, stay up, and still accept a well-formed PDU from the same peer afterwards.
"""

from __future__ import annotations

import itertools
import json
import time

import requests
from hypothesis import HealthCheck, Phase, given, settings

from federation.request_auth import sign_request
from homeserver.events.builder import build_event
from homeserver.events.hashing import compute_event_id, strip_convenience_keys
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.fuzz.driver import REQUEST_TIMEOUT_S, examples_per_operation, log_size, log_tracebacks
from tests.fuzz.pdus import malformed_transaction
from tests.integration.harness import q

CI_EXAMPLES = 80


def room_pdu_factory(room):
    """A function making fresh well-formed, signed message PDUs from the peer's user in the room."""
    status, body = room.signed("GET", f"/_matrix/federation/v1/state/{q(room.room_id)}?event_id={q(room.event_id)}")
    assert status == 200, body
    state = {(p["type"], p.get("state_key")): p for p in body["pdus"]}
    create = state[("m.room.create", "")]
    version = KNOWN_ROOM_VERSIONS[create["content"].get("room_version", "1")]
    auth_keys = [("m.room.power_levels", ""), ("m.room.member", room.guest.user_id)]
    if not version.room_id_from_create_event:
        auth_keys.append(("m.room.create", ""))
    ids = {key: _event_id(state[key], version) for key in auth_keys}
    counter = itertools.count()

    def make() -> dict:
        pdu = build_event(version, server_name=room.peer.name, signing_key=room.peer.signing_key,
                          room_id=room.room_id, sender=room.guest.user_id, event_type="m.room.message",
                          content={"msgtype": "m.text", "body": f"fuzz {next(counter)}"},
                          prev_events=[room.event_id], auth_events=list(ids.values()), depth=100,
                          origin_server_ts=int(time.time() * 1000))
        return strip_convenience_keys(pdu, version)
    return make, version


def _event_id(pdu: dict, version) -> str:
    return pdu["event_id"] if version.event_id_in_pdu else compute_event_id(pdu, version)


def send_raw(room, session, txn_id: str, raw: bytes) -> requests.Response:
    path = f"/_matrix/federation/v1/send/{txn_id}"
    try:
        content = json.loads(raw)
        header = sign_request(room.peer.signing_key, room.peer.name, room.home.name, "PUT", path, content)
    except Exception:  # not JSON to us either: signed without a body, the server must still answer cleanly
        header = sign_request(room.peer.signing_key, room.peer.name, room.home.name, "PUT", path)
    return session.put(f"https://{room.home.name}{path}", data=raw, timeout=REQUEST_TIMEOUT_S,
                       headers={"Authorization": header, "Content-Type": "application/json"}, verify=room.home.ca_path)


def clean_answer(response: requests.Response) -> str | None:
    """None if the answer is a clean acceptance or refusal, else what is wrong with it."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500 or not isinstance(body, dict):
        return f"{response.status_code} {response.text[:300]!r}"
    if response.status_code != 200:
        errcode = body.get("errcode")
        return None if isinstance(errcode, str) and errcode.startswith("M_") else f"no M_ errcode: {body!r:.300}"
    results = body.get("pdus")
    if not isinstance(results, dict):
        return f"200 without per-PDU results: {body!r:.300}"
    for event_id, result in results.items():
        error = result.get("error") if isinstance(result, dict) else "not an object"
        if error is not None and (not isinstance(error, str) or error.startswith("internal error")):
            return f"PDU {event_id}: {error!r:.300}"
    return None


def test_malformed_pdus_are_rejected_cleanly(federated_room):
    room, session, txn_ids = federated_room, requests.Session(), itertools.count()
    make, version = room_pdu_factory(room)
    intact = make()
    response = send_raw(room, session, f"fuzz{next(txn_ids)}", json.dumps({
        "origin": room.peer.name, "origin_server_ts": 1, "pdus": [intact]}).encode())
    assert response.status_code == 200 and list(response.json()["pdus"].values()) == [{}], response.text

    log_offset, failures, seen = log_size(room.home.process), {}, {"cases": 0}

    @settings(max_examples=examples_per_operation(CI_EXAMPLES), database=None, deadline=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=malformed_transaction(make, version, room.peer.name, room.peer.signing_key))
    def run(case):
        seen["cases"] += 1
        try:
            problem = clean_answer(send_raw(room, session, f"fuzz{next(txn_ids)}", case.body))
        except requests.RequestException as e:
            problem = f"no answer: {type(e).__name__}: {e}"
        if problem is not None:
            failures.setdefault((problem[:40], case.how.split(";")[0]), f"{problem}\n    case: {case.how}\n    body: {case.body[:600]!r}")

    run()
    with open(room.home.process.log_path, encoding="utf-8", errors="replace") as f:
        f.seek(log_offset)
        tracebacks = log_tracebacks(f.read())
    print(f"{seen['cases']} malformed transactions, {len(failures)} unclean answers, {len(tracebacks)} tracebacks")
    assert room.home.process.process.poll() is None, "the server died"
    assert not failures and not tracebacks, "\n".join(list(failures.values()) + [str(t) for t in tracebacks])
    after = make()
    response = send_raw(room, session, "fuzz-after", json.dumps({
        "origin": room.peer.name, "origin_server_ts": 1, "pdus": [after]}).encode())
    assert response.status_code == 200 and list(response.json()["pdus"].values()) == [{}], response.text

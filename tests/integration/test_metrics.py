"""Prometheus metrics on a real process (Synapse's ``enable_metrics`` and ``metrics`` listener resource): after
some traffic, the metrics page shows requests and latencies per endpoint, database transaction times, events
persisted and the federation queue per destination; it is served nowhere else, nor when disabled."""

from __future__ import annotations

import http.client

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import register_admin, unique

LISTENER = {"type": "http", "tls": False, "bind_addresses": ["127.0.0.1"]}
DOWN = "127.0.0.1:9"  # a peer that refuses connections (the discard port, closed)


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _samples(port: int) -> dict[str, list]:
    status, text = _get(port, "/_synapse/metrics")
    assert status == 200, text
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        samples.setdefault(family.name, [])
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def test_metrics_show_requests_transactions_events_and_queues(monitored):
    server, port = monitored
    alice = server.register()
    room = alice.ok("POST", "/createRoom", {})["room_id"]
    for i in range(3):
        alice.ok("PUT", f"/rooms/{room}/send/m.room.message/{unique()}", {"msgtype": "m.text", "body": str(i)})
    alice.ok("PUT", f"/sendToDevice/m.test/{unique()}", {"messages": {f"@bob:{DOWN}": {"*": {"x": 1}}}})
    s = _samples(port)
    send = [x for x in s["synapse_http_server_requests_received_total"]
            if x.labels["servlet"].endswith("/rooms/{roomId}/send/{eventType}/{txnId}")]
    assert send and send[0].labels["method"] == "PUT" and send[0].value == 3
    times = [x for x in s["synapse_http_server_response_time_seconds_count"]
             if x.labels["servlet"] == "/_matrix/client/v3/createRoom"]
    assert times == [times[0]] and times[0].labels["code"] == "200" and times[0].value == 1
    assert sum(x.value for x in s["synapse_http_server_responses_total"] if x.labels["code"] == "200") >= 6
    assert sum(x.value for x in s["synapse_storage_transaction_time_count"]) > 5
    assert all(x.labels["desc"] for x in s["synapse_storage_transaction_time_count"])
    assert s["synapse_storage_events_persisted_events_total"][0].value >= 8  # the room's creation and messages
    local = {x.labels["type"]: x.value for x in s["synapse_storage_events_persisted_events_sep_total"]
             if x.labels["origin_type"] == "local"}
    assert local["m.room.message"] == 3 and local["m.room.create"] == 1
    assert {x.labels["destination"]: x.value for x in s["hexagone_federation_queue_depth"]}[DOWN] >= 1
    assert "hexagone_federation_rejected" in s  # the family, with no sample until a PDU or EDU is refused


def test_metrics_are_not_served_on_other_listeners(monitored):
    server, _port = monitored
    status, body = _get(server.port, "/_synapse/metrics")
    assert status == 404 and "M_UNRECOGNIZED" in body


def test_metrics_are_not_served_when_disabled(homeserver_factory):
    server = homeserver_factory(start=False)  # enable_metrics defaults to false
    server.config["listeners"] = [dict(LISTENER, port=server.port, resources=[{"names": ["client", "metrics"]}])]
    server._set_port(server.port)
    server.start()
    status, body = _get(server.port, "/_synapse/metrics")
    assert status == 404 and "M_UNRECOGNIZED" in body
    assert register_admin(server).user_id

"""The metrics registry (``homeserver/metrics.py``): counts kept per label value, events persisted told apart by
origin, federation gauges replaced on each refresh, all in the server's own registry."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from homeserver.metrics import Counter, Metrics

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class _Event:
    type: str
    sender: str


def _samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def test_a_counter_counts_per_value_and_exports():
    metrics = Metrics("hs.example:8448", export=True)
    assert [metrics.federation_rejected.inc("signature") for _ in range(2)] == [1, 2]
    assert metrics.federation_rejected.snapshot() == {"signature": 2}
    assert _samples(metrics)[("hexagone_federation_rejected_total", (("reason", "signature"),))] == 2
    assert Counter("unregistered", "reason").inc("x") == 1  # without a registry: counted, exported nowhere


def test_events_persisted_by_type_and_origin():
    metrics = Metrics("hs.example:8448", export=True)
    metrics.on_room_events([_Event("m.room.message", "@a:hs.example:8448"), _Event("m.room.message", "@b:other"),
                            _Event("m.room.member", "@a:hs.example:8448")])
    s = _samples(metrics)
    assert s[("synapse_storage_events_persisted_events_total", ())] == 3
    sep = "synapse_storage_events_persisted_events_sep_total"
    assert s[(sep, (("origin_type", "local"), ("type", "m.room.message")))] == 1
    assert s[(sep, (("origin_type", "remote"), ("type", "m.room.message")))] == 1


def test_federation_gauges_follow_the_latest_refresh():
    metrics = Metrics("hs.example", export=True)
    metrics.set_destinations([{"destination": "a.example", "queued": 3, "retry_interval": 4000, "latency_ms": None},
                              {"destination": "b.example", "queued": 0, "retry_interval": 0, "latency_ms": 25}])
    metrics.set_destinations([{"destination": "b.example", "queued": 1, "retry_interval": 0, "latency_ms": 30}])
    s = _samples(metrics)
    assert s[("hexagone_federation_queue_depth", (("destination", "b.example"),))] == 1
    assert s[("hexagone_federation_latency_seconds", (("destination", "b.example"),))] == 0.03
    assert ("hexagone_federation_queue_depth", (("destination", "a.example"),)) not in s


def test_requests_and_transactions():
    metrics = Metrics("hs.example", export=True)
    metrics.request_received("GET", "/_matrix/client/v3/sync")
    metrics.request_done("GET", "/_matrix/client/v3/sync", 200, 0.02)
    metrics.request_received("GET", None)
    metrics.request_done("GET", None, 404, 0.001)
    metrics.transaction_done("get_user", 0.003)
    s = _samples(metrics)
    assert s[("synapse_http_server_requests_received_total", (("method", "GET"), ("servlet", "unmatched")))] == 1
    assert s[("synapse_http_server_response_time_seconds_count",
              (("code", "200"), ("method", "GET"), ("servlet", "/_matrix/client/v3/sync")))] == 1
    assert s[("synapse_http_server_responses_total", (("code", "404"), ("method", "GET")))] == 1
    assert s[("synapse_storage_transaction_time_count", (("desc", "get_user"),))] == 1


def test_without_export_the_console_counts_are_kept_and_prometheus_is_not_loaded():
    """``enable_metrics: false`` (the default): no Prometheus registry, not even its library in memory."""
    code = ("import sys\n"
            "from homeserver.metrics import Metrics\n"
            "m = Metrics('hs.example')\n"
            "m.request_received('GET', None); m.request_done('GET', None, 200, 0.1); m.transaction_done('t', 0.1)\n"
            "m.set_destinations([{'destination': 'a', 'queued': 1, 'retry_interval': 0}])\n"
            "assert m.federation_rejected.inc('signature') == 1\n"
            "assert m.totals['requests'] == 1, m.totals\n"
            "assert 'prometheus_client' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)

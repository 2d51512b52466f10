"""Prometheus metrics through ``prometheus-client``, with Synapse's metric names where Synapse has the metric.

Built once by the composition root (no module-level state) and handed by constructor to what measures. The
counts the console charts are always kept; the Prometheus metrics, on a registry of their own, only when
``enable_metrics`` is on (they are served as text on a listener naming the ``metrics`` resource): otherwise
prometheus-client (1.2 MB) is not even imported, and a request costs no histogram.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

from twisted.internet import task

# Synapse's buckets for request and transaction times (seconds).
TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED = "unmatched"  # the servlet label of a request no route matched


class Counter:
    """A count per value of one label, only ever increasing, readable here for log lines; also a Prometheus
    counter when given a ``registry``."""

    def __init__(self, name: str, label: str, registry=None, documentation: str = ""):
        self.name = name
        self.label = label
        self._counts: dict[str, int] = {}
        self._metric = None
        if registry is not None:
            import prometheus_client
            self._metric = prometheus_client.Counter(name, documentation or name, [label], registry=registry)

    def inc(self, value: str) -> int:
        """Count one more for ``value``; returns the new count."""
        count = self._counts.get(value, 0) + 1
        self._counts[value] = count
        if self._metric is not None:
            self._metric.labels(value).inc()
        return count

    def get(self, value: str) -> int:
        return self._counts.get(value, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)


class _Exported:
    """The Prometheus metrics, in a registry of their own."""

    def __init__(self):
        import prometheus_client as prom
        self.prom = prom
        self.registry = reg = prom.CollectorRegistry(auto_describe=True)
        self.requests_received = prom.Counter(
            "synapse_http_server_requests_received", "Requests received, per method and endpoint",
            ["method", "servlet"], registry=reg)
        self.responses = prom.Counter(
            "synapse_http_server_responses", "Responses sent, per method and status code", ["method", "code"],
            registry=reg)
        self.response_time = prom.Histogram(
            "synapse_http_server_response_time_seconds", "Time to answer a request, per endpoint and status",
            ["method", "servlet", "code"], buckets=TIME_BUCKETS, registry=reg)
        self.transaction_time = prom.Histogram(
            "synapse_storage_transaction_time", "Database transaction time in seconds, per transaction name",
            ["desc"], buckets=TIME_BUCKETS, registry=reg)
        self.persisted_events = prom.Counter(
            "synapse_storage_events_persisted_events", "Room events persisted", registry=reg)
        self.persisted_events_sep = prom.Counter(
            "synapse_storage_events_persisted_events_sep", "Room events persisted, per type and origin",
            ["type", "origin_type"], registry=reg)
        self.queue_depth = prom.Gauge(
            "hexagone_federation_queue_depth", "PDUs and EDUs waiting to be sent, per destination",
            ["destination"], registry=reg)
        self.backoff = prom.Gauge(
            "hexagone_federation_backoff_seconds", "Current retry interval of a destination (0: reachable)",
            ["destination"], registry=reg)
        self.latency = prom.Gauge(
            "hexagone_federation_latency_seconds", "Round trip of the last transaction a destination accepted",
            ["destination"], registry=reg)


class Metrics:
    """Every metric of one server: HTTP requests, database transactions, events persisted, federation queues,
    federation rejections; exported to Prometheus when ``export``."""

    def __init__(self, server_name: str, export: bool = False):
        self._server_name = server_name
        self._exported = _Exported() if export else None
        self.federation_rejected = Counter(
            "hexagone_federation_rejected", "reason", self._exported.registry if export else None,
            "PDUs and EDUs refused from other servers, per reason")
        self.totals = {"requests": 0, "local_events": 0, "remote_events": 0}  # for TrafficHistory

    def request_received(self, method: str, servlet: str | None) -> None:
        self.totals["requests"] += 1
        if self._exported is not None:
            self._exported.requests_received.labels(method, servlet or UNMATCHED).inc()

    def request_done(self, method: str, servlet: str | None, code: int, seconds: float) -> None:
        if self._exported is not None:
            self._exported.responses.labels(method, str(code)).inc()
            self._exported.response_time.labels(method, servlet or UNMATCHED, str(code)).observe(seconds)

    def transaction_done(self, name: str, seconds: float) -> None:
        """Called on the database thread that ran the transaction (prometheus-client is thread-safe)."""
        if self._exported is not None:
            self._exported.transaction_time.labels(name).observe(seconds)

    def on_room_events(self, events) -> None:
        """Room event listener: each batch of newly persisted events, local or received."""
        exported = self._exported
        for event in events:
            local = event.sender.split(":", 1)[-1] == self._server_name
            self.totals["local_events" if local else "remote_events"] += 1
            if exported is not None:
                exported.persisted_events.inc()
                exported.persisted_events_sep.labels(event.type, "local" if local else "remote").inc()

    def set_destinations(self, destinations: Iterable[dict]) -> None:
        """The federation queues as the admin service reports them (``destination``, ``queued``,
        ``retry_interval`` and ``latency_ms`` in ms)."""
        exported = self._exported
        if exported is None:
            return
        for gauge in (exported.queue_depth, exported.backoff, exported.latency):
            gauge.clear()
        for d in destinations:
            exported.queue_depth.labels(d["destination"]).set(d["queued"])
            exported.backoff.labels(d["destination"]).set(d["retry_interval"] / 1000)
            if d.get("latency_ms") is not None:
                exported.latency.labels(d["destination"]).set(d["latency_ms"] / 1000)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type (only when exported)."""
        prom = self._exported.prom
        return prom.generate_latest(self._exported.registry), prom.CONTENT_TYPE_LATEST


class TrafficHistory:
    """Traffic and federation over time, for the console's charts: every ``interval_s``, how many requests
    were received, how many local and remote room events persisted and how many PDUs and EDUs other servers
    had refused, counted from :class:`Metrics` since the sample before. The last ``points`` samples are kept,
    in memory (a restart starts a new history)."""

    def __init__(self, metrics: Metrics, clock, interval_s: float = 10.0, points: int = 2160):
        self._metrics = metrics
        self._clock = clock
        self.interval_s = interval_s
        self._samples: deque[tuple[int, dict[str, int]]] = deque(maxlen=points + 1)
        self._loop = task.LoopingCall(self.sample)
        self._loop.clock = clock

    def _totals(self) -> dict[str, int]:
        return dict(self._metrics.totals, federation_rejected=sum(self._metrics.federation_rejected.snapshot()
                                                                  .values()))

    def sample(self) -> None:
        self._samples.append((int(self._clock.seconds() * 1000), self._totals()))

    def start(self) -> None:
        self._loop.start(self.interval_s, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def history(self, since_ms: int = 0) -> dict:
        """Each interval ending after ``since_ms`` (its end time ``ts``) with its counts, the one under way
        last."""
        samples = list(self._samples) + [(int(self._clock.seconds() * 1000), self._totals())]
        points = [dict({k: now[k] - before[k] for k in now}, ts=ts)
                  for (_, before), (ts, now) in zip(samples, samples[1:]) if ts > since_ms]
        return {"interval_ms": int(self.interval_s * 1000), "points": points}

"""Drive schemathesis cases at a running server and check every answer.

For each operation of a schema, hypothesis draws ``examples`` cases from schemathesis' positive
(schema-valid) and negative (schema-violating) strategies; some path parameters are replaced by
real objects of the server (a room the fuzzing user created, one of its events, ...). Each case
is sent by ``send`` with a per-request timeout (plus the wait a long poll asks for). A failure is a 5xx (but a 502/504 with an ``M_``
errcode, a remote server named in the request not answering, is counted apart), a connection error
or timeout (a crash or a hung connection), an error answer whose body has no ``M_`` errcode, or a
traceback in the server's log; the first failure of each kind per operation is kept with its
reproducer, without shrinking.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

REQUEST_TIMEOUT_S = 15.0


def examples_per_operation(default: int) -> int:
    """``HEXAGONE_FUZZ_EXAMPLES`` (cases per operation, for longer runs on demand), else ``default``."""
    return int(os.environ.get("HEXAGONE_FUZZ_EXAMPLES") or default)


@dataclass
class Failure:
    operation: str
    kind: str  # "5xx", "no response", "no M_ errcode", "server traceback"
    reproducer: str

    def __str__(self) -> str:
        return f"{self.operation}: {self.kind}\n    {self.reproducer}"


@dataclass
class FuzzReport:
    operations: int = 0
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    answered: Counter = field(default_factory=Counter)  # operation -> cases answered
    unrecognized_cases: Counter = field(default_factory=Counter)  # operation -> 404 M_UNRECOGNIZED answers
    not_generated: dict[str, str] = field(default_factory=dict)  # operation -> why no case was drawn
    remote_unreachable: set[str] = field(default_factory=set)  # 502/504 M_: a remote server did not answer
    failures: dict[tuple[str, str], Failure] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def unrecognized(self) -> set[str]:
        return {op for op, n in self.answered.items() if n and self.unrecognized_cases[op] == n}

    def summary(self) -> str:
        lines = [f"{self.operations} operations, {self.cases} cases in {self.seconds:.1f}s; statuses "
                 + ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items(), key=lambda item: str(item[0]))),
                 f"{len(self.unrecognized)} operations not implemented (every case 404 M_UNRECOGNIZED): "
                 + ", ".join(sorted(self.unrecognized))]
        lines.append(f"{len(self.remote_unreachable)} operations answered 502/504 (a remote server named in "
                     "the request could not be reached): " + ", ".join(sorted(self.remote_unreachable)))
        lines += [f"no case generated for {op}: {why}" for op, why in sorted(self.not_generated.items())]
        lines += [f"FAILURE {f}" for f in self.failures.values()]
        return "\n".join(lines)


@dataclass
class Sent:
    """One request as sent (for the reproducer) and its answer (None: no answer)."""

    method: str
    url: str
    body: bytes | None
    response: requests.Response | None
    error: str = ""

    def reproducer(self) -> str:
        body = "" if self.body is None else f" body={self.body[:600]!r}"
        return f"{self.method} {self.url}{body}" + (f" -> {self.error}" if self.error else "")


def _long_poll_s(url: str) -> float:
    """The wait a long-polling request asks for (``timeout`` in ms, as /sync takes it), at most 5 minutes.
    The deprecated GET /events waits 30 s when it names no timeout (as Synapse)."""
    parts = urlsplit(url)
    values = parse_qs(parts.query).get("timeout") or ["30000" if parts.path.endswith("/v3/events") else "0"]
    try:
        return min(max(int(values[-1]), 0), 300_000) / 1000
    except ValueError:
        return 0.0


def send_prepared(session: requests.Session, request: requests.PreparedRequest, **kwargs) -> Sent:
    body = request.body.encode() if isinstance(request.body, str) else request.body
    try:
        response = session.send(request, timeout=REQUEST_TIMEOUT_S + _long_poll_s(request.url),
                                allow_redirects=False, **kwargs)
    except requests.RequestException as e:
        return Sent(request.method, request.url, body, None, f"{type(e).__name__}: {e}")
    return Sent(request.method, request.url, body, response)


def prepare(case, base_url: str, headers: dict[str, str]) -> requests.PreparedRequest:
    kwargs = case.as_transport_kwargs(base_url=base_url)
    kwargs["headers"] = {**{k: v for k, v in kwargs["headers"].items() if not k.startswith("X-Schemathesis")},
                         **headers}
    kwargs.pop("cookies", None)
    return requests.Request(**kwargs).prepare()


def _check(report: FuzzReport, label: str, sent: Sent) -> None:
    def fail(kind: str, detail: str) -> None:
        report.failures.setdefault((label, kind), Failure(label, kind, f"{sent.reproducer()}\n    -> {detail}"))

    response = sent.response
    if response is None:
        report.statuses["no response"] += 1
        fail("no response", sent.error)
        return
    status = response.status_code
    report.statuses[status] += 1
    report.answered[label] += 1
    try:
        body = response.json()
    except ValueError:
        body = None
    errcode = body.get("errcode") if isinstance(body, dict) else None
    has_errcode = isinstance(errcode, str) and errcode.startswith("M_")
    if status in (502, 504) and has_errcode:
        report.remote_unreachable.add(label)  # a remote server named in the request did not answer
    elif status >= 500:
        fail("5xx", f"{status} {response.text[:300]!r}")
    elif status >= 400 and not has_errcode and not (status == 401 and isinstance(body, dict) and "flows" in body):
        fail("no M_ errcode", f"{status} {response.text[:300]!r}")  # (a UIA 401 lists flows instead)
    elif status == 404 and errcode == "M_UNRECOGNIZED":
        report.unrecognized_cases[label] += 1


def fuzz(schema, send: Callable[[Any, Any], Sent], *, examples: int,
         real_values: dict[str, list[str]], last: tuple[str, ...] = ()) -> FuzzReport:
    """Fuzz every operation of ``schema``; ``send(case, draw)`` sends one case (``draw`` takes a strategy).

    ``real_values`` maps path parameter names to real values, used for about half the cases;
    operations whose label contains one of ``last`` (leave, logout, ...) run after the others, in that order.
    """
    report = FuzzReport()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: next((i for i, marker in enumerate(last) if marker in op.label), -1))
    for operation in operations:
        report.operations += 1
        label = operation.label
        strategy = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                             operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

        @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy, data=st.data())
        def run(case, data):
            for name in list(case.path_parameters or {}):
                if name in real_values and data.draw(st.booleans()):
                    case.path_parameters[name] = data.draw(st.sampled_from(real_values[name]))
            report.cases += 1
            _check(report, label, send(case, data.draw))

        try:
            run()
        except Exception as e:  # schemathesis could not build cases from the spec's schema
            report.not_generated[label] = f"{type(e).__name__}: {str(e)[:300]}"
    report.seconds = time.monotonic() - started
    return report


def json_or_none(body: bytes | None) -> Any:
    """The JSON value of a request body, None when there is none or it is not JSON (then it is not signed)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def log_tracebacks(log_text: str) -> list[Failure]:
    """A failure for each distinct traceback the server logged (the log line before it says what failed)."""
    lines, found = log_text.splitlines(), {}
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].startswith(" ")), len(lines) - 1)
            where = next((lines[j] for j in range(end, i, -1) if lines[j].lstrip().startswith("File ")), "")
            found.setdefault((where, lines[end].split(":")[0]), Failure("server log", "server traceback",
                                                 "\n    ".join(lines[max(0, i - 1):end + 1])))
    return list(found.values())


def log_size(server) -> int:
    return os.path.getsize(server.log_path)


def assert_clean(report: FuzzReport, server, log_offset: int, api: str, total: int) -> None:
    """Print the report; every operation fuzzed, the server alive, no failure, no traceback logged."""
    with open(server.log_path, encoding="utf-8", errors="replace") as f:
        f.seek(log_offset)
        failures = list(report.failures.values()) + log_tracebacks(f.read())
    print(f"{api}: {report.operations} of {total} operations fuzzed\n{report.summary()}")
    assert server.process is not None and server.process.poll() is None, "the server died"
    assert report.operations == total and not report.not_generated, report.not_generated
    assert not failures, "\n".join(map(str, failures))

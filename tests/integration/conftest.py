"""Fixtures starting real Hexagone processes (see ``harness.py``).

``homeserver_factory`` starts servers for one test module and stops them all
(SIGTERM, clean exit required) when the module is done; ``homeserver`` is the
module's shared default server. The federation fixtures (``fed``, ``home``,
``hexagone_peer``, ``synapse_peer``, ``peer``, ``pair``, ``topology``) come from
``federation.py``; ``inprocess_server`` is a server built in this process on a
fake reactor. The log of every running server is attached to a failing
test's report.
"""

from __future__ import annotations

import pytest

from tests.integration import pg
from tests.integration.federation import (ca, fed, hexagone_peer, home, pair, peer,  # noqa: F401 (fixtures)
                                          synapse_peer, synapse_presence, topology)
from tests.integration.harness import LIVE_SERVERS, ServerError, ServerProcess, free_port
from tests.integration.inprocess import InProcessServer


class ServerFactory:
    """Creates and starts servers in fresh directories; stops them all on close()."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self.servers: list[ServerProcess] = []

    def __call__(self, *, start: bool = True, throttled: bool = False, env: dict[str, str] | None = None,
                 **overrides) -> ServerProcess:
        server = ServerProcess(self._tmp.mktemp("hs"), throttled=throttled, env=env, **overrides)
        self.servers.append(server)
        return server.start() if start else server

    def close(self) -> None:
        errors = []
        for server in self.servers:
            try:
                server.stop()
            except ServerError as e:
                errors.append(str(e))
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def homeserver_factory(tmp_path_factory):
    factory = ServerFactory(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def homeserver(homeserver_factory) -> ServerProcess:
    return homeserver_factory()


@pytest.fixture(scope="module")
def monitored(homeserver_factory) -> tuple[ServerProcess, int]:
    """A client listener, and Synapse's metrics listener (type: metrics) on a port of its own: (server, port)."""
    server = homeserver_factory(start=False, enable_metrics=True)
    metrics_port = free_port(server.port)
    listener = {"type": "http", "tls": False, "bind_addresses": ["127.0.0.1"]}
    server.config["listeners"] = [dict(listener, port=server.port, resources=[{"names": ["client"]}]),
                                  dict(listener, port=metrics_port, type="metrics")]
    server._set_port(server.port)
    server.start()
    return server, metrics_port


@pytest.fixture(scope="module")
def inprocess_server(tmp_path_factory) -> InProcessServer:
    """The module's server built in this process on a fake reactor (``inprocess.py``): for service behaviour
    through the client API where the process itself is not what is being tested."""
    server = InProcessServer(tmp_path_factory.mktemp("inprocess"))
    yield server
    server.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in LIVE_SERVERS:
            report.sections.append((f"server log ({server.base_url}, {server.dir})", server.log()))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """Drop this process's test databases once its servers are stopped.

    pytest-xdist workers leave with ``os._exit``, which skips ``atexit``.
    """
    pg.drop_all()

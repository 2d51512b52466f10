"""A Hexagone built by the composition root (``homeserver.server.build_server``) in this process, on a fake
reactor, for tests of service behaviour through the client API where a separate process is not what is
being tested: no subprocess and no socket, the same requests and answers as :class:`harness.ServerProcess`
(``request``, ``register``, ``client``), and the services at hand (``server.hs``).

Each request goes through the listener's real site (``homeserver.http.site.make_site``) over an in-memory
transport. The reactor's clock moves 1 ms before each request and otherwise only when a test says so; the
database threads hand their results back through ``callFromThread``, which
:meth:`ThreadedMemoryReactor.run_until` runs on the test's thread.
"""

from __future__ import annotations

import http.client
import io
import os
import queue
import time
from contextlib import redirect_stdout

from twisted.internet.address import IPv4Address
from twisted.internet.defer import ensureDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from homeserver.cli import main as hexagone
from homeserver.config import load_config
from homeserver.http.site import make_site
from homeserver.server import build_server
from tests.integration.harness import SERVER_NAME, HttpClient, User, configure_for_test, unique

CLIENT_ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)
# Each request comes this long after the previous one on the fake clock (events sent one after the other have
# increasing timestamps, as on a real server).
REQUEST_INTERVAL_S = 0.001


class ThreadedMemoryReactor(MemoryReactorClock):
    """A fake clock and network whose ``callFromThread`` queues the call for :meth:`run_until`."""

    def __init__(self):
        super().__init__()
        self._from_threads: queue.SimpleQueue = queue.SimpleQueue()

    def callFromThread(self, f, *args, **kwargs) -> None:  # noqa: N802 (Twisted's name)
        self._from_threads.put((f, args, kwargs))

    def run_until(self, done, deadline_s: float = 30.0) -> None:
        """Run the calls due now and those the threads hand back until ``done()``; time stands still."""
        end = time.monotonic() + deadline_s
        while True:
            self.advance(0)
            if done():
                return
            try:
                f, args, kwargs = self._from_threads.get(timeout=max(end - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(f"not done within {deadline_s}s (waiting for a timer of the fake clock?)")
            f(*args, **kwargs)


class _Socket:
    """What ``http.client.HTTPResponse`` reads a response from."""

    def __init__(self, data: bytes):
        self._data = data

    def makefile(self, mode: str):
        return io.BytesIO(self._data)


class InProcessClient(HttpClient):
    """:class:`harness.HttpClient` whose exchanges go to an :class:`InProcessServer`."""

    def __init__(self, server: "InProcessServer"):
        self.server = server

    def send(self, method, path, payload, headers, timeout):
        transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8008), peerAddress=CLIENT_ADDRESS)
        self.server.reactor.advance(REQUEST_INTERVAL_S)
        protocol = self.server.site.buildProtocol(CLIENT_ADDRESS)
        protocol.makeConnection(transport)
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        if payload is not None:
            lines.append(f"Content-Length: {len(payload)}")
        protocol.dataReceived("\r\n".join(lines).encode() + b"\r\n\r\n" + (payload or b""))
        self.server.reactor.run_until(lambda: transport.disconnecting, timeout)
        protocol.connectionLost(Failure(ConnectionDone()))
        response = http.client.HTTPResponse(_Socket(transport.value()))
        response.begin()
        return response.status, response.headers, response.read()


class InProcessServer:
    """``build_server`` on a :class:`ThreadedMemoryReactor` with the configuration of a test server."""

    def __init__(self, base_dir: str, **overrides):
        self.dir = str(base_dir)
        with redirect_stdout(io.StringIO()):
            assert hexagone(["init", "--server-name", SERVER_NAME, "--dir", self.dir]) == 0
        self.config = configure_for_test(self.dir, False, overrides)
        config = load_config(os.path.join(self.dir, "homeserver.yaml"))
        self.reactor = ThreadedMemoryReactor()
        self.reactor.advance(time.time())  # timestamps as on a real server
        self.hs = build_server(config, self.reactor)
        self.site = make_site(self.hs.resource, config.listeners[0])

    def run(self, coroutine):
        """The result of a coroutine of the services (e.g. ``self.hs.rooms``), run to completion here."""
        results = []
        ensureDeferred(coroutine).addBoth(results.append)
        self.reactor.run_until(lambda: results)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def client(self) -> InProcessClient:
        return InProcessClient(self)

    def request(self, method: str, path: str, body=None, token: str | None = None, **kwargs):
        return self.client().request(method, path, body, token, **kwargs)

    def register(self, localpart: str | None = None) -> User:
        """A new account without a password (no bcrypt: it is slow) and a
        device with an access token, made by the registration and auth services."""
        user_id = self.run(self.hs.registration.register(localpart or unique(), None))
        device_id, token = self.run(self.hs.auth.login_device(user_id, None, None, "127.0.0.1"))
        return User(self, user_id, token, device_id, password=None)

    def close(self) -> None:
        self.hs.close()

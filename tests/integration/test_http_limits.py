"""Request body limits over real sockets (spec v1.19 client-server "API standards": 413 M_TOO_LARGE).

A declared Content-Length above the route's limit is answered before the body is read; a chunked body
is cut at the limit; the server's peak memory does not follow what a client sends. Client and
federation endpoints alike.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time

from tests.integration.harness import q, unique

GB = 1024**3
MB = 1024**2
SEND_LIMIT_S = 60.0


def _head(method: str, path: str, port: int, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _upload(port: int, method: str, path: str, *, length: int | None, total: int,
            token: str | None = None, ca_path: str | None = None) -> tuple[int, dict | None, int]:
    """Send a body of ``total`` bytes (declared as ``length``, or chunked when None), reading any early
    answer as we go, like a careful HTTP client; over TLS when ``ca_path`` is given.
    Returns (status, JSON body, bytes of body sent)."""
    headers = {"Content-Length": str(length)} if length is not None else {"Transfer-Encoding": "chunked"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    piece = b"x" * (256 * 1024)
    frame = piece if length is not None else b"%x\r\n%s\r\n" % (len(piece), piece)
    sent, answer, pending = 0, b"", b""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if ca_path is not None:
        sock = ssl.create_default_context(cafile=ca_path).wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(_head(method, path, port, headers))
        sock.setblocking(False)  # readable may only mean a TLS session ticket
        deadline = time.monotonic() + SEND_LIMIT_S
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 1.0)
            try:
                if readable or (ca_path is not None and sock.pending()):
                    data = sock.recv(65536)
                    if not data:
                        break
                    answer += data
                    if _complete(answer):
                        break
                elif writable:
                    pending = pending or frame  # a frame is sent whole before the next one starts
                    n = sock.send(pending)
                    pending, sent = pending[n:], sent + n
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            raise AssertionError(f"no answer after sending {sent} bytes")
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, json.loads(body) if body else None, sent


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_declared_ten_gigabytes_is_refused_before_the_body(homeserver):
    status, body, sent = _upload(homeserver.port, "POST", "/_matrix/client/v3/login", length=10 * GB, total=MB)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE"), (status, body)
    # an authenticated route, and federation's transaction endpoint (refused before any signature check)
    alice = homeserver.register()
    room = alice.create_room()
    status, body, _ = _upload(homeserver.port, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/"
                              f"{unique()}", length=10 * GB, total=MB, token=alice.token)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    status, body, _ = _upload(homeserver.port, "PUT", f"/_matrix/federation/v1/send/{unique()}",
                              length=10 * GB, total=MB)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")


def test_a_chunked_body_is_cut_at_the_route_limit(homeserver):
    status, body, sent = _upload(homeserver.port, "POST", "/_matrix/client/v3/login", length=None, total=200 * MB)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    assert sent < 100 * MB, sent
    status, body, sent = _upload(homeserver.port, "PUT", f"/_matrix/federation/v1/send/{unique()}",
                                 length=None, total=200 * MB)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    assert sent < 100 * MB, sent
    # the server still answers, and a body under the limit still works
    assert homeserver.request("GET", "/_matrix/client/versions")[0] == 200
    alice = homeserver.register()
    assert alice.send(alice.create_room(), "y" * 60_000)


def test_a_federation_tls_listener_refuses_before_the_body(home):
    for length in (10 * GB, None):
        status, body, sent = _upload(home.tls_port, "PUT", f"/_matrix/federation/v1/send/{unique()}",
                                     length=length, total=100 * MB, ca_path=home.ca_path)
        assert (status, body["errcode"]) == (413, "M_TOO_LARGE"), length
        assert sent < 50 * MB, sent
    assert home.https("GET", "/_matrix/federation/v1/version")[0] == 200


def test_peak_memory_does_not_follow_the_body(homeserver):
    pid = homeserver.process.pid
    assert homeserver.request("GET", "/_matrix/client/versions")[0] == 200
    before = _peak_rss_kb(pid)
    for length in (200 * MB, None):  # declared and sent; chunked
        status, body, _ = _upload(homeserver.port, "PUT", f"/_matrix/federation/v1/send/{unique()}",
                                  length=length, total=200 * MB)
        assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    assert homeserver.request("GET", "/_matrix/client/versions")[0] == 200
    grown_mb = (_peak_rss_kb(pid) - before) / 1024
    print(f"peak RSS {before / 1024:.1f} MB before, grew by {grown_mb:.1f} MB after 2 x 200 MB bodies")
    assert grown_mb < 20, grown_mb


class _CountingListener:
    """A TCP listener on 127.0.0.1 that accepts, counts and at once closes connections (in a thread, so
    a TLS client gets its answer, a reset, without waiting for a handshake timeout)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._open = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while self._open:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.count += 1
            conn.close()

    def connections(self) -> int:
        return self.count

    def close(self) -> None:
        self._open = False
        self._thread.join()
        self.sock.close()


def test_public_rooms_of_a_local_address_neither_connects_nor_tells(homeserver):
    """/publicRooms?server=: 0.0.0.0 and :: reach this host; a connection error must not be echoed."""
    alice = homeserver.register()
    target = _CountingListener()
    try:
        answers = {server: alice.request("GET", "/publicRooms", params={"server": server})
                   for server in (f"0.0.0.0:{target.port}", f"[::]:{target.port}", f"127.0.0.1:{target.port}",
                                  f"[::ffff:127.0.0.1]:{target.port}", "nothing.invalid")}
        assert target.connections() == 0
    finally:
        target.close()
    for server, (status, body) in answers.items():
        assert (status, body) == (502, {"errcode": "M_UNKNOWN",
                                        "error": "Could not fetch that server's room directory"}), server
    # anonymous users never make us ask another server
    status, body = homeserver.request("GET", "/publicRooms", params={"server": "example.org"})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")


def test_federation_ip_range_blacklist_replaces_the_ranges_but_not_this_host(homeserver_factory):
    """Synapse's older key: it alone decides for federation (ip_range_blacklist no longer applies),
    and 0.0.0.0 and :: stay refused."""
    server = homeserver_factory(federation_ip_range_blacklist=["192.0.2.0/24"])
    alice = server.register()
    target = _CountingListener()
    try:
        for host in ("0.0.0.0", "[::]"):
            assert alice.request("GET", "/publicRooms", params={"server": f"{host}:{target.port}"})[0] == 502
            assert target.connections() == 0, host
        assert alice.request("GET", "/publicRooms", params={"server": f"127.0.0.1:{target.port}"})[0] == 502
        assert target.connections() >= 1  # ip_range_blacklist (loopback) no longer applies
    finally:
        target.close()

"""A large upload and its download never sit in the server's memory: the server process's peak RSS (VmHWM in
/proc/PID/status) stays under its idle peak + 64 MiB.

The size is ``HEXAGONE_MEDIA_MEMORY_BYTES``: 1 GiB by default (about 20 s here, upload and download); set it
lower on a slow machine. The client streams both ways too.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys

import pytest

from tests.integration.media_client import AUTHED, LEGACY, split_mxc

SIZE = int(os.environ.get("HEXAGONE_MEDIA_MEMORY_BYTES", 1024 ** 3))
CHUNK = 1024 * 1024
BUDGET = 64 * 1024 * 1024


def _kib(status: str, field: str) -> int:
    line = next(line for line in status.splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    return _kib(status, "VmRSS"), _kib(status, "VmHWM")


def _chunks():
    block = bytes(range(256)) * (CHUNK // 256)
    for _ in range(SIZE // CHUNK):
        yield block
    if SIZE % CHUNK:
        yield block[:SIZE % CHUNK]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_large_upload_and_download_in_bounded_memory(homeserver_factory):
    server = homeserver_factory(max_upload_size=SIZE + 1024)
    user = server.register()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    # Warm up every code path once (small upload and download), then take the idle peak.
    conn.request("POST", f"{LEGACY}/upload", body=b"warm", headers={"Authorization": f"Bearer {user.token}"})
    origin, media_id = split_mxc(json.loads(conn.getresponse().read())["content_uri"])
    conn.request("GET", f"{AUTHED}/download/{origin}/{media_id}", headers={"Authorization": f"Bearer {user.token}"})
    assert conn.getresponse().read() == b"warm"
    _, idle_peak = _memory(server.process.pid)

    expected = hashlib.sha256()
    for chunk in _chunks():
        expected.update(chunk)
    conn.request("POST", f"{LEGACY}/upload", body=_chunks(),
                 headers={"Authorization": f"Bearer {user.token}", "Content-Length": str(SIZE),
                          "Content-Type": "application/octet-stream"})
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 200, body
    origin, media_id = split_mxc(body["content_uri"])
    _, after_upload = _memory(server.process.pid)

    conn.request("GET", f"{AUTHED}/download/{origin}/{media_id}", headers={"Authorization": f"Bearer {user.token}"})
    response = conn.getresponse()
    assert response.status == 200
    got, received = hashlib.sha256(), 0
    while chunk := response.read(CHUNK):
        got.update(chunk)
        received += len(chunk)
    conn.close()
    _, after_download = _memory(server.process.pid)
    assert received == SIZE and got.hexdigest() == expected.hexdigest()
    print(f"\nmedia memory: {SIZE / 2**20:.0f} MiB up and down; server peak RSS idle {idle_peak / 2**20:.1f} MiB, "
          f"after upload {after_upload / 2**20:.1f} MiB, after download {after_download / 2**20:.1f} MiB")
    assert after_upload - idle_peak < BUDGET
    assert after_download - idle_peak < BUDGET


def test_a_stalled_download_does_not_hold_a_shutdown(homeserver_factory):
    """A client that stops reading a large download: the server still stops cleanly on SIGTERM."""
    import socket

    server = homeserver_factory(max_upload_size="100M")
    user = server.register()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", f"{LEGACY}/upload", body=b"s" * (64 * CHUNK), headers={"Authorization": f"Bearer {user.token}"})
    origin, media_id = split_mxc(json.loads(conn.getresponse().read())["content_uri"])
    conn.close()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {AUTHED}/download/{origin}/{media_id} HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {user.token}\r\n\r\n".encode())
        assert sock.recv(12) == b"HTTP/1.1 200"
        server.stop()  # raises unless the process exits with 0 within its timeout

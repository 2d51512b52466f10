"""A large upload and its download never sit in the server's memory: the server process's peak RSS (VmHWM in
/proc/PID/status) stays under its idle peak + 64 MiB, with the filesystem store alone and with S3 (moto's server)
behind it (the download then refills the local store from S3).

The size is ``HEXAGONE_MEDIA_MEMORY_BYTES``: 1 GiB by default (about 20 s here, upload and download); set it
lower on a slow machine. With S3 it is ``HEXAGONE_MEDIA_MEMORY_S3_BYTES``, 256 MiB by default (moto's server
takes about 3 min for 1 GiB each way here). The client streams both ways too.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys

import pytest

from tests.integration.media_client import AUTHED, LEGACY, split_mxc
from tests.integration.s3server import s3, s3_provider  # noqa: F401 (fixture)

SIZES = {"filesystem": int(os.environ.get("HEXAGONE_MEDIA_MEMORY_BYTES", 1024 ** 3)),
         "s3": int(os.environ.get("HEXAGONE_MEDIA_MEMORY_S3_BYTES", 256 * 1024 ** 2))}
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


def _chunks(size: int):
    block = bytes(range(256)) * (CHUNK // 256)
    for _ in range(size // CHUNK):
        yield block
    if size % CHUNK:
        yield block[:size % CHUNK]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_large_upload_and_download_in_bounded_memory(homeserver_factory, request, backend):
    size = SIZES[backend]
    extra = {"media_storage_providers": [s3_provider(request.getfixturevalue("s3").bucket())]} \
        if backend == "s3" else {}
    server = homeserver_factory(max_upload_size=size + 1024, **extra)
    user = server.register()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    # Warm up every code path once (small upload and download), then take the idle peak.
    conn.request("POST", f"{LEGACY}/upload", body=b"warm", headers={"Authorization": f"Bearer {user.token}"})
    origin, media_id = split_mxc(json.loads(conn.getresponse().read())["content_uri"])
    conn.request("GET", f"{AUTHED}/download/{origin}/{media_id}", headers={"Authorization": f"Bearer {user.token}"})
    assert conn.getresponse().read() == b"warm"
    _, idle_peak = _memory(server.process.pid)

    expected = hashlib.sha256()
    for chunk in _chunks(size):
        expected.update(chunk)
    conn.request("POST", f"{LEGACY}/upload", body=_chunks(size),
                 headers={"Authorization": f"Bearer {user.token}", "Content-Length": str(size),
                          "Content-Type": "application/octet-stream"})
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 200, body
    origin, media_id = split_mxc(body["content_uri"])
    _, after_upload = _memory(server.process.pid)
    if backend == "s3":  # the local copy gone, the download goes through S3 back into the local store
        os.unlink(os.path.join(server.dir, "media_store", "local_content", media_id[:2], media_id[2:4], media_id[4:]))

    conn.request("GET", f"{AUTHED}/download/{origin}/{media_id}", headers={"Authorization": f"Bearer {user.token}"})
    response = conn.getresponse()
    assert response.status == 200
    got, received = hashlib.sha256(), 0
    while chunk := response.read(CHUNK):
        got.update(chunk)
        received += len(chunk)
    conn.close()
    _, after_download = _memory(server.process.pid)
    assert received == size and got.hexdigest() == expected.hexdigest()
    print(f"\nmedia memory ({backend}): {size / 2**20:.0f} MiB up and down; server peak RSS idle "
          f"{idle_peak / 2**20:.1f} MiB, "
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

"""A large upload and its download through a running Hexagone never sit in its memory: the server's peak RSS
(VmHWM) stays under its idle RSS + 64 MiB, with the filesystem store alone and with S3 (moto's server) behind
it. The size is HEXAGONE_TEST_MEDIA_BIG_MB (default 256; the issue's figure is 1024)."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.parse

import pytest

from tests.integration.media_client import AUTHED, split_mxc, upload
from tests.integration.s3server import s3, s3_provider  # noqa: F401 (fixture)

BIG_MB = int(os.environ.get("HEXAGONE_TEST_MEDIA_BIG_MB", "256"))
HEADROOM_MB = 64
CHUNK = 1024 * 1024


def memory_kb(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f) if k in ("VmRSS", "VmHWM")}


def chunks(digest) -> object:
    block = os.urandom(CHUNK)
    for i in range(BIG_MB):
        data = block[i % 256:] + block[:i % 256]  # every MiB different, cheap to make
        digest.update(data)
        yield data


def streamed_download(base_url: str, path: str, token: str) -> tuple[int, int, str]:
    """(status, length, sha256) of a download read in chunks, never held whole here either."""
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        digest, size = hashlib.sha256(), 0
        while block := resp.read(CHUNK):
            digest.update(block)
            size += len(block)
        return resp.status, size, digest.hexdigest()
    finally:
        conn.close()


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_big_upload_and_download_stay_out_of_memory(homeserver_factory, request, backend):
    extra = {"media_storage_providers": [s3_provider(request.getfixturevalue("s3").bucket())]} \
        if backend == "s3" else {}
    server = homeserver_factory(max_upload_size=f"{BIG_MB + 1}M", thumbnail_sizes=[], **extra)
    user = server.register()
    _, warm = upload(server.base_url, user.token, b"warm up the upload path")
    assert streamed_download(server.base_url, f"{AUTHED}/download/{'/'.join(split_mxc(warm['content_uri']))}",
                             user.token)[0] == 200
    with open(f"/proc/{server.process.pid}/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) restarts from now
    idle = memory_kb(server.process.pid)["VmRSS"]
    digest = hashlib.sha256()
    status, body = upload(server.base_url, user.token, chunks(digest), length=BIG_MB * CHUNK, filename="big.bin")
    assert status == 200, body
    origin, media_id = split_mxc(body["content_uri"])
    if backend == "s3":  # served from S3 into the local cache: that path too
        (path,) = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(server.dir, "media_store",
                                                                           "local_content")) for f in fs
                   if f == media_id[4:]]
        os.unlink(path)
    assert streamed_download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}", user.token) == \
        (200, BIG_MB * CHUNK, digest.hexdigest())
    peak = memory_kb(server.process.pid)["VmHWM"]
    grown_mb = (peak - idle) / 1024
    print(f"{backend}: {BIG_MB} MiB up and down, idle RSS {idle // 1024} MiB, peak {peak // 1024} MiB "
          f"(+{grown_mb:.1f} MiB)")
    assert grown_mb < HEADROOM_MB, f"peak RSS grew by {grown_mb:.1f} MiB for a {BIG_MB} MiB file ({backend})"

"""Media rate limits, in Synapse's keys and shapes, against real servers: ``rc_media_create`` on
``POST /_matrix/media/v1/create`` (per user), and ``remote_media_download_per_second`` /
``remote_media_download_burst_count`` on remote media fetched for a client (a bucket of bytes per client IP);
both refuse with 429 ``M_LIMIT_EXCEEDED`` and ``retry_after_ms`` (spec v1.19 client-server "Rate limiting")."""

from __future__ import annotations

import json

import pytest

from tests.integration.media_client import AUTHED, download, split_mxc, upload

FILE_SIZE = 60 * 1024


@pytest.fixture(scope="module")
def limited(fed):
    """The server whose users fetch remote media: a 100 KiB bucket draining at 1 KiB/s; 3 /create at once."""
    return fed(remote_media_download_burst_count="100K", remote_media_download_per_second="1K",
               rc_media_create={"per_second": 0.01, "burst_count": 3})


@pytest.fixture(scope="module")
def origin(fed):
    return fed()


def test_media_create_is_rate_limited(limited):
    user, other = limited.process.register(), limited.process.register()
    for _ in range(3):
        status, body = limited.process.request("POST", "/_matrix/media/v1/create", {}, token=user.token)
        assert status == 200, body
    status, body = limited.process.request("POST", "/_matrix/media/v1/create", {}, token=user.token)
    assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED", body
    assert body["retry_after_ms"] > 0
    # Per user: another account still creates.
    status, body = limited.process.request("POST", "/_matrix/media/v1/create", {}, token=other.token)
    assert status == 200, body


def test_remote_downloads_are_limited_by_bytes_per_client(limited, origin):
    uploader, reader = origin.process.register(), limited.process.register()
    uris = []
    for i in range(3):
        status, body = upload(origin.process.base_url, uploader.token, bytes([i]) * FILE_SIZE)
        assert status == 200, body
        uris.append(split_mxc(body["content_uri"]))
    path = "{}/download/{}/{}"
    # 60 KiB, then 120 KiB in the bucket: the second fetch starts while the bucket still has room.
    for server, media_id in uris[:2]:
        status, _, data = download(limited.process.base_url, path.format(AUTHED, server, media_id), reader.token)
        assert status == 200 and len(data) == FILE_SIZE
    server, media_id = uris[2]
    status, headers, data = download(limited.process.base_url, path.format(AUTHED, server, media_id), reader.token)
    assert status == 429, data[:200]
    body = json.loads(data)
    assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 10_000
    # Thumbnails fetch the remote file too: refused alike.
    status, _, data = download(limited.process.base_url,
                               f"{AUTHED}/thumbnail/{server}/{media_id}?width=32&height=32", reader.token)
    assert status == 429, data[:200]
    # What is cached is served without counting.
    server, media_id = uris[0]
    status, _, data = download(limited.process.base_url, path.format(AUTHED, server, media_id), reader.token)
    assert status == 200 and len(data) == FILE_SIZE

"""The media repository's backends in a running Hexagone, over HTTP: the antivirus (a real clamd) refusing EICAR on
upload (403) and on a remote fetch (404), serving clean files, refusing while clamd is down and serving again once
it is back, verdicts remembered by content hash; S3 (moto's server) holding a copy of every file and refilling the
local store on a miss; URL previews (a page served on 127.0.0.1) with their image stored as media."""

from __future__ import annotations

import io
import json
import os
import urllib.parse

import pytest

from homeserver.config import DEFAULT_IP_RANGE_BLACKLIST
from tests.integration.clamd import EICAR, SIGNATURE, clamd, clamd_binary  # noqa: F401 (fixture)
from tests.integration.harness import StandInHandler, database_rows, free_port, http_stand_in, unique
from tests.integration.media_client import AUTHED, LEGACY, download, split_mxc, upload
from tests.integration.reactor_thread import wait_for
from tests.integration.s3server import s3, s3_provider  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(clamd_binary() is None,
                                reason="clamd is not installed (Debian package clamav-daemon)")
PNG_SIZE = (3, 2)  # not square: a preview's og:image:width and og:image:height cannot be swapped unseen


def _png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (0, 90, 200)).save(out, "PNG")
    return out.getvalue()


PNG = _png(PNG_SIZE)


class Pages(StandInHandler):
    """A small web site for the previews: a page with an og:image, its image, a private page."""

    def do_GET(self):
        if self.path == "/logo.png":
            body, kind = PNG, "image/png"
        else:
            body = (b'<html><head><title>Joint exercise</title><meta property="og:description" '
                    b'content="Agenda and maps"><meta property="og:image" content="/logo.png"></head></html>')
            kind = "text/html; charset=utf-8"
        self.answer(200, body, kind)


@pytest.fixture(scope="module")
def site():
    with http_stand_in(Pages) as url:
        yield url


@pytest.fixture(scope="module")
def bucket(s3):
    return s3.bucket()


@pytest.fixture(scope="module")
def server(homeserver_factory, clamd, bucket):
    return homeserver_factory(
        content_scanner={"clamd": clamd.tcp_address}, media_storage_providers=[s3_provider(bucket)],
        url_preview_enabled=True, url_preview_ip_range_blacklist=list(DEFAULT_IP_RANGE_BLACKLIST),
        url_preview_ip_range_whitelist=["127.0.0.1/32"], url_preview_url_blacklist=[{"path": "/private/*"}])


@pytest.fixture(scope="module")
def alice(server):
    return server.register()


def local_files(server) -> list[str]:
    root = os.path.join(server.dir, "media_store", "local_content")
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]


def s3_object(s3, bucket: dict, media_id: str) -> bytes | None:
    key = f"local_content/{media_id[:2]}/{media_id[2:4]}/{media_id[4:]}"
    try:
        return s3.client().get_object(Bucket=bucket["bucket"], Key=key)["Body"].read()
    except s3.client().exceptions.NoSuchKey:
        return None


def fetch(server, user, uri: str) -> tuple[int, bytes]:
    origin, media_id = split_mxc(uri)
    status, _, data = download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}", user.token)
    return status, data


def test_eicar_refused_on_upload(server, alice, s3):
    before = local_files(server)
    status, body = upload(server.base_url, alice.token, EICAR, filename="invoice.com")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert SIGNATURE in body["error"]
    assert local_files(server) == before
    assert not os.listdir(os.path.join(server.dir, "media_store", "tmp"))
    log = server.log()
    assert "Refused an infected file" in log and alice.user_id in log and "invoice.com" in log


def test_clean_file_served_and_copied_to_s3(server, alice, s3, bucket):
    payload = os.urandom(300_000)
    status, body = upload(server.base_url, alice.token, payload, filename="minutes.bin")
    assert status == 200, body
    assert fetch(server, alice, body["content_uri"]) == (200, payload)
    assert s3_object(s3, bucket, split_mxc(body["content_uri"])[1]) == payload


def test_local_miss_is_fetched_back_from_s3(server, alice):
    payload = b"kept in S3 " * 10_000
    _, body = upload(server.base_url, alice.token, payload)
    media_id = split_mxc(body["content_uri"])[1]
    (path,) = [p for p in local_files(server) if p.endswith(media_id[4:])]
    os.unlink(path)
    assert fetch(server, alice, body["content_uri"]) == (200, payload)
    with open(path, "rb") as f:
        assert f.read() == payload


def test_scanner_down_refuses_then_back_serves(server, alice, clamd):
    known = b"scanned once: " + unique().encode()
    assert upload(server.base_url, alice.token, known)[0] == 200
    clamd.stop()
    try:
        status, body = upload(server.base_url, alice.token, b"never scanned: " + unique().encode())
        assert (status, body.get("errcode")) == (503, "M_UNKNOWN"), body
        # The verdict on known content is remembered by its hash: no scan needed.
        status, body = upload(server.base_url, alice.token, known)
        assert status == 200, body
    finally:
        clamd.start()
    fresh = b"scanned after the restart: " + unique().encode()
    status, body = upload(server.base_url, alice.token, fresh)
    assert status == 200, body
    assert fetch(server, alice, body["content_uri"]) == (200, fresh)


def test_remote_eicar_is_not_served(fed, hexagone_peer, clamd):
    scanning = fed(content_scanner={"clamd": clamd.unix_address})
    uploader, reader = hexagone_peer.process.register(), scanning.process.register()
    _, infected = upload(hexagone_peer.process.base_url, uploader.token, EICAR, filename="eicar.com")
    _, clean = upload(hexagone_peer.process.base_url, uploader.token, b"clean remote bytes")
    assert fetch(scanning.process, reader, infected["content_uri"])[0] == 404
    assert fetch(scanning.process, reader, clean["content_uri"]) == (200, b"clean remote bytes")
    assert "Refused an infected file" in scanning.process.log()


def test_url_preview(server, alice, site):
    query = urllib.parse.urlencode({"url": site + "/news"})
    for prefix in (AUTHED, LEGACY):
        status, _, data = download(server.base_url, f"{prefix}/preview_url?{query}", alice.token)
        assert status == 200, data
    og = json.loads(data)
    assert (og["og:title"], og["og:description"]) == ("Joint exercise", "Agenda and maps")
    assert og["matrix:image:size"] == len(PNG)
    assert (og["og:image:width"], og["og:image:height"]) == PNG_SIZE  # as Synapse: read from the image
    assert fetch(server, alice, og["og:image"]) == (200, PNG)
    private = urllib.parse.urlencode({"url": site + "/private/x"})
    status, _, data = download(server.base_url, f"{AUTHED}/preview_url?{private}", alice.token)
    assert status == 403 and b"M_FORBIDDEN" in data
    assert download(server.base_url, f"{AUTHED}/preview_url?{query}")[0] == 401


def test_url_preview_off_by_default(homeserver):
    user = homeserver.register()
    status, _, data = download(homeserver.base_url, f"{AUTHED}/preview_url?url=http%3A%2F%2F127.0.0.1%2F",
                               user.token)
    assert status == 404 and b"M_UNRECOGNIZED" in data


def test_fail_open_accepts_while_clamd_is_unreachable(homeserver_factory):
    """fail_closed: false serves files the scanner could not see (and remembers no verdict for them)."""
    open_server = homeserver_factory(content_scanner={"clamd": f"tcp://127.0.0.1:{free_port()}", "fail_closed": False})
    user = open_server.register()
    status, body = upload(open_server.base_url, user.token, EICAR)
    assert status == 200, body
    assert "Content scanner unavailable" in open_server.log()
    assert database_rows(open_server, "SELECT COUNT(*) FROM media_scan_verdicts") == [(0,)]


@pytest.mark.parametrize("flags,copied", [({"store_local": False}, False), ({"store_synchronous": False}, True)])
def test_provider_flags(homeserver_factory, s3, flags, copied):
    """Synapse's semantics: store_local false keeps local uploads off S3; store_synchronous false answers the
    upload first and copies it to S3 in the background."""
    bucket = s3.bucket()
    flagged = homeserver_factory(media_storage_providers=[{**s3_provider(bucket), **flags}])
    user = flagged.register()
    status, body = upload(flagged.base_url, user.token, b"flagged bytes")
    assert status == 200, body
    media_id = split_mxc(body["content_uri"])[1]
    if copied:
        assert wait_for(lambda: s3_object(s3, bucket, media_id), "the background copy to S3") == b"flagged bytes"
    else:
        assert s3_object(s3, bucket, media_id) is None

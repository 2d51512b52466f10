"""The content repository over raw HTTP against a real server (spec v1.19 "Content repository"): uploads (plain
and asynchronous), authenticated and legacy downloads, headers, ranges, thumbnails, limits and bad input.
Runs on SQLite, or PostgreSQL with HEXAGONE_TEST_DATABASE; each test on the filesystem store and on S3."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import threading

import pytest
from PIL import Image

from tests.integration.harness import database_rows
from tests.integration.media_client import AUTHED, LEGACY, download, split_mxc, upload
from tests.integration.s3server import S3Server, s3_provider
from tests.integration.test_faults_storage import tiny_disk  # noqa: F401 (fixture)

MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def server(request, homeserver_factory, tmp_path_factory):
    """The module's server, once with the filesystem store alone and once with S3 (moto's server) behind it."""
    backend = {}
    if request.param == "s3":
        s3 = S3Server(str(tmp_path_factory.mktemp("s3") / "moto.log"))
        request.addfinalizer(s3.stop)
        backend["media_storage_providers"] = [s3_provider(s3.bucket())]
    return homeserver_factory(max_upload_size=MAX_UPLOAD, media_upload_limits=[
        {"time_period": "1h", "max_size": "3M"}], thumbnail_sizes=[
        {"width": 32, "height": 32, "method": "crop"}, {"width": 320, "height": 240, "method": "scale"}],
        **backend)


@pytest.fixture(scope="module")
def alice(server):
    return server.register()


def _png(width: int = 640, height: int = 480, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), (200, 30, 60) if mode == "RGB" else None).save(out, fmt)
    return out.getvalue()


def _store_files(server) -> list[str]:
    root = os.path.join(server.dir, "media_store")
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]


def test_upload_then_download_keeps_name_type_and_headers(server, alice):
    status, body = upload(server.base_url, alice.token, b"hello world", filename="hello.txt",
                          content_type="text/plain")
    assert status == 200, body
    origin, media_id = split_mxc(body["content_uri"])
    assert origin == "test.local"
    status, headers, data = download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}", alice.token)
    assert (status, data) == (200, b"hello world")
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Disposition"] == 'inline; filename="hello.txt"'
    assert headers["Content-Security-Policy"].startswith("sandbox")
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    # The name in the path overrides the stored one; a non-ASCII name is RFC 5987-encoded.
    status, headers, _ = download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}/%C3%A9t%C3%A9.txt",
                                  alice.token)
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''%C3%A9t%C3%A9.txt"


def test_empty_file(server, alice):
    status, body = upload(server.base_url, alice.token, b"", filename="empty.txt", content_type="text/plain")
    assert status == 200, body
    origin, media_id = split_mxc(body["content_uri"])
    status, headers, data = download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}", alice.token)
    assert (status, data, headers["Content-Length"]) == (200, b"", "0")


def test_download_needs_a_token_and_html_is_an_attachment(server, alice):
    status, body = upload(server.base_url, alice.token, b"<script>alert(1)</script>", filename="x.html",
                          content_type="text/html")
    origin, media_id = split_mxc(body["content_uri"])
    status, _, _ = download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}")
    assert status == 401
    status, headers, _ = download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}", alice.token)
    assert status == 200
    assert headers["Content-Disposition"].startswith("attachment")


def test_legacy_endpoints_are_frozen(server, alice):
    """Media uploaded with enable_authenticated_media on (the default) is not served on /_matrix/media/v3."""
    _, body = upload(server.base_url, alice.token, b"new media")
    origin, media_id = split_mxc(body["content_uri"])
    status, _, data = download(server.base_url, f"{LEGACY}/download/{origin}/{media_id}")
    assert status == 404
    # Media from before the switch (authenticated = 0) still is.
    database_rows(server, "UPDATE local_media SET authenticated = 0 WHERE media_id = ?", (media_id,))
    status, _, data = download(server.base_url, f"{LEGACY}/download/{origin}/{media_id}")
    assert (status, data) == (200, b"new media")
    # Another server's media on the legacy path: not fetched (404), whatever allow_remote says.
    status, _, _ = download(server.base_url, f"{LEGACY}/download/other.example/abcdefgh")
    assert status == 404


def test_range_requests(server, alice):
    payload = bytes(range(256)) * 40
    _, body = upload(server.base_url, alice.token, payload)
    origin, media_id = split_mxc(body["content_uri"])
    path = f"{AUTHED}/download/{origin}/{media_id}"
    status, headers, data = download(server.base_url, path, alice.token, {"Range": "bytes=100-199"})
    assert (status, data) == (206, payload[100:200])
    assert headers["Content-Range"] == f"bytes 100-199/{len(payload)}"
    status, _, data = download(server.base_url, path, alice.token, {"Range": "bytes=-10"})
    assert (status, data) == (206, payload[-10:])
    status, headers, _ = download(server.base_url, path, alice.token, {"Range": f"bytes={len(payload)}-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(payload)}"


def test_head_gives_the_headers_only(server, alice):
    _, body = upload(server.base_url, alice.token, b"0123456789", content_type="text/plain")
    origin, media_id = split_mxc(body["content_uri"])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("HEAD", f"{AUTHED}/download/{origin}/{media_id}", headers={"Authorization": f"Bearer {alice.token}"})
    response = conn.getresponse()
    assert (response.status, response.headers["Content-Length"], response.read()) == (200, "10", b"")
    conn.close()


def test_config(server, alice):
    for prefix in (AUTHED, LEGACY):
        status, _, data = download(server.base_url, f"{prefix}/config", alice.token)
        assert status == 200 and b'"m.upload.size":%d' % MAX_UPLOAD in data


def test_async_upload(server, alice):
    status, created = alice.request("POST", "/_matrix/media/v1/create")
    assert status == 200 and created["unused_expires_at"] > 0
    origin, media_id = split_mxc(created["content_uri"])
    path = f"{AUTHED}/download/{origin}/{media_id}"
    status, _, data = download(server.base_url, path + "?timeout_ms=50", alice.token)
    assert status == 504 and b"M_NOT_YET_UPLOADED" in data
    bob = server.register()
    status, body = upload(server.base_url, bob.token, b"not mine", path=f"{LEGACY}/upload/{origin}/{media_id}",
                          method="PUT")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # A download waiting for the content gets it once uploaded.
    result = {}
    waiter = threading.Thread(target=lambda: result.update(r=download(server.base_url, path + "?timeout_ms=20000",
                                                                      alice.token)))
    waiter.start()
    status, body = upload(server.base_url, alice.token, b"later", path=f"{LEGACY}/upload/{origin}/{media_id}",
                          method="PUT", filename="later.bin")
    assert (status, body) == (200, {})
    waiter.join(30)
    assert result["r"][0] == 200 and result["r"][2] == b"later"
    status, body = upload(server.base_url, alice.token, b"again", path=f"{LEGACY}/upload/{origin}/{media_id}",
                          method="PUT")
    assert (status, body["errcode"]) == (409, "M_CANNOT_OVERWRITE_MEDIA")
    status, body = upload(server.base_url, alice.token, b"x", path=f"{LEGACY}/upload/{origin}/unknownid",
                          method="PUT")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # An ID past its unused_expires_at can no longer be uploaded to.
    _, created = alice.request("POST", "/_matrix/media/v1/create")
    origin, media_id = split_mxc(created["content_uri"])
    database_rows(server, "UPDATE local_media SET expires_ts = 1 WHERE media_id = ?", (media_id,))
    status, body = upload(server.base_url, alice.token, b"late", path=f"{LEGACY}/upload/{origin}/{media_id}",
                          method="PUT")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


def test_too_many_pending_creates(server):
    carol = server.register()
    for _ in range(5):
        assert carol.request("POST", "/_matrix/media/v1/create")[0] == 200
    status, body = carol.request("POST", "/_matrix/media/v1/create")
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")


def test_too_large_is_refused_before_the_body(server, alice):
    """A Content-Length over max_upload_size is answered 413 without reading the body."""
    status, body = upload(server.base_url, alice.token, b"", length=MAX_UPLOAD + 1)
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    # A chunked body is cut once past the limit.
    status, body = upload(server.base_url, alice.token, iter([b"x" * 65536] * (MAX_UPLOAD // 65536 + 2)))
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    assert not os.listdir(os.path.join(server.dir, "media_store", "tmp"))


def test_per_user_upload_limit(server):
    dave = server.register()
    assert upload(server.base_url, dave.token, b"x" * (MAX_UPLOAD - 10))[0] == 200
    status, body = upload(server.base_url, dave.token, b"x" * (MAX_UPLOAD - 10))
    assert status == 400 and body["errcode"] == "M_RESOURCE_LIMIT_EXCEEDED"


@pytest.mark.parametrize("name", ["../etc/passwd", "a\\b", "bell\x07.txt", "new\nline"])
def test_bad_file_names(server, alice, name):
    before = len(_store_files(server))
    status, body = upload(server.base_url, alice.token, b"data", filename=name)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    assert len(_store_files(server)) == before


def test_bad_query_leaves_nothing_behind(server, alice):
    status, body = upload(server.base_url, alice.token, b"data" * 1000, path=f"{LEGACY}/upload?filename=%FF")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    assert not os.listdir(os.path.join(server.dir, "media_store", "tmp"))


def test_truncated_upload_stores_nothing(server, alice):
    before = len(_store_files(server))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"POST {LEGACY}/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice.token}\r\n"
                     f"Content-Length: 1000\r\n\r\n".encode() + b"y" * 400)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""  # no answer: the connection is closed
    status, _ = alice.request("GET", "/_matrix/client/versions")  # the server handled the close
    assert status == 200
    assert len(_store_files(server)) == before
    assert not os.listdir(os.path.join(server.dir, "media_store", "tmp"))


def test_content_length_shorter_than_the_body(server, alice):
    """The declared length is the body; the bytes after it are a malformed next request (400), never stored."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"POST {LEGACY}/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice.token}\r\n"
                     f"Content-Length: 5\r\n\r\n".encode() + b"helloTRAILING GARBAGE\r\n\r\n")
        answers = b""
        while chunk := sock.recv(65536):
            answers += chunk
    head, _, rest = answers.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answers
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    body, second = rest[:length], rest[length:]
    assert second.startswith(b"HTTP/1.1 400"), second
    origin, media_id = split_mxc(json.loads(body)["content_uri"])
    assert download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}", alice.token)[2] == b"hello"


def test_unknown_media(server, alice):
    for path in (f"{AUTHED}/download/test.local/doesnotexist", f"{AUTHED}/download/test.local/bad..id",
                 f"{AUTHED}/thumbnail/test.local/doesnotexist?width=32&height=32"):
        status, _, data = download(server.base_url, path, alice.token)
        assert status == 404 and b"M_NOT_FOUND" in data, path


def test_thumbnails(server, alice):
    _, body = upload(server.base_url, alice.token, _png(), content_type="image/png")
    origin, media_id = split_mxc(body["content_uri"])
    base = f"{AUTHED}/thumbnail/{origin}/{media_id}"
    status, headers, data = download(server.base_url, base + "?width=32&height=32&method=crop", alice.token)
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(data)).size == (32, 32)
    status, _, data = download(server.base_url, base + "?width=300&height=200&method=scale", alice.token)
    assert status == 200 and Image.open(io.BytesIO(data)).size == (320, 240)
    status, _, data = download(server.base_url, base + "?width=0&height=10", alice.token)
    assert status == 400
    status, _, data = download(server.base_url, base + "?height=10", alice.token)
    assert status == 400 and b"M_MISSING_PARAM" in data
    # JPEG in, JPEG out; GIF and WebP in.
    for fmt, mime, out in (("JPEG", "image/jpeg", "image/jpeg"), ("GIF", "image/gif", "image/png"),
                           ("WEBP", "image/webp", "image/png")):
        _, body = upload(server.base_url, alice.token, _png(fmt=fmt), content_type=mime)
        origin, media_id = split_mxc(body["content_uri"])
        status, headers, data = download(server.base_url, f"{AUTHED}/thumbnail/{origin}/{media_id}"
                                         "?width=32&height=32&method=crop", alice.token)
        assert (status, headers["Content-Type"]) == (200, out), fmt


@pytest.mark.parametrize("payload,mime", [(b"plain text", "text/plain"),
                                          (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
                                          (b"\x89PNG\r\n\x1a\nnot really", "image/png")])
def test_no_thumbnail_of_non_images(server, alice, payload, mime):
    _, body = upload(server.base_url, alice.token, payload, content_type=mime)
    origin, media_id = split_mxc(body["content_uri"])
    status, _, data = download(server.base_url, f"{AUTHED}/thumbnail/{origin}/{media_id}?width=32&height=32",
                               alice.token)
    assert status == 400 and b"M_UNKNOWN" in data


def test_decompression_bomb_is_not_decoded(homeserver_factory):
    small = homeserver_factory(max_image_pixels="10K")
    user = small.register()
    _, body = upload(small.base_url, user.token, _png(200, 200), content_type="image/png")
    origin, media_id = split_mxc(body["content_uri"])
    status, _, data = download(small.base_url, f"{AUTHED}/thumbnail/{origin}/{media_id}?width=32&height=32",
                               user.token)
    assert status == 400 and b"max_image_pixels" in data


def test_an_upload_without_credentials_never_reaches_the_disk(server):
    status, body = upload(server.base_url, None, b"anonymous" * 1000)
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = upload(server.base_url, "not-a-token", b"forged" * 1000)
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert not os.listdir(os.path.join(server.dir, "media_store", "tmp"))


def test_chunked_and_form_typed_bodies_are_stored_as_sent(server, alice):
    payload = [b"part one, ", b"part two"]
    status, body = upload(server.base_url, alice.token, iter(payload), content_type="multipart/form-data; boundary=x")
    assert status == 200, body
    origin, media_id = split_mxc(body["content_uri"])
    status, headers, data = download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}", alice.token)
    assert (status, data) == (200, b"".join(payload))
    assert headers["Content-Type"] == "multipart/form-data; boundary=x"
    assert headers["Content-Disposition"] == "attachment"


def test_an_unknown_storage_provider_is_refused_at_start(homeserver_factory):
    from tests.integration.harness import ServerError

    server = homeserver_factory(start=False, media_storage_providers=[{"module": "nosuch.Provider",
                                                                       "store_local": True}])
    with pytest.raises(ServerError):
        server.start()
    assert "media_storage_providers[0].module: only s3_storage_provider.S3StorageProviderBackend" in server.log()


def test_a_full_disk_refuses_the_upload_and_keeps_nothing(homeserver_factory, tiny_disk):
    """media_store_path on an 8 MB file system: a 10 MB upload is refused (507), nothing half-stored, the server
    carries on and stores what fits."""
    server = homeserver_factory(media_store_path=tiny_disk, max_upload_size="20M")
    user = server.register()
    status, body = upload(server.base_url, user.token, b"z" * (10 * 1024 * 1024))
    assert status == 507 and body["errcode"] == "M_UNKNOWN", body
    assert not os.listdir(os.path.join(tiny_disk, "tmp"))
    status, body = upload(server.base_url, user.token, b"small")
    assert status == 200, body
    origin, media_id = split_mxc(body["content_uri"])
    assert download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}", user.token)[2] == b"small"
    server.stop()  # before the file system goes away

"""Media over federation (spec v1.19 server-server "Content repository"): a file uploaded on one server is
downloaded, and thumbnailed, by a user of the other, between two Hexagones and between Hexagone and Synapse,
each way; the copy is cached; max_upload_size and federation_domain_whitelist hold for remote media; the
federation endpoints answer multipart/mixed to signed requests only."""

from __future__ import annotations

import http.client
import io
import ssl

from PIL import Image

from tests.integration.harness import database_rows
from tests.integration.media_client import AUTHED, download, split_mxc, upload


def _image() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (400, 300), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def test_media_crosses_federation(pair):
    origin, other = pair
    uploader, reader = origin.process.register(), other.process.register()
    payload = b"federated bytes " * 5000
    status, body = upload(origin.process.base_url, uploader.token, payload, filename="report.pdf",
                          content_type="application/pdf")
    assert status == 200, body
    server, media_id = split_mxc(body["content_uri"])
    assert server == origin.name
    path = f"{AUTHED}/download/{server}/{media_id}"
    status, headers, data = download(other.process.base_url, path, reader.token)
    assert status == 200, data[:300]
    assert data == payload
    assert headers["Content-Type"] == "application/pdf"
    assert "report.pdf" in headers["Content-Disposition"]
    # A second download is served from the cache (Synapse ignores Range, Hexagone answers it).
    status, _, again = download(other.process.base_url, path, reader.token, {"Range": "bytes=0-7"})
    assert (status, again) in ((206, payload[:8]), (200, payload))


def test_thumbnail_crosses_federation(pair):
    origin, other = pair
    uploader, reader = origin.process.register(), other.process.register()
    status, body = upload(origin.process.base_url, uploader.token, _image(), content_type="image/png")
    server, media_id = split_mxc(body["content_uri"])
    status, headers, data = download(other.process.base_url,
                                     f"{AUTHED}/thumbnail/{server}/{media_id}?width=96&height=96&method=crop",
                                     reader.token)
    assert status == 200, data[:300]
    assert headers["Content-Type"] in ("image/png", "image/jpeg")
    width, height = Image.open(io.BytesIO(data)).size
    assert width <= 400 and height <= 300


def test_remote_media_is_cached_on_hexagone(home, hexagone_peer):
    uploader, reader = hexagone_peer.process.register(), home.process.register()
    _, body = upload(hexagone_peer.process.base_url, uploader.token, b"cache me")
    server, media_id = split_mxc(body["content_uri"])
    assert download(home.process.base_url, f"{AUTHED}/download/{server}/{media_id}", reader.token)[0] == 200
    rows = database_rows(home.process, "SELECT media_length, authenticated FROM remote_media "
                                       "WHERE server_name = ? AND media_id = ?", (server, media_id))
    assert rows == [(8, 1)]
    unknown = download(home.process.base_url, f"{AUTHED}/download/{server}/nosuchmedia", reader.token)
    assert unknown[0] == 404


def test_remote_media_over_max_upload_size_is_refused(fed, hexagone_peer):
    small = fed(max_upload_size="10K")
    uploader, reader = hexagone_peer.process.register(), small.process.register()
    _, body = upload(hexagone_peer.process.base_url, uploader.token, b"z" * 50_000)
    server, media_id = split_mxc(body["content_uri"])
    status, _, data = download(small.process.base_url, f"{AUTHED}/download/{server}/{media_id}", reader.token)
    assert status == 502 and b"M_TOO_LARGE" in data
    assert not database_rows(small.process, "SELECT media_id FROM remote_media")


def test_servers_outside_the_whitelist_are_not_asked(fed, hexagone_peer):
    closed = fed(federation_domain_whitelist=["elsewhere.example"])
    uploader, reader = hexagone_peer.process.register(), closed.process.register()
    _, body = upload(hexagone_peer.process.base_url, uploader.token, b"secret")
    server, media_id = split_mxc(body["content_uri"])
    status, _, data = download(closed.process.base_url, f"{AUTHED}/download/{server}/{media_id}", reader.token)
    assert status == 403 and b"M_FORBIDDEN" in data


def test_federation_endpoint_is_multipart_and_signed(home, hexagone_peer):
    uploader = home.process.register()
    _, body = upload(home.process.base_url, uploader.token, b"over the wire", content_type="text/plain")
    _, media_id = split_mxc(body["content_uri"])
    path = f"/_matrix/federation/v1/media/download/{media_id}"
    status, _ = home.https("GET", path)
    assert status == 401
    from federation.request_auth import sign_request
    from homeserver.config import read_signing_key
    key = read_signing_key(hexagone_peer.process.config["signing_key_path"])
    conn = http.client.HTTPSConnection("localhost", home.tls_port, timeout=30,
                                       context=ssl.create_default_context(cafile=home.ca_path))
    conn.request("GET", path, headers={"Authorization": sign_request(key, hexagone_peer.name, home.name, "GET",
                                                                     path)})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    assert response.status == 200
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/mixed; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    parts = data.split(b"--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    assert parts[1] == b"\r\nContent-Type: application/json\r\n\r\n{}\r\n"
    headers, _, content = parts[2].partition(b"\r\n\r\n")
    assert b"Content-Type: text/plain" in headers and content == b"over the wire\r\n"



def test_remote_download_waits_for_an_async_upload(home, hexagone_peer):
    """A file reserved with /create is fetched by the other server once its content arrives (timeout_ms)."""
    import threading

    uploader, reader = home.process.register(), hexagone_peer.process.register()
    status, created = uploader.request("POST", "/_matrix/media/v1/create")
    assert status == 200, created
    server, media_id = split_mxc(created["content_uri"])
    path = f"{AUTHED}/download/{server}/{media_id}?timeout_ms=20000"
    result = {}
    waiter = threading.Thread(target=lambda: result.update(r=download(hexagone_peer.process.base_url, path,
                                                                      reader.token)))
    waiter.start()
    # Whether the content lands before or while the origin holds the other server's request, it is served.
    status, body = upload(home.process.base_url, uploader.token, b"arrived later",
                          path=f"/_matrix/media/v3/upload/{server}/{media_id}", method="PUT")
    assert (status, body) == (200, {})
    waiter.join(40)
    assert result["r"][0] == 200 and result["r"][2] == b"arrived later"

"""TLS of federation (federation/tls.py): Python's ssl over Twisted transports, on both ends.

A real Hexagone TLS listener answers stdlib-ssl clients; in this process, on a
reactor thread, the outbound client exchanges big bodies with a TLS peer, a
client that never completes its handshake is dropped, and bad certificate,
key and CA files are refused with the configuration key that names them.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from signedjson.key import generate_signing_key
from twisted.internet import threads
from twisted.web import resource, server

from federation.client import RequestSendFailed
from federation.tls import ClientTlsPolicy, TlsServerFactory, server_context
from homeserver.config import ConfigError
from tests.integration.harness import free_port, hexagone_cli
from tests.integration.test_federation_transport import make_client, on_reactor, reactor, workers  # noqa: F401

pytestmark = pytest.mark.engine_independent  # TLS on the wire, whatever the server stores

VERSION_PATH = "/_matrix/federation/v1/version"


@pytest.fixture(scope="module")
def a(fed):
    return fed()


def _version_over(a, context: ssl.SSLContext) -> tuple[int, dict, ssl.SSLSocket]:
    conn = http.client.HTTPSConnection("localhost", a.tls_port, timeout=30, context=context)
    try:
        conn.request("GET", VERSION_PATH)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), conn.sock
    finally:
        conn.close()


def test_the_listener_speaks_http_1_1_to_a_client_offering_only_h2(a):
    context = ssl.create_default_context(cafile=a.ca_path)
    context.set_alpn_protocols(["h2"])
    status, body, sock = _version_over(a, context)
    assert (status, body["server"]["name"]) == (200, "Hexagone")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_the_listener_refuses_tls_below_1_2(a):
    context = ssl.create_default_context(cafile=a.ca_path)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client may offer TLS 1.1 at all
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):  # the listener's refusal
        _version_over(a, context)
    modern = ssl.create_default_context(cafile=a.ca_path)
    assert _version_over(a, modern)[0] == 200  # and the listener still serves the next client


class _Peer(resource.Resource):
    """GET: a big JSON body; POST: how many bytes of body came."""

    isLeaf = True

    def __init__(self, big: dict):
        super().__init__()
        self.big = json.dumps(big).encode()

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        return self.big

    def render_POST(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"received": len(request.content.read())}).encode()


@pytest.fixture(scope="module")
def peer(reactor, ca):  # noqa: F811
    """An in-process TLS listener (handshake timeout 0.5 s) serving :class:`_Peer`."""
    port = free_port()
    cert, key = ca.issue(f"peer{port}")
    big = {"items": ["x" * 1000] * 4000}  # 4 MB, many TLS records
    factory = TlsServerFactory(server.Site(_Peer(big)), server_context(cert, key), reactor, handshake_timeout_s=0.5)
    listening = threads.blockingCallFromThread(reactor, lambda: reactor.listenTCP(port, factory,
                                                                                 interface="127.0.0.1"))
    yield port, big
    threads.blockingCallFromThread(reactor, listening.stopListening)


def test_big_bodies_cross_both_ways(reactor, workers, ca, peer):  # noqa: F811
    port, big = peer
    client = make_client(reactor, workers, "me.example", generate_signing_key("k"), ca_files=[ca.cert_path])
    for _ in range(2):  # the second request reuses the pooled TLS connection
        assert on_reactor(reactor, lambda: client.get_json(f"localhost:{port}", "/big")) == big
    sent = {"items": ["y" * 1000] * 3000}
    answer = on_reactor(reactor, lambda: client.post_json(f"localhost:{port}", "/upload", sent))
    assert answer == {"received": len(json.dumps(sent, separators=(",", ":")).encode())}


def test_a_client_that_never_finishes_its_handshake_is_dropped(peer):
    port, _big = peer
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, without a word
        assert time.monotonic() - started < 5


def test_the_client_keeps_to_its_minimum_tls_version(reactor, workers, ca):  # noqa: F811
    port = free_port()
    cert, key = ca.issue(f"old{port}")
    context = server_context(cert, key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # a peer that cannot speak TLS 1.3
    site = server.Site(_Peer({"old": True}))
    listening = threads.blockingCallFromThread(
        reactor, lambda: reactor.listenTCP(port, TlsServerFactory(site, context, reactor), interface="127.0.0.1"))
    try:
        signing_key = generate_signing_key("k")
        default = make_client(reactor, workers, "me.example", signing_key, ca_files=[ca.cert_path])
        assert on_reactor(reactor, lambda: default.get_json(f"localhost:{port}", "/")) == {"old": True}
        strict = make_client(reactor, workers, "me.example", signing_key, ca_files=[ca.cert_path], minimum_tls="1.3")
        with pytest.raises(RequestSendFailed, match="VERSION|version"):
            on_reactor(reactor, lambda: strict.get_json(f"localhost:{port}", "/"))
    finally:
        threads.blockingCallFromThread(reactor, listening.stopListening)


def _write_key(path, key, encryption=serialization.NoEncryption()) -> str:
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return str(path)


def test_bad_certificate_key_and_ca_files_are_configuration_errors(tmp_path, ca):
    cert, key = ca.issue("good")
    server_context(cert, key)
    other_key = _write_key(tmp_path / "other.key", ec.generate_private_key(ec.SECP256R1()))
    locked_key = _write_key(tmp_path / "locked.key", ec.generate_private_key(ec.SECP256R1()),
                            serialization.BestAvailableEncryption(b"secret"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ((str(tmp_path / "missing.crt"), key), "tls_certificate_path: cannot read"),
        ((cert, str(tmp_path / "missing.key")), "tls_private_key_path: cannot read"),
        ((str(garbage), key), "tls_certificate_path"),
        ((cert, other_key), "tls_private_key_path"),
        ((cert, locked_key), "unencrypted private key"),  # refused, never a passphrase prompt
    ]
    for (cert_path, key_path), message in cases:
        with pytest.raises(ConfigError, match=message):
            server_context(cert_path, key_path)
    with pytest.raises(ConfigError, match="federation_custom_ca_list: .*garbage.pem"):
        ClientTlsPolicy(ca_files=[str(garbage)])
    assert ClientTlsPolicy(ca_files=[ca.cert_path]).context.verify_mode == ssl.CERT_REQUIRED
    unchecked = ClientTlsPolicy(verify=False).context
    assert (unchecked.verify_mode, unchecked.check_hostname) == (ssl.CERT_NONE, False)


def test_a_tls_listener_with_a_bad_key_is_refused_at_start(homeserver_factory, ca, tmp_path):
    cert, _key = ca.issue("start")
    other_key = _write_key(tmp_path / "other.key", ec.generate_private_key(ec.SECP256R1()))
    process = homeserver_factory(
        start=False, tls_certificate_path=cert, tls_private_key_path=other_key,
        listeners=[{"port": free_port(), "tls": True, "type": "http", "bind_addresses": ["127.0.0.1"],
                    "resources": [{"names": ["federation"]}]}])
    r = hexagone_cli("run", "--config", process.config_path, cwd=process.dir, timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "tls_private_key_path" in r.stderr and "Traceback" not in r.stderr, r.stderr

"""Real Hexagone processes federating over TLS, for the federation tests.

Each server is named ``localhost:<tls port>`` and serves federation on a TLS
listener whose certificate comes from a throwaway CA that every server trusts.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest

from federation.request_auth import sign_request
from homeserver.config import read_signing_key
from homeserver.events.builder import build_event
from homeserver.events.hashing import compute_event_id, strip_convenience_keys
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.integration.fedtls import CertificateAuthority
from tests.integration.harness import free_port, unique


@dataclass
class FedServer:
    process: Any  # harness.ServerProcess
    name: str
    tls_port: int
    signing_key: Any
    ca_path: str

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.signing_key.version}"

    def https(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("localhost", self.tls_port, timeout=60,
                                           context=ssl.create_default_context(cafile=self.ca_path))
        try:
            payload = None if body is None else json.dumps(body).encode()
            all_headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=payload, headers={**all_headers, **(headers or {})})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, json.loads(data) if data else None

    def signed(self, method: str, path: str, *, origin: str, key, destination: str | None = None,
               content: Any = None) -> tuple[int, Any]:
        """A request from ``origin`` signed with ``key``, as another server would make it."""
        header = sign_request(key, origin, destination or self.name, method, path, content)
        return self.https(method, path, content, {"Authorization": header})


def start_fed_server(factory, ca: CertificateAuthority, name_port: int | None = None, **overrides) -> FedServer:
    """A Hexagone process named ``localhost:<tls port>`` with a TLS federation listener; with ``name_port``,
    named ``localhost:<name_port>`` (where a proxy forwards to its listener) instead."""
    process = factory(start=False)
    tls_port = free_port(process.port)
    cert, key = ca.issue(f"hs{tls_port}")
    process.reconfigure(**{
        "server_name": f"localhost:{name_port or tls_port}",
        "listeners": process.config["listeners"] + [{
            "port": tls_port, "tls": True, "type": "http", "x_forwarded": False, "bind_addresses": ["127.0.0.1"],
            "resources": [{"names": ["federation"], "compress": False}]}],
        "tls_certificate_path": cert, "tls_private_key_path": key, "federation_custom_ca_list": [ca.cert_path],
        "ip_range_whitelist": ["127.0.0.0/8"], "trusted_key_servers": [], "suppress_key_server_warning": True,
        **overrides})
    process.start()
    return FedServer(process, process.config["server_name"], tls_port,
                     read_signing_key(os.path.join(process.dir, "signing.key")), ca.cert_path)


class EventForge:
    """Builds PDUs as a given server (with its signing key) on top of a room's newest event."""

    def __init__(self, host, owner, room_id, server, member):
        self.server, self.room_id = server, room_id
        self.version = KNOWN_ROOM_VERSIONS[
            owner.ok("GET", f"/rooms/{quote(room_id)}/state/m.room.create")["room_version"]]
        self.state = {(e["type"], e["state_key"]): e["event_id"]
                      for e in owner.ok("GET", f"/rooms/{quote(room_id)}/state")}
        self.latest = owner.messages(room_id, dir="b", limit=1)["chunk"][0]["event_id"]
        status, body = host.signed("GET", f"/_matrix/federation/v1/event/{quote(self.latest)}",
                                   origin=server.name, key=server.signing_key)
        assert status == 200, body
        self.depth = body["pdus"][0]["depth"]
        self.auth = self.auth_of(("m.room.power_levels", ""), ("m.room.member", member.user_id))

    def auth_of(self, *keys) -> list[str]:
        """The current state's events at ``keys`` (and the create event where the room version lists it)."""
        create = [("m.room.create", "")] if self.version.create_event_in_auth_events else []
        return [self.state[k] for k in (*keys, *create)]

    def message(self, sender, body, *, prev=None, member=True, **changes) -> dict:
        return self.event(sender, "m.room.message", {"msgtype": "m.text", "body": body}, prev=prev, member=member,
                          **changes)

    def event(self, sender, event_type, content, /, *, prev=None, member=True, redacts=None, state_key=None,
              auth=None, **changes) -> dict:
        """A signed PDU after ``prev`` (an event id or a list of them; else the newest event), with ``auth`` as its
        auth events (else the power levels, the member's event (unless not ``member``) and the create event);
        ``changes`` are made after signing (a forgery). Its id, as a receiver computes it, is under ``_id``."""
        pdu = build_event(self.version, server_name=self.server.name, signing_key=self.server.signing_key,
                          room_id=self.room_id, sender=sender, event_type=event_type, content=content,
                          state_key=state_key, prev_events=[prev] if isinstance(prev, str) else prev or [self.latest],
                          auth_events=auth if auth is not None else self.auth if member else self.auth[:1],
                          depth=self.depth + 1, origin_server_ts=int(time.time() * 1000), redacts=redacts)
        self.depth += 1
        pdu = strip_convenience_keys(pdu, self.version)
        pdu.update(changes)
        return dict(pdu, _id=compute_event_id(pdu, self.version))


def put_transaction(to, origin, pdus=(), edus=(), txn_id: str | None = None) -> tuple[int, Any]:
    """PUT /send as ``origin`` (a server whose signing key the test holds): (status, body)."""
    pdus = [{k: v for k, v in p.items() if k != "_id"} for p in pdus]
    txn = {"origin": origin.name, "origin_server_ts": int(time.time() * 1000), "pdus": pdus, "edus": list(edus)}
    return to.signed("PUT", f"/_matrix/federation/v1/send/{txn_id or unique('txn')}", origin=origin.name,
                     key=origin.signing_key, content=txn)


def send_transaction(to, origin, pdus, edus=()) -> dict:
    """A /send transaction signed by ``origin`` that must be answered 200; returns its PDU results."""
    status, result = put_transaction(to, origin, pdus, edus)
    assert status == 200, result
    return result["pdus"]


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> CertificateAuthority:
    return CertificateAuthority(str(tmp_path_factory.mktemp("ca")))


@pytest.fixture(scope="module")
def fed(homeserver_factory, ca):
    return lambda **overrides: start_fed_server(homeserver_factory, ca, **overrides)


class FederationProxy:
    """A TLS front for one server's federation listener that can refuse chosen requests (503), as a
    network fault would, or answer them itself (``answers``: path prefix -> (status, JSON body)), as a lying
    server would, while it forwards the others unchanged; it notes which requests it refused, and keeps each
    request it forwarded (``forwarded``: method, path, body) and the path of every one (``asked``)."""

    def __init__(self, ca: CertificateAuthority):
        self.ca_path = ca.cert_path
        self.target_port: int | None = None
        self.refused_prefixes: tuple[str, ...] = ()
        self.refused = threading.Event()
        self.answers: dict[str, tuple[int, Any]] = {}
        self.forwarded: list[tuple[str, str, bytes]] = []
        self.asked: list[str] = []  # the path of every request, answered or forwarded
        cert, key = ca.issue(f"proxy{id(self)}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.asked.append(self.path)
                answer = next((a for prefix, a in proxy.answers.items() if self.path.startswith(prefix)), None)
                if answer is not None:
                    status, data, content_type = answer[0], json.dumps(answer[1]).encode(), "application/json"
                elif self.path.startswith(proxy.refused_prefixes):
                    proxy.refused.set()
                    status, data, content_type = 503, b'{"errcode":"M_UNKNOWN","error":"unavailable"}', "application/json"
                else:
                    proxy.forwarded.append((self.command, self.path, body))
                    conn = http.client.HTTPSConnection("localhost", proxy.target_port, timeout=60,
                                                       context=ssl.create_default_context(cafile=proxy.ca_path))
                    try:
                        headers = {k: v for k, v in self.headers.items()
                                   if k.lower() in ("authorization", "content-type", "host")}
                        conn.request(self.command, self.path, body=body or None, headers=headers)
                        response = conn.getresponse()
                        status, data = response.status, response.read()
                        content_type = response.getheader("Content-Type") or "application/json"
                    finally:
                        conn.close()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = _forward

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()




@pytest.fixture(scope="module")
def home(fed) -> FedServer:
    """The Hexagone server under test (it publishes its room directory over federation)."""
    return fed(allow_public_rooms_over_federation=True)


@pytest.fixture(scope="module")
def hexagone_peer(fed) -> FedServer:
    """A second Hexagone, whose signing key the tests hold (to sign requests as it)."""
    return fed(allow_public_rooms_over_federation=True)


@pytest.fixture(scope="module")
def synapse_presence() -> bool:
    """Whether the Synapse peer enables presence; a module that tests presence overrides it."""
    return False


@pytest.fixture(scope="module")
def synapse_peer(ca, tmp_path_factory, synapse_presence):
    """A real Synapse federating with the others (see ``synapse.py``)."""
    from tests.integration.synapse import SynapsePeer, SynapseProcess
    process = SynapseProcess(str(tmp_path_factory.mktemp("synapse")), ca, presence=synapse_presence).start()
    yield SynapsePeer(process)
    process.stop()


@pytest.fixture(scope="module", params=["hexagone", "synapse"])
def peer(request):
    """The other server: :func:`hexagone_peer` or :func:`synapse_peer`."""
    return request.getfixturevalue(f"{request.param}_peer")


@pytest.fixture(params=["home_first", "peer_first"])
def pair(request, home, peer):
    """(home, peer) and (peer, home): each test runs in both directions (the first server hosts the room)."""
    return (home, peer) if request.param == "home_first" else (peer, home)


@pytest.fixture(params=["one_server", "hexagone-home_first", "hexagone-peer_first", "synapse-home_first",
                        "synapse-peer_first"])
def topology(request, home):
    """(the server of the room's creator, the server of the other users) for a scenario that must hold the same
    on one server (``home`` twice), between two Hexagones, and between Hexagone and Synapse, each way."""
    if request.param == "one_server":
        return home, home
    kind, order = request.param.split("-")
    other = request.getfixturevalue(f"{kind}_peer")
    return (home, other) if order == "home_first" else (other, home)

"""Federation transport between real Hexagone processes over TLS (keys, notary, signed
requests, allow-list), and, in this process on a reactor thread, the outbound client
(certificate checks, IP ranges) and the transaction sender against a small recording peer; the
sender's back-off timers run on a fake clock that the tests advance."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from signedjson.key import generate_signing_key, get_verify_key
from twisted.internet import defer, threads
from twisted.internet.task import Clock
from twisted.web import resource, server
from unpaddedbase64 import encode_base64

from federation.api.keys import MAX_KEYS_DEVICES, MAX_KEYS_USERS
from federation.client import (BlockedAddressError, FederationClient, FederationDeniedError, HttpResponseError,
                               RequestSendFailed)
from federation.keys import KeyLookupError, KeyRing, ServerKeys, keys_from_response
from federation.peers import FederationPeers
from federation.policy import IpRangeFilter
from federation.request_auth import AuthHeaderError, parse_x_matrix, sign_request, verify_request
from federation.sender import FederationSender
from federation.tls import ClientTlsPolicy, TlsServerFactory, server_context
from federation.api.key_server import MAX_QUERY_KEY_IDS, MAX_QUERY_SERVERS
from homeserver.config import DEFAULT_IP_RANGE_BLACKLIST, parse_config
from homeserver.events.signing import verify_signed_json
from homeserver.storage import federation_queue
from homeserver.storage import server_keys as server_keys_storage
from homeserver.storage.database import Database, open_engine
from homeserver.storage.schema import apply_migrations
from homeserver.storage.streams import StreamIdGenerator
from homeserver.worker_threads import WorkerThreads
from tests.integration.fedtls import CertificateAuthority
from tests.integration.federation import FedServer
from tests.integration.harness import database_config_for_test, free_port, wait_for
from tests.integration.reactor_thread import on_reactor, reactor  # noqa: F401 (fixture)

VERSION_PATH = "/_matrix/federation/v1/version"


def now_ms() -> int:
    return int(time.time() * 1000)


# -- real servers -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def a(fed) -> FedServer:
    return fed()


@pytest.fixture(scope="module")
def b(fed) -> FedServer:
    return fed()


def countersigned_by(response: dict, server: FedServer) -> None:
    verify_signed_json(response, server.name, lambda _s, key_id: get_verify_key(server.signing_key)
                       if key_id == server.key_id else None)


def test_key_server_publishes_self_signed_keys(a):
    status, body = a.https("GET", "/_matrix/key/v2/server")
    assert status == 200, body
    keys = keys_from_response(body, a.name, now_ms())
    assert keys[a.key_id][0].encode() == get_verify_key(a.signing_key).encode()
    assert body["valid_until_ts"] > now_ms() + 3600_000  # spec: not less than an hour ahead
    assert a.https("GET", f"/_matrix/key/v2/server/{a.key_id}")[1]["verify_keys"] == body["verify_keys"]
    assert a.process.request("GET", "/_matrix/key/v2/server")[0] == 200  # also on the plain listener


def test_notary_fetches_directly_and_countersigns(a, b):
    status, body = a.https("GET", f"/_matrix/key/v2/query/{quote(b.name)}")
    assert status == 200, body
    (response,) = body["server_keys"]
    assert keys_from_response(response, b.name, now_ms())[b.key_id][0].encode() == \
        get_verify_key(b.signing_key).encode()
    countersigned_by(response, a)

    criteria = {b.name: {b.key_id: {"minimum_valid_until_ts": now_ms()}}, a.name: {}}
    status, body = a.https("POST", "/_matrix/key/v2/query", {"server_keys": criteria})
    assert status == 200, body
    by_name = {r["server_name"]: r for r in body["server_keys"]}
    assert set(by_name) == {a.name, b.name}
    for response in by_name.values():
        countersigned_by(response, a)
    countersigned_by(by_name[b.name], b)


@pytest.mark.parametrize("method, path, body, status, errcode", [
    ("POST", "/_matrix/key/v2/query", {}, 400, "M_BAD_JSON"),
    ("POST", "/_matrix/key/v2/query", {"server_keys": {"x.example": []}}, 400, "M_BAD_JSON"),
    ("POST", "/_matrix/key/v2/query", {"server_keys": {"x.example": {"ed25519:a": {"minimum_valid_until_ts": "x"}}}},
     400, "M_BAD_JSON"),
    ("POST", "/_matrix/key/v2/query", {"server_keys": {"bad name!": {}}}, 400, "M_INVALID_PARAM"),
    ("GET", "/_matrix/key/v2/query/bad%20name", None, 400, "M_INVALID_PARAM"),
    ("GET", "/_matrix/key/v2/query/x.example?minimum_valid_until_ts=soon", None, 400, "M_INVALID_PARAM"),
    ("PUT", "/_matrix/key/v2/server", {}, 405, "M_UNRECOGNIZED"),
])
def test_notary_errors(a, method, path, body, status, errcode):
    got_status, got = a.https(method, path, body)
    assert (got_status, got["errcode"]) == (status, errcode), got


def test_notary_query_naming_too_many_servers_or_keys_is_refused(a):
    """One unauthenticated query may not fan out to any number of servers: 413 M_TOO_LARGE past the caps."""
    too_many_servers = {f"s{i}.invalid": {} for i in range(MAX_QUERY_SERVERS + 1)}
    too_many_keys = {"x.invalid": {f"ed25519:{i}": {} for i in range(MAX_QUERY_KEY_IDS + 1)}}
    for criteria in (too_many_servers, too_many_keys):
        status, body = a.https("POST", "/_matrix/key/v2/query", {"server_keys": criteria})
        assert (status, body["errcode"]) == (413, "M_TOO_LARGE"), body


def test_federation_keys_query_and_claim_naming_too_many_users_are_refused(a, b):
    users = [f"@u{i}:{b.name}" for i in range(MAX_KEYS_USERS + 1)]
    for path, content in (("/user/keys/query", {"device_keys": {u: [] for u in users}}),
                          ("/user/keys/claim", {"one_time_keys": {u: {"D": "signed_curve25519"} for u in users}}),
                          ("/user/keys/claim", {"one_time_keys": {users[0]: {
                              f"D{i}": "signed_curve25519" for i in range(MAX_KEYS_DEVICES + 1)}}})):
        status, body = b.signed("POST", "/_matrix/federation/v1" + path, origin=a.name, key=a.signing_key,
                                content=content)
        assert (status, body["errcode"]) == (413, "M_TOO_LARGE"), body
    status, body = b.signed("POST", "/_matrix/federation/v1/user/keys/query", origin=a.name, key=a.signing_key,
                            content={"device_keys": {u: [] for u in users[:MAX_KEYS_USERS]}})
    assert status == 200, body


def test_notary_answers_empty_for_unreachable_servers(a):
    assert a.https("GET", f"/_matrix/key/v2/query/localhost:{free_port()}") == (200, {"server_keys": []})
    assert a.https("POST", "/_matrix/key/v2/query", {"server_keys": {}}) == (200, {"server_keys": []})


def test_signed_request_between_servers(a, b):
    status, body = b.signed("GET", VERSION_PATH, origin=a.name, key=a.signing_key)
    assert status == 200, body
    assert body["server"]["name"] == "Hexagone" and body["server"]["version"]
    assert b.https("GET", VERSION_PATH)[0] == 200  # the endpoint needs no authentication


def test_forged_requests_are_refused(a, b):
    header = sign_request(a.signing_key, a.name, b.name, "GET", VERSION_PATH)
    sig = parse_x_matrix(header).signature
    one_byte = header.replace(sig, sig[:5] + ("A" if sig[5] != "A" else "B") + sig[6:])
    impostor = generate_signing_key(a.signing_key.version)  # A's key id, another key
    forged = {
        "one byte of the signature changed": one_byte,
        "signed for another destination": sign_request(a.signing_key, a.name, "elsewhere.example", "GET",
                                                       VERSION_PATH).replace("elsewhere.example", b.name),
        "destination is not this server": sign_request(a.signing_key, a.name, "elsewhere.example", "GET",
                                                       VERSION_PATH),
        "unknown key id": sign_request(generate_signing_key("nope"), a.name, b.name, "GET", VERSION_PATH),
        "another key under a known key id": sign_request(impostor, a.name, b.name, "GET", VERSION_PATH),
        "signed for another path": sign_request(a.signing_key, a.name, b.name, "GET", "/_matrix/key/v2/server"),
    }
    for what, header in forged.items():
        status, body = b.https("GET", VERSION_PATH, headers={"Authorization": header})
        assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED"), what
    malformed = {  # a malformed X-Matrix header is a bad request (as Synapse)
        "garbled header": "X-Matrix this is not it",
        "origin missing": f'X-Matrix key="{a.key_id}",sig="{sig}"',
        "origin not a server name (non-numeric port)": sign_request(a.signing_key, "localhost:http", b.name, "GET",
                                                                    VERSION_PATH),
    }
    for what, header in malformed.items():
        status, body = b.https("GET", VERSION_PATH, headers={"Authorization": header})
        assert (status, body["errcode"]) == (400, "M_UNAUTHORIZED"), what


def test_origin_outside_allow_list_is_refused(fed, a, b):
    c = fed(federation_domain_whitelist=[a.name])
    status, body = c.signed("GET", VERSION_PATH, origin=b.name, key=b.signing_key)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert c.signed("GET", VERSION_PATH, origin=a.name, key=a.signing_key)[0] == 200
    # outbound too: c does not even fetch b's keys
    assert c.https("GET", f"/_matrix/key/v2/query/{quote(b.name)}") == (200, {"server_keys": []})
    assert "not in federation_domain_whitelist" in c.process.log()


def test_keys_through_a_notary(fed, a):
    gone = fed()
    assert len(a.https("GET", f"/_matrix/key/v2/query/{quote(gone.name)}")[1]["server_keys"]) == 1  # a caches it
    gone.process.stop()

    d = fed(trusted_key_servers=[{"server_name": a.name}])
    status, body = d.signed("GET", VERSION_PATH, origin=gone.name, key=gone.signing_key)
    assert status == 200, body  # gone is unreachable: its key came from a, checked against a's own key
    status, body = d.https("GET", f"/_matrix/key/v2/query/{quote(gone.name)}")
    (response,) = body["server_keys"]  # d now serves what a vouched for, countersigned by d
    assert keys_from_response(response, gone.name, now_ms())[gone.key_id][0].encode() == \
        get_verify_key(gone.signing_key).encode()
    countersigned_by(response, d)

    wrong_key = encode_base64(get_verify_key(generate_signing_key("x")).encode())
    distrusting = fed(trusted_key_servers=[{"server_name": a.name, "verify_keys": {a.key_id: wrong_key}}])
    status, body = distrusting.signed("GET", VERSION_PATH, origin=gone.name, key=gone.signing_key)
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    assert "not signed by it" in distrusting.process.log()


# -- in this process: client and sender -------------------------------------------------------

@pytest.fixture(scope="session")
def workers(reactor):
    """The worker threads of the clients and PDU checks made here, stopped at the end of the session."""
    threads = WorkerThreads(reactor)
    yield threads
    threads.stop()


def make_client(reactor, workers, server_name: str, key, *, ca_files=(), verify=True,
                ip_whitelist=("127.0.0.0/8",), whitelist=None, timeout_s: float = 15,
                minimum_tls: str = "1.2") -> FederationClient:
    return FederationClient(reactor=reactor, threads=workers, server_name=server_name, signing_key=key,
                            tls_policy=ClientTlsPolicy(verify=verify, ca_files=list(ca_files),
                                                       minimum_version=minimum_tls),
                            ip_filter=IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST, ip_whitelist),
                            peers=FederationPeers(whitelist), now_ms=lambda: int(reactor.seconds() * 1000),
                            timeout_s=timeout_s, connect_timeout_s=5)


class RecordingPeer(resource.Resource):
    """A federation peer that checks X-Matrix signatures and records ``/send`` transactions."""

    isLeaf = True

    def __init__(self, reactor, name: str, origin: str, origin_key):
        super().__init__()
        self.reactor = reactor
        self.name = name
        self.origin = origin
        self.origin_verify_key = get_verify_key(origin_key)
        self.transactions: list[tuple[str, dict]] = []
        self.statuses: list[int] = []  # statuses to answer with, in order, before 200s
        self.in_flight = self.max_in_flight = 0

    def render_PUT(self, request):
        body = json.loads(request.content.read())
        try:
            auth = parse_x_matrix(request.getHeader(b"authorization").decode())
            assert (auth.origin, auth.destination) == (self.origin, self.name)
            verify_request(auth, self.origin_verify_key, "PUT", request.uri.decode(), self.name, body)
        except (AuthHeaderError, AssertionError, AttributeError):
            request.setResponseCode(401)
            return b'{"errcode": "M_UNAUTHORIZED", "error": "bad signature"}'
        prefix = b"/_matrix/federation/v1/send/"
        assert request.path.startswith(prefix)
        self.transactions.append((request.path[len(prefix):].decode(), body))
        status = self.statuses.pop(0) if self.statuses else 200
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

        def answer():
            self.in_flight -= 1
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"application/json")
            request.write(json.dumps({"pdus": {p["event_id"]: {} for p in body["pdus"]}} if status == 200
                                     else {"errcode": "M_UNKNOWN", "error": "try again"}).encode())
            request.finish()

        self.reactor.callLater(0.005, answer)
        return server.NOT_DONE_YET

    def pdu_ids(self) -> list[str]:
        seen, out = set(), []
        for txn_id, body in self.transactions:
            if txn_id not in seen:
                seen.add(txn_id)
                out += [p["event_id"] for p in body["pdus"]]
        return out


class PeerListener:
    """Starts and stops a TLS listener for a peer resource on a fixed port."""

    def __init__(self, reactor, ca: CertificateAuthority, peer_resource, port: int | None = None, **issue):
        self.reactor = reactor
        self.port = port or free_port()
        self.cert, self.key = ca.issue(f"peer{self.port}", **issue)
        self.resource = peer_resource
        self._listening = None

    def start(self) -> None:
        site = server.Site(self.resource)
        factory = TlsServerFactory(site, server_context(self.cert, self.key), self.reactor)
        self._listening = threads.blockingCallFromThread(
            self.reactor, lambda: self.reactor.listenTCP(self.port, factory, interface="127.0.0.1"))

    def stop(self) -> None:
        port, self._listening = self._listening, None
        if port is not None:
            threads.blockingCallFromThread(self.reactor, port.stopListening)


def test_client_signs_requests_that_a_real_server_accepts(reactor, workers, a, b, ca):
    client = make_client(reactor, workers, a.name, a.signing_key, ca_files=[ca.cert_path])
    body = on_reactor(reactor, lambda: client.get_json(b.name, VERSION_PATH))
    assert body["server"]["name"] == "Hexagone"
    keys = on_reactor(reactor, lambda: client.post_json(b.name, "/_matrix/key/v2/query",
                                                        {"server_keys": {b.name: {}}}))
    assert [r["server_name"] for r in keys["server_keys"]] == [b.name]
    with pytest.raises(HttpResponseError) as e:
        on_reactor(reactor, lambda: client.get_json(b.name, "/_matrix/federation/v1/nothing/here", {"x": "1"}))
    assert (e.value.status, e.value.errcode) == (404, "M_UNRECOGNIZED")
    stranger = make_client(reactor, workers, "stranger.example", generate_signing_key("s"),
                           ca_files=[ca.cert_path])
    with pytest.raises(HttpResponseError) as e:  # b cannot fetch the keys of stranger.example
        on_reactor(reactor, lambda: stranger.get_json(b.name, VERSION_PATH))
    assert (e.value.status, e.value.errcode) == (401, "M_UNAUTHORIZED")


def test_client_allow_list_applies_outbound(reactor, workers, a, b, ca):
    client = make_client(reactor, workers, a.name, a.signing_key, ca_files=[ca.cert_path], whitelist=[a.name])
    with pytest.raises(FederationDeniedError):
        on_reactor(reactor, lambda: client.get_json(b.name, VERSION_PATH))


def test_client_refuses_plain_http_peer(reactor, workers, a, b, ca):
    client = make_client(reactor, workers, a.name, a.signing_key, ca_files=[ca.cert_path], timeout_s=2)
    with pytest.raises(RequestSendFailed):  # no TLS handshake ever completes
        on_reactor(reactor, lambda: client.get_json(f"localhost:{b.process.port}", VERSION_PATH))


def test_client_checks_certificates(reactor, workers, tmp_path, ca):
    foreign_ca = CertificateAuthority(str(tmp_path / "foreign"), name="Untrusted CA")
    key = generate_signing_key("k")
    peer = resource.Resource()
    peer.putChild(b"ping", _Json({"pong": True}))
    untrusted = PeerListener(reactor, foreign_ca, peer)
    wrong_name = PeerListener(reactor, ca, peer, dns_names=("otherhost",), ips=())
    untrusted.start()
    wrong_name.start()
    try:
        checking = make_client(reactor, workers, "me.example", key, ca_files=[ca.cert_path])
        for listener in (untrusted, wrong_name):
            with pytest.raises(RequestSendFailed):
                on_reactor(reactor, lambda: checking.get_json(f"localhost:{listener.port}", "/ping"))
        trusting_foreign = make_client(reactor, workers, "me.example", key, ca_files=[foreign_ca.cert_path])
        assert on_reactor(reactor, lambda: trusting_foreign.get_json(f"localhost:{untrusted.port}", "/ping")) == \
            {"pong": True}
        unchecked = make_client(reactor, workers, "me.example", key, verify=False)
        for listener in (untrusted, wrong_name):
            assert on_reactor(reactor, lambda: unchecked.get_json(f"localhost:{listener.port}", "/ping")) == \
                {"pong": True}
    finally:
        untrusted.stop()
        wrong_name.stop()


def test_client_refuses_blacklisted_addresses(reactor, workers, a, ca):
    client = make_client(reactor, workers, a.name, a.signing_key, ca_files=[ca.cert_path], ip_whitelist=())
    for destination in (a.name, f"127.0.0.1:{a.tls_port}", f"[::1]:{a.tls_port}"):
        with pytest.raises(BlockedAddressError, match="ip_range_blacklist"):
            on_reactor(reactor, lambda: client.get_json(destination, VERSION_PATH))


class _Json(resource.Resource):
    isLeaf = True

    def __init__(self, body: dict):
        super().__init__()
        self.body = body

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(self.body).encode()


@dataclass
class SenderRig:
    """A sender's collaborators: the store and client run on the real reactor (thread), its timers and
    ``now_ms`` on ``clock``, a fake clock that only :meth:`advance` moves."""

    reactor: Any
    clock: Clock
    db: Database
    store: federation_queue.FederationQueueStore
    client: FederationClient
    origin: str
    key: Any

    def sender(self, whitelist=None, **retry) -> FederationSender:
        return FederationSender(reactor=self.clock, store=self.store, client=self.client, server_name=self.origin,
                                peers=FederationPeers(whitelist), now_ms=lambda: int(self.clock.seconds() * 1000),
                                positions=StreamIdGenerator(self.store.max_position_sync()), **retry)

    def pending(self) -> dict[str, int]:
        states = on_reactor(self.reactor, self.store.pending_destinations)
        return {s.destination: s.retry_interval_ms for s in states}

    def timers(self) -> list[float]:
        """The delays (s) of the back-off timers armed, from now on the fake clock (read on the reactor thread)."""
        return threads.blockingCallFromThread(self.reactor, lambda: sorted(
            call.getTime() - self.clock.seconds() for call in self.clock.getDelayedCalls()))

    def advance(self, seconds: float) -> None:
        """Move the fake clock on the reactor thread (where the timers' callbacks must run)."""
        threads.blockingCallFromThread(self.reactor, self.clock.advance, seconds)

    def backed_off(self, dest: str, interval_ms: int) -> None:
        """Wait until ``dest`` is backed off for ``interval_ms`` and its timer is armed for exactly that."""
        wait_for(lambda: rig_state(self, dest) == (interval_ms, [pytest.approx(interval_ms / 1000)]),
                 f"a back-off of {interval_ms} ms")


def rig_state(rig: SenderRig, dest: str) -> tuple[int | None, list[float]]:
    """(the back-off interval persisted for ``dest``, the delays of the timers armed)."""
    return rig.pending().get(dest), rig.timers()


@pytest.fixture
def rig(reactor, workers, tmp_path, ca):
    config = parse_config({"server_name": "origin.example", "database": database_config_for_test(str(tmp_path))},
                          str(tmp_path / "homeserver.yaml"))  # SQLite, or PostgreSQL per HEXAGONE_TEST_DATABASE
    db = Database(open_engine(config.database), reactor)
    apply_migrations(db, {"federation_queue": federation_queue.MIGRATIONS})
    key = generate_signing_key("o")
    client = make_client(reactor, workers, "origin.example", key, ca_files=[ca.cert_path])
    yield SenderRig(reactor, Clock(), db, federation_queue.FederationQueueStore(db), client, "origin.example", key)
    db.close()


def peer_for(rig: SenderRig, ca) -> tuple[RecordingPeer, PeerListener, str]:
    port = free_port()
    name = f"localhost:{port}"
    peer = RecordingPeer(rig.reactor, name, rig.origin, rig.key)
    return peer, PeerListener(rig.reactor, ca, peer, port), name


def pdu(i: int) -> dict:
    return {"event_id": f"$event{i}", "type": "m.room.message", "content": {"body": str(i)}}


def test_sender_catches_up_in_order_when_the_peer_comes_up(rig, ca):
    peer, listener, dest = peer_for(rig, ca)
    sender = rig.sender(min_retry_ms=200, max_retry_ms=1000)
    for i in range(120):
        on_reactor(rig.reactor, lambda: sender.send_pdu([dest, rig.origin], pdu(i)))
        if i % 4 == 0:
            on_reactor(rig.reactor, lambda: sender.send_edu(dest, "m.test", {"n": i}))
    rig.backed_off(dest, 200)  # the peer is down
    listener.start()
    try:
        rig.advance(0.199)
        assert rig_state(rig, dest) == (200, [pytest.approx(0.001)]) and peer.transactions == []
        rig.advance(0.001)
        wait_for(lambda: len(peer.pdu_ids()) == 120, "every PDU to arrive")
        assert peer.pdu_ids() == [f"$event{i}" for i in range(120)]
        edus = [e for _, body in peer.transactions for e in body.get("edus", [])]
        assert [e["content"]["n"] for e in edus] == list(range(0, 120, 4))
        assert all(e["edu_type"] == "m.test" for e in edus)
        for txn_id, body in peer.transactions:
            assert len(body["pdus"]) <= 50 and len(body.get("edus", [])) <= 100
            assert body["origin"] == rig.origin and isinstance(body["origin_server_ts"], int)
        assert len({t for t, _ in peer.transactions}) == len(peer.transactions) >= 3
        assert peer.max_in_flight == 1
        wait_for(lambda: rig.pending() == {}, "the queue to empty")
    finally:
        sender.stop()
        listener.stop()


@pytest.mark.parametrize("multiplier, intervals_ms", [(2, [100, 200, 400, 400]), (1.5, [100, 150, 225, 337])])
def test_sender_resends_the_same_transaction_until_acknowledged(rig, ca, multiplier, intervals_ms):
    """The interval grows from the minimum by the multiplier at each failure, up to the maximum."""
    peer, listener, dest = peer_for(rig, ca)
    peer.statuses = [500, 429, 503, 500]
    listener.start()
    sender = rig.sender(min_retry_ms=100, max_retry_ms=400, retry_multiplier=multiplier)
    try:
        on_reactor(rig.reactor, lambda: sender.send_pdu([dest], pdu(1)))
        for attempt, interval_ms in enumerate(intervals_ms, start=1):
            rig.backed_off(dest, interval_ms)
            assert len(peer.transactions) == attempt
            rig.advance(interval_ms / 1000)
        wait_for(lambda: rig.pending() == {}, "the queue to empty")
        assert len(peer.transactions) == 5 and rig_state(rig, dest) == (None, [])
        assert len({txn_id for txn_id, _ in peer.transactions}) == 1
        assert all(body["pdus"] == [pdu(1)] for _, body in peer.transactions)
        on_reactor(rig.reactor, lambda: sender.send_pdu([dest], pdu(2)))
        wait_for(lambda: peer.pdu_ids() == ["$event1", "$event2"], "the next transaction")
        assert peer.transactions[-1][0] != peer.transactions[0][0]
    finally:
        sender.stop()
        listener.stop()


def test_sender_gives_up_refused_transactions_and_moves_on(rig, ca):
    peer, listener, dest = peer_for(rig, ca)
    peer.statuses = [400]
    listener.start()
    sender = rig.sender(min_retry_ms=100)
    try:
        on_reactor(rig.reactor, lambda: sender.send_pdu([dest], pdu(1)))
        wait_for(lambda: peer.transactions and rig.pending() == {}, "the refused transaction to be dropped")
        assert rig_state(rig, dest) == (None, [])  # no back-off
        on_reactor(rig.reactor, lambda: sender.send_pdu([dest], pdu(2)))
        wait_for(lambda: len(peer.transactions) == 2, "the next transaction")
        assert [body["pdus"] for _, body in peer.transactions] == [[pdu(1)], [pdu(2)]]
    finally:
        sender.stop()
        listener.stop()


def test_wake_retries_a_backed_off_peer_at_once(rig, ca):
    peer, listener, dest = peer_for(rig, ca)
    sender = rig.sender(min_retry_ms=600_000)
    try:
        on_reactor(rig.reactor, lambda: sender.send_pdu([dest], pdu(1)))
        rig.backed_off(dest, 600_000)
        on_reactor(rig.reactor, lambda: sender.send_pdu([dest], pdu(2)))  # queued behind the backoff
        assert rig_state(rig, dest) == (600_000, [600.0])  # one timer, not re-armed
        listener.start()
        threads.blockingCallFromThread(rig.reactor, sender.wake, dest)
        wait_for(lambda: peer.pdu_ids() == ["$event1", "$event2"], "delivery after wake")
        wait_for(lambda: rig.pending() == {}, "the queue to empty")
        assert rig.timers() == []  # the timer is cancelled
    finally:
        sender.stop()
        listener.stop()


def test_queue_survives_a_restart(rig, ca):
    """The back-off is persisted: the restarted sender waits for the rest of it."""
    peer, listener, dest = peer_for(rig, ca)
    first = rig.sender(min_retry_ms=300)
    for i in range(3):
        on_reactor(rig.reactor, lambda: first.send_pdu([dest], pdu(i)))
    rig.backed_off(dest, 300)
    threads.blockingCallFromThread(rig.reactor, first.stop)
    assert rig.timers() == []

    listener.start()
    rig.advance(0.1)
    second = rig.sender(min_retry_ms=300)
    try:
        threads.blockingCallFromThread(rig.reactor, second.resume)
        wait_for(lambda: rig.timers() == [pytest.approx(0.2)],
                 "the rest of the back-off to be armed")
        assert peer.transactions == []
        rig.advance(0.2)
        wait_for(lambda: peer.pdu_ids() == ["$event0", "$event1", "$event2"], "delivery after the restart")
        on_reactor(rig.reactor, lambda: second.send_pdu([dest], pdu(3)))
        wait_for(lambda: peer.pdu_ids()[-1:] == ["$event3"], "new PDUs after the old ones")
        assert peer.pdu_ids() == [f"$event{i}" for i in range(4)]
    finally:
        second.stop()
        listener.stop()


def test_sender_respects_the_allow_list(rig):
    friend = f"localhost:{free_port()}"  # allowed, but nobody listens there
    sender = rig.sender(whitelist=[friend], min_retry_ms=600_000)
    try:
        on_reactor(rig.reactor, lambda: sender.send_pdu(["stranger.example", rig.origin], pdu(1)))
        assert rig.pending() == {}
        on_reactor(rig.reactor, lambda: sender.send_edu(friend, "m.test", {}))
        assert set(rig.pending()) == {friend}
    finally:
        sender.stop()


def test_concurrent_key_lookups_share_one_fetch(reactor, workers, tmp_path, ca, a):
    """Lookups of a server's key that arrive while a fetch of its keys is under way wait for that fetch
    (an inbound request and a join checking events at once): none fails for want of the key."""
    config = parse_config({"server_name": "origin.example", "database": database_config_for_test(str(tmp_path))},
                          str(tmp_path / "homeserver.yaml"))
    db = Database(open_engine(config.database), reactor)
    try:
        apply_migrations(db, {"server_keys": server_keys_storage.MIGRATIONS})
        key = generate_signing_key("o")
        keyring = KeyRing(store=server_keys_storage.ServerKeyStore(db),
                          own=ServerKeys("origin.example", key, {}, now_ms),
                          client=make_client(reactor, workers, "origin.example", key, ca_files=[ca.cert_path]),
                          trusted_key_servers=[], now_ms=now_ms)
        expected = get_verify_key(a.signing_key).encode()

        async def lookups():
            found = await defer.gatherResults([defer.ensureDeferred(keyring.get_verify_key(a.name, a.key_id))
                                               for _ in range(3)])
            # a key id the server never published is looked up once, then refused without a new fetch
            with pytest.raises(KeyLookupError):
                await keyring.get_verify_key(a.name, "ed25519:never")
            return found

        assert [k.encode() for k in on_reactor(reactor, lookups)] == [expected] * 3
    finally:
        db.close()


class FixedKeys:
    """A key fetcher holding one key, valid until ``valid_until_ts``."""

    def __init__(self, key, valid_until_ts: int = 2**62):
        self.key, self.valid_until_ts = key, valid_until_ts

    async def get_verify_key(self, server, key_id, minimum_valid_until_ts=0):
        if minimum_valid_until_ts > self.valid_until_ts:
            raise KeyLookupError(f"{key_id} expired")
        return get_verify_key(self.key)


def _messages(key, count: int, version) -> list[dict]:
    from homeserver.events.builder import build_event
    return [{k: v for k, v in build_event(
        version, server_name="origin.example", signing_key=key, room_id="!r:origin.example",
        sender="@u:origin.example", event_type="m.room.message", content={"body": f"m{i}"}, prev_events=["$p"],
        auth_events=["$a"], depth=i + 2, origin_server_ts=1000 + i).items() if k != "event_id"} for i in range(count)]


def _check_on_reactor(reactor, workers, pdus: list[dict], version, keys) -> tuple[list, dict, dict]:
    from federation.handlers.pdu_checks import Encodings, check_signatures_and_hashes, normalise_pdu
    encodings = Encodings()
    normalised = [normalise_pdu(p, version, encodings) for p in pdus]
    accepted, rejected = on_reactor(
        reactor, lambda: check_signatures_and_hashes(normalised, version, keys, workers, encodings))
    return accepted, rejected, encodings.whole


def test_a_big_batch_is_checked_on_worker_threads_like_a_small_one(reactor, workers):
    """Steps 1-3 of receiving PDUs give the same verdicts, in the same order, whether a batch is checked
    on two worker threads (PARALLEL_BATCH or more PDUs) or in the reactor thread."""
    from federation.handlers.pdu_checks import PARALLEL_BATCH
    from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

    version, key = KNOWN_ROOM_VERSIONS["11"], generate_signing_key("k")
    pdus = _messages(key, PARALLEL_BATCH + 16, version)
    pdus[3]["signatures"] = {"origin.example": {"ed25519:k": encode_base64(b"\0" * 64)}}  # forged: rejected
    pdus[70]["content"] = {"body": "tampered"}  # the hash no longer matches: kept, redacted
    pdus[71]["depth"] = "deep"  # not an event: rejected

    accepted, rejected, whole = _check_on_reactor(reactor, workers, pdus, version, FixedKeys(key))
    small = [_check_on_reactor(reactor, workers, pdus[i:i + PARALLEL_BATCH // 2], version, FixedKeys(key))
             for i in range(0, len(pdus), PARALLEL_BATCH // 2)]
    assert accepted == [p for part in small for p in part[0]]
    assert rejected == {k: v for part in small for k, v in part[1].items()}
    assert whole == {k: v for part in small for k, v in part[2].items()}
    assert len(accepted) == len(pdus) - 2 and len(rejected) == 2
    reasons = " | ".join(sorted(rejected.values()))
    assert "depth" in reasons and "does not verify" in reasons, reasons
    tampered = next(p for p in accepted if p["depth"] == 72)
    assert tampered["content"] == {} and tampered["event_id"] not in whole
    assert all(p["event_id"] in whole for p in accepted if p is not tampered)


@pytest.mark.parametrize("count", [10, 100])
def test_a_key_counts_only_for_events_within_its_validity(reactor, workers, count):
    """Room v5+ "Validating hashes and signatures": an event signed after its key's valid_until_ts is
    rejected; the batch's earlier events are accepted (small batches and worker-thread batches alike)."""
    from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

    key = generate_signing_key("k")
    version = KNOWN_ROOM_VERSIONS["11"]
    pdus = _messages(key, count, version)  # origin_server_ts 1000, 1001, ...
    valid_until = 1000 + count // 2
    accepted, rejected, _ = _check_on_reactor(reactor, workers, pdus, version, FixedKeys(key, valid_until))
    assert [p["origin_server_ts"] for p in accepted] == list(range(1000, valid_until + 1))
    assert len(rejected) == count - len(accepted)
    v4 = KNOWN_ROOM_VERSIONS["4"]
    accepted, rejected, _ = _check_on_reactor(reactor, workers, _messages(key, count, v4), v4,
                                              FixedKeys(key, valid_until))
    assert len(accepted) == count and not rejected  # before v5, a key is not bound to a time

"""Third-party invites and identity-server binds end to end (spec v1.19 client-server "Third-party invites",
``/account/3pid/bind|unbind|delete``; server-server "Third-party invites"; identity service API v2).

A small identity server stand-in (``IdentityStandIn``: hash_details, lookup, store-invite, 3pid/bind,
3pid/unbind, pubkey/isvalid; ed25519 signatures with signedjson) listens on 127.0.0.1 over TLS under the
federation CA, and calls ``/3pid/onbind`` of a homeserver as a real identity server does. Two Hexagone
servers (``home``, ``peer``) trust it (``trusted_third_party_id_servers: [127.0.0.1]``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from signedjson.key import generate_signing_key, encode_verify_key_base64
from signedjson.sign import sign_json

from tests.integration.harness import database_rows, q, register_admin, unique, wait_for

PEPPER = "matrixrocks"
ID_TOKEN = "id-access-token"


class IdentityStandIn:
    """The identity server: its state (bindings, stored invites, validated sessions, keys) and the requests
    it received, answered on a thread by :class:`_Handler`."""

    def __init__(self, ca):
        self.signing_key = generate_signing_key("0")
        self.bindings: dict[tuple[str, str], str] = {}
        self.invites: list[dict] = []
        self.sessions: dict[str, tuple[str, str, str]] = {}  # sid -> (client_secret, medium, address)
        self.requests: list[tuple[str, str, dict, dict | None]] = []  # (method, path, headers, body)
        self.revoked = False
        cert, key = ca.issue(unique("is"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.stand_in = self
        self.name = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    @property
    def public_key(self) -> str:
        return encode_verify_key_base64(self.signing_key.verify_key)

    def paths(self) -> list[str]:
        return [path for _, path, _, _ in self.requests]

    def sign(self, obj: dict, key=None) -> dict:
        return sign_json(obj, self.name, key or self.signing_key)

    def validated_session(self, medium: str, address: str) -> tuple[str, str]:
        sid, secret = unique("sid"), unique("secret")
        self.sessions[sid] = (secret, medium, address)
        return sid, secret

    def bind_and_notify(self, server, medium: str, address: str, mxid: str, key=None, method: str = "PUT"):
        """Bind the 3PID here, then tell ``server`` with ``/3pid/onbind``, each pending invite signed."""
        self.bindings[(medium, address)] = mxid
        invites = []
        for invite in [i for i in self.invites if (i["medium"], i["address"]) == (medium, address)]:
            signed = self.sign({"mxid": mxid, "token": invite["token"]}, key)
            invites.append({"medium": medium, "address": address, "mxid": mxid, "room_id": invite["room_id"],
                            "sender": invite["sender"], "signed": signed})
        body = self.sign({"medium": medium, "address": address, "mxid": mxid, "invites": invites})
        return server.https(method, "/_matrix/federation/v1/3pid/onbind", body)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str):
        stand_in: IdentityStandIn = self.server.stand_in
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        stand_in.requests.append((method, url.path, dict(self.headers), body))
        authorised = self.headers.get("Authorization") == f"Bearer {ID_TOKEN}"
        path = url.path.removeprefix("/_matrix/identity/v2")
        if path == "/pubkey/isvalid":
            key = parse_qs(url.query).get("public_key", [""])[0]
            return self._answer(200, {"valid": key == stand_in.public_key and not stand_in.revoked})
        if path == "/3pid/unbind":  # authenticated as the homeserver (X-Matrix), not with the user's token
            if not (self.headers.get("Authorization") or "").startswith("X-Matrix "):
                return self._answer(401, {"errcode": "M_UNAUTHORIZED", "error": "no X-Matrix"})
            threepid = (body["threepid"]["medium"], body["threepid"]["address"])
            if stand_in.bindings.get(threepid) != body["mxid"]:
                return self._answer(404, {"errcode": "M_NOT_FOUND", "error": "not bound"})
            del stand_in.bindings[threepid]
            return self._answer(200, {})
        if not authorised:
            return self._answer(401, {"errcode": "M_UNAUTHORIZED", "error": "bad id_access_token"})
        if path == "/hash_details":
            return self._answer(200, {"algorithms": ["none", "sha256"], "lookup_pepper": PEPPER})
        if path == "/lookup":
            if body.get("algorithm") != "sha256" or body.get("pepper") != PEPPER:
                return self._answer(400, {"errcode": "M_INVALID_PEPPER", "error": "bad pepper"})
            hashed = {_hash(m, a): mxid for (m, a), mxid in stand_in.bindings.items()}
            return self._answer(200, {"mappings": {h: hashed[h] for h in body["addresses"] if h in hashed}})
        if path == "/store-invite":
            token = secrets.token_urlsafe(12)
            stand_in.invites.append(dict(body, token=token))
            validity = f"https://{stand_in.name}/_matrix/identity/v2/pubkey/isvalid"
            return self._answer(200, {"token": token, "display_name": "b...@example.org",
                                      "public_keys": [{"public_key": stand_in.public_key,
                                                       "key_validity_url": validity}]})
        if path == "/3pid/bind":
            session = stand_in.sessions.get(body.get("sid"))
            if session is None or session[0] != body.get("client_secret"):
                return self._answer(400, {"errcode": "M_NO_VALID_SESSION", "error": "No valid session"})
            _, medium, address = session
            stand_in.bindings[(medium, address)] = body["mxid"]
            return self._answer(200, stand_in.sign({"medium": medium, "address": address, "mxid": body["mxid"],
                                                    "not_before": 0, "not_after": 2 ** 42, "ts": 0}))
        self._answer(404, {"errcode": "M_UNRECOGNIZED", "error": "unknown"})


def _hash(medium: str, address: str) -> str:
    digest = hashlib.sha256(f"{address} {medium} {PEPPER}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@pytest.fixture(scope="module")
def id_server(ca):
    stand_in = IdentityStandIn(ca)
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def home(fed):
    return fed(trusted_third_party_id_servers=["127.0.0.1"])


@pytest.fixture(scope="module")
def peer(fed):
    return fed(trusted_third_party_id_servers=["127.0.0.1"])


def invite_3pid(user, room_id, stand_in, address, **overrides):
    body = {"id_server": stand_in.name, "id_access_token": ID_TOKEN, "medium": "email", "address": address,
            **overrides}
    return user.request("POST", f"/rooms/{q(room_id)}/invite", body)


def membership(user, room_id, user_id):
    status, content = user.state(room_id, "m.room.member", user_id)
    return content if status == 200 else None


def third_party_invite_events(user, room_id):
    return [e for e in user.ok("GET", f"/rooms/{q(room_id)}/state") if e["type"] == "m.room.third_party_invite"]


# -- the invite ----------------------------------------------------------------------------------

def test_a_bound_address_is_an_ordinary_invite(home, id_server):
    alice, bob = home.process.register(), home.process.register()
    address = f"{unique('bound')}@example.org"
    id_server.bindings[("email", address)] = bob.user_id
    room_id = alice.create_room()
    status, resp = invite_3pid(alice, room_id, id_server, address)
    assert (status, resp) == (200, {}), id_server.requests
    assert membership(alice, room_id, bob.user_id)["membership"] == "invite"
    assert third_party_invite_events(alice, room_id) == []
    # createRoom's invite_3pid too
    room2 = alice.create_room(invite_3pid=[{"id_server": id_server.name, "id_access_token": ID_TOKEN,
                                            "medium": "email", "address": address}])
    assert membership(alice, room2, bob.user_id)["membership"] == "invite"


def test_an_unbound_address_is_stored_then_exchanged_on_bind(home, id_server):
    alice, bob = home.process.register(), home.process.register()
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice"})
    address = f"{unique('unbound')}@example.org"
    room_id = alice.create_room(name="Pending")
    assert invite_3pid(alice, room_id, id_server, address) == (200, {})

    [event] = third_party_invite_events(alice, room_id)
    stored = [i for i in id_server.invites if i["address"] == address][0]
    assert event["state_key"] == stored["token"] and event["sender"] == alice.user_id
    assert event["content"]["display_name"] == "b...@example.org"
    assert event["content"]["public_key"] == id_server.public_key
    assert event["content"]["key_validity_url"].startswith(f"https://{id_server.name}/")
    assert [k["public_key"] for k in event["content"]["public_keys"]] == [id_server.public_key]
    assert stored["sender"] == alice.user_id and stored["room_id"] == room_id and stored["medium"] == "email"
    assert stored["room_name"] == "Pending" and stored["sender_display_name"] == "Alice"

    # the identity server binds bob and tells his server: the invite becomes his
    status, resp = id_server.bind_and_notify(home, "email", address, bob.user_id)
    assert (status, resp) == (200, {}), resp
    member = membership(alice, room_id, bob.user_id)
    assert member["membership"] == "invite"
    assert member["third_party_invite"]["display_name"] == "b...@example.org"
    assert member["third_party_invite"]["signed"]["token"] == stored["token"]
    invite, _ = bob.sync_until(lambda r: r["rooms"]["invite"].get(room_id))
    senders = {e["state_key"] for e in invite["invite_state"]["events"] if e["type"] == "m.room.member"}
    assert alice.user_id in senders  # the inviter's membership, as Synapse gives it
    assert bob.join(room_id) == room_id
    assert membership(alice, room_id, bob.user_id)["membership"] == "join"


def test_the_invite_still_works_after_the_inviter_left(home, id_server):
    alice, carol, bob = (home.process.register() for _ in range(3))
    room_id = alice.create_room(preset="public_chat")
    carol.join(room_id)
    address = f"{unique('left')}@example.org"
    assert invite_3pid(alice, room_id, id_server, address)[0] == 200
    alice.leave(room_id)
    assert id_server.bind_and_notify(home, "email", address, bob.user_id, method="POST")[0] == 200  # Synapse's verb
    assert membership(carol, room_id, bob.user_id)["membership"] == "invite"


def test_join_with_third_party_signed(home, id_server):
    alice, bob = home.process.register(), home.process.register()
    room_id = alice.create_room()
    address = f"{unique('signed')}@example.org"
    assert invite_3pid(alice, room_id, id_server, address)[0] == 200
    token = third_party_invite_events(alice, room_id)[0]["state_key"]
    signed = id_server.sign({"mxid": bob.user_id, "sender": alice.user_id, "token": token})
    # someone else's proof is refused
    carol = home.process.register()
    status, resp = carol.request("POST", f"/join/{q(room_id)}", {"third_party_signed": signed})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    assert bob.ok("POST", f"/join/{q(room_id)}", {"third_party_signed": signed})["room_id"] == room_id
    assert membership(alice, room_id, bob.user_id)["membership"] == "join"


def test_invite_over_federation_through_exchange(home, peer, id_server):
    """The invitee's server is not in the room: it forwards the invite to the inviter's server with
    PUT /exchange_third_party_invite, which issues it (co-signed by the invitee's server)."""
    alice, bob = home.process.register(), peer.process.register()
    room_id = alice.create_room()
    address = f"{unique('fed')}@example.org"
    assert invite_3pid(alice, room_id, id_server, address)[0] == 200
    exchanges = len([r for r in id_server.requests if r[1].endswith("/isvalid")])
    status, resp = id_server.bind_and_notify(peer, "email", address, bob.user_id)
    assert (status, resp) == (200, {}), resp
    assert len([r for r in id_server.requests if r[1].endswith("/isvalid")]) == exchanges + 1  # home checked the key
    assert membership(alice, room_id, bob.user_id)["membership"] == "invite"
    bob.sync_until(lambda r: r["rooms"]["invite"].get(room_id))
    assert bob.join(room_id) == room_id
    wait_for(lambda: (membership(alice, room_id, bob.user_id) or {}).get("membership") == "join", "bob's join")


# -- refusals -------------------------------------------------------------------------------------

def test_untrusted_identity_server_and_bad_requests(home, id_server):
    alice = home.process.register()
    room_id = alice.create_room()
    before = len(id_server.requests)
    untrusted = f"localhost:{id_server.name.rsplit(':', 1)[1]}"  # the same server under a name not trusted
    for body in ({"id_server": untrusted}, {"id_server": "id.example.org:8090"}):
        status, resp = invite_3pid(alice, room_id, id_server, "x@example.org", **body)
        assert (status, resp["errcode"]) == (400, "M_SERVER_NOT_TRUSTED")
    status, resp = alice.request("POST", f"/rooms/{q(room_id)}/invite",
                                 {"id_server": id_server.name, "medium": "email", "address": "x@example.org"})
    assert (status, resp["errcode"]) == (400, "M_MISSING_PARAM")
    status, resp = invite_3pid(alice, room_id, id_server, "x@example.org", id_access_token=7)
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")
    # createRoom refuses before creating anything
    rooms = alice.ok("GET", "/joined_rooms")["joined_rooms"]
    status, resp = alice.request("POST", "/createRoom", {"invite_3pid": [
        {"id_server": untrusted, "id_access_token": ID_TOKEN, "medium": "email", "address": "x@example.org"}]})
    assert (status, resp["errcode"]) == (400, "M_SERVER_NOT_TRUSTED")
    assert alice.ok("GET", "/joined_rooms")["joined_rooms"] == rooms
    status, resp = alice.request("POST", "/account/3pid/bind", {"id_server": untrusted, "id_access_token": ID_TOKEN,
                                                                "sid": "s", "client_secret": "c"})
    assert (status, resp["errcode"]) == (400, "M_SERVER_NOT_TRUSTED")
    assert len(id_server.requests) == before  # the identity server was never asked


def test_refusals_write_nothing_at_the_identity_server(home, id_server):
    alice, mallory = home.process.register(), home.process.register()
    room_id = alice.create_room()
    stored = len(id_server.invites)
    # not in the room: refused before store-invite
    status, resp = invite_3pid(mallory, room_id, id_server, "y@example.org")
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    # a refused id_access_token is passed on, as a 403: a 401 would tell the client its own session ended
    status, resp = invite_3pid(alice, room_id, id_server, "y@example.org", id_access_token="wrong")
    assert (status, resp["errcode"]) == (403, "M_UNAUTHORIZED")
    assert len(id_server.invites) == stored


def test_exchange_refused_for_a_wrong_signature_or_a_revoked_key(home, id_server):
    alice, bob = home.process.register(), home.process.register()
    room_id = alice.create_room()
    address = f"{unique('bad')}@example.org"
    assert invite_3pid(alice, room_id, id_server, address)[0] == 200
    status, resp = id_server.bind_and_notify(home, "email", address, bob.user_id, key=generate_signing_key("0"))
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    assert membership(alice, room_id, bob.user_id) is None
    id_server.revoked = True
    try:
        status, resp = id_server.bind_and_notify(home, "email", address, bob.user_id)
    finally:
        id_server.revoked = False
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    assert membership(alice, room_id, bob.user_id) is None
    status, resp = bob.request("POST", f"/join/{q(room_id)}", {})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    # an invite for a user of another server is not this server's to exchange
    status, resp = id_server.bind_and_notify(home, "email", address, "@someone:elsewhere.example")
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = home.https("PUT", "/_matrix/federation/v1/3pid/onbind", {"invites": [{"signed": "x"}]})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")


def test_exchange_endpoint_refusals(home, peer, id_server):
    alice = home.process.register()
    room_id = alice.create_room()
    path = f"/_matrix/federation/v1/exchange_third_party_invite/{q(room_id)}"
    signed = id_server.sign({"mxid": f"@bob:{peer.name}", "token": "nope"})
    event = {"type": "m.room.member", "room_id": room_id, "sender": alice.user_id, "state_key": f"@bob:{peer.name}",
             "content": {"membership": "invite", "third_party_invite": {"display_name": "b", "signed": signed}}}
    status, _ = home.https("PUT", path, event)
    assert status == 401  # server-server authentication
    status, resp = home.signed("PUT", path, origin=peer.name, key=peer.signing_key, content=event)
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")  # no m.room.third_party_invite with that token
    for bad in ({**event, "room_id": "!other:x"}, {**event, "content": {"membership": "join"}}):
        status, resp = home.signed("PUT", path, origin=peer.name, key=peer.signing_key, content=bad)
        assert (status, resp["errcode"]) == (400, "M_BAD_JSON")
    status, resp = home.signed("PUT", path, origin=peer.name, key=peer.signing_key,
                               content={**event, "sender": f"@carol:{peer.name}"})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")


def test_rc_third_party_invite(fed, id_server):
    server = fed(trusted_third_party_id_servers=["127.0.0.1"],
                 rc_third_party_invite={"per_second": 0.001, "burst_count": 1})
    alice = server.process.register()
    room_id = alice.create_room()
    assert invite_3pid(alice, room_id, id_server, f"{unique('rc')}@example.org")[0] == 200
    before = len(id_server.requests)
    status, resp = invite_3pid(alice, room_id, id_server, f"{unique('rc')}@example.org")
    assert (status, resp["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert len(id_server.requests) == before


def test_identity_server_unreachable(fed, ca):
    stand_in = IdentityStandIn(ca)
    server = fed(trusted_third_party_id_servers=["127.0.0.1"])
    alice = server.process.register()
    room_id = alice.create_room()
    stand_in.stop()
    status, resp = invite_3pid(alice, room_id, stand_in, "z@example.org")
    assert (status, resp["errcode"]) == (502, "M_UNKNOWN")
    assert third_party_invite_events(alice, room_id) == []


# -- binds ----------------------------------------------------------------------------------------

def test_bind_unbind_delete_and_deactivate(home, id_server):
    alice = home.process.register()
    address = f"{unique('mine')}@example.org"

    def bind(addr):
        sid, secret = id_server.validated_session("email", addr)
        return alice.ok("POST", "/account/3pid/bind", {"id_server": id_server.name, "id_access_token": ID_TOKEN,
                                                       "sid": sid, "client_secret": secret})

    assert bind(address) == {}
    assert id_server.bindings[("email", address)] == alice.user_id
    assert database_rows(home.process, "SELECT id_server FROM user_threepid_id_servers WHERE user_id = ?",
                         (alice.user_id,)) == [(id_server.name,)]
    # the identity server's refusal is passed on
    status, resp = alice.request("POST", "/account/3pid/bind", {"id_server": id_server.name, "id_access_token":
                                                                ID_TOKEN, "sid": "unknown", "client_secret": "c"})
    assert (status, resp["errcode"]) == (400, "M_NO_VALID_SESSION")
    status, resp = alice.request("POST", "/account/3pid/bind", {"id_server": id_server.name})
    assert (status, resp["errcode"]) == (400, "M_MISSING_PARAM")
    # unbind without id_server: where it was bound through us, signed as this server
    assert alice.ok("POST", "/account/3pid/unbind", {"medium": "email", "address": address}) == {
        "id_server_unbind_result": "success"}
    assert ("email", address) not in id_server.bindings
    method, path, headers, body = id_server.requests[-1]
    assert path == "/_matrix/identity/v2/3pid/unbind" and headers["Authorization"].startswith(
        f'X-Matrix origin="{home.name}"')
    assert body == {"mxid": alice.user_id, "threepid": {"medium": "email", "address": address}}
    # nothing known any more: no-support
    assert alice.ok("POST", "/account/3pid/unbind", {"medium": "email", "address": address}) == {
        "id_server_unbind_result": "no-support"}
    # bound out of band: unbound with an explicit id_server on delete
    id_server.bindings[("email", address)] = alice.user_id
    assert alice.ok("POST", "/account/3pid/delete", {"medium": "email", "address": address,
                                                     "id_server": id_server.name}) == {
        "id_server_unbind_result": "success"}
    assert ("email", address) not in id_server.bindings
    # the identity server does not know it: no-support
    assert alice.ok("POST", "/account/3pid/unbind", {"medium": "email", "address": address,
                                                     "id_server": id_server.name}) == {
        "id_server_unbind_result": "no-support"}
    # deactivation unbinds what is bound
    second = f"{unique('deact')}@example.org"
    bind(second)
    body = {"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                     "password": alice.password}}
    assert alice.ok("POST", "/account/deactivate", body) == {"id_server_unbind_result": "success"}
    assert ("email", second) not in id_server.bindings


def test_admin_deactivation_unbinds(home, id_server):
    admin, carol = register_admin(home.process), home.process.register()
    address = f"{unique('admin')}@example.org"
    sid, secret = id_server.validated_session("email", address)
    carol.ok("POST", "/account/3pid/bind", {"id_server": id_server.name, "id_access_token": ID_TOKEN, "sid": sid,
                                            "client_secret": secret})
    assert admin.ok("POST", f"/_synapse/admin/v1/deactivate/{q(carol.user_id)}", {}) == {
        "id_server_unbind_result": "success"}
    assert ("email", address) not in id_server.bindings


def test_unstable_paths_and_well_known(fed, id_server):
    server = fed(trusted_third_party_id_servers=["127.0.0.1"], default_identity_server="https://id.example.org")
    alice = server.process.register()
    sid, secret = id_server.validated_session("email", f"{unique('u')}@example.org")
    status, _ = alice.request("POST", "/_matrix/client/unstable/account/3pid/bind",
                              {"id_server": id_server.name, "id_access_token": ID_TOKEN, "sid": sid,
                               "client_secret": secret})
    assert status == 200
    status, resp = server.process.request("GET", "/.well-known/matrix/client")
    assert resp["m.identity_server"] == {"base_url": "https://id.example.org"}


def test_default_identity_server_is_the_default_allow_list(fed, ca):
    stand_in = IdentityStandIn(ca)
    try:
        server = fed(default_identity_server=f"https://{stand_in.name}")
        alice, bob = server.process.register(), server.process.register()
        address = f"{unique('dflt')}@example.org"
        stand_in.bindings[("email", address)] = bob.user_id
        room_id = alice.create_room()
        assert invite_3pid(alice, room_id, stand_in, address)[0] == 200
        status, resp = invite_3pid(alice, room_id, stand_in, address, id_server="127.0.0.2:1")
        assert (status, resp["errcode"]) == (400, "M_SERVER_NOT_TRUSTED")
    finally:
        stand_in.stop()


# -- the generic query endpoint -------------------------------------------------------------------

def test_generic_query_endpoint(home, peer):
    alice = home.process.register()
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice"})
    status, resp = home.signed("GET", f"/_matrix/federation/v1/query/profile?user_id={q(alice.user_id)}",
                               origin=peer.name, key=peer.signing_key)
    assert (status, resp.get("displayname")) == (200, "Alice")
    status, resp = home.signed("GET", "/_matrix/federation/v1/query/unknown_type?x=1", origin=peer.name,
                               key=peer.signing_key)
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")
    status, resp = home.https("GET", "/_matrix/federation/v1/query/unknown_type")
    assert status == 401

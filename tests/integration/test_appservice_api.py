"""More of the application service API (spec v1.19) against a real Hexagone process, with stand-in
appservices served over HTTPS by certificates of a private CA that the server trusts through
``SSL_CERT_FILE`` (as SyTest's appservices are, see scripts/sytest.sh):

- the homeserver's calls to an appservice go over TLS with the standard library (no pyOpenSSL needed),
  and a certificate of a CA nobody trusts is refused;
- an appservice's room directory per network (PUT/DELETE /directory/list/appservice/{networkId}/{roomId})
  is kept apart from the homeserver's own, and /publicRooms reads one, the other or all of them;
- third-party protocol metadata: instances of every appservice merged, and kept an hour (as Synapse);
- identity assertion: an appservice acts only as users it registered (as Synapse);
- aliases: an appservice adds those of its namespace to any room, others need membership
  (``require_membership_for_aliases``); an appservice deactivates its users without UIA; the older
  POST /rooms/{roomId}/send/{eventType};
- a query is sent again when an appservice closed the pooled connection under it (HTTP/1.0 servers).
"""

from __future__ import annotations

import json
import os
import ssl
import threading
from http.server import ThreadingHTTPServer

import pytest
import yaml

from tests.integration.fedtls import CertificateAuthority
from tests.integration.harness import CLIENT_V1, SERVER_NAME, StandInHandler, q, unique

NETWORK = "net"


class _Recorder(StandInHandler):
    """An appservice: answers transactions, the ``ymca`` protocol's metadata (once per appservice, a second
    query answers 500 so that a cached answer shows) and records every request's path."""

    protocol_version = "HTTP/1.1"  # keep-alive, as an appservice framework's server is
    requests: list[str] = []
    lock = threading.Lock()

    def _record(self) -> None:
        with self.lock:
            self.requests.append(self.path)

    def do_PUT(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._record()
        self.answer(200, b"{}", "application/json")

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._record()
        self.answer(200, b"{}", "application/json")

    def do_GET(self):  # noqa: N802
        self._record()
        as_id = self.path.split("/")[1]
        if self.path.endswith("/_matrix/app/v1/thirdparty/protocol/ymca"):
            with self.lock:
                asked = sum(p == self.path for p in self.requests)
            if asked > 1:
                return self.answer(500, b"{}", "application/json")
            instances = [{"desc": f"{as_id} instance", "network_id": NETWORK, "fields": {}}]
            if as_id == "as1":
                instances.append({"desc": "no network", "fields": {}})
            body = {"user_fields": ["nick"], "location_fields": ["channel"], "icon": "mxc://x/y",
                    "field_types": {}, "instances": instances}
            return self.answer(200, json.dumps(body).encode(), "application/json")
        self.answer(404, b'{"errcode": "M_NOT_FOUND"}', "application/json")


class _Http10(StandInHandler):
    """An appservice on Python's http.server defaults: HTTP/1.0, the connection closed after each answer
    (without ``Connection: close``), serving the ``old`` protocol's metadata."""

    def do_GET(self):  # noqa: N802
        as_id = self.path.split("/")[1]
        if "/_matrix/app/v1/thirdparty/user/old" in self.path:
            found = [{"userid": f"@{as_id}:example.org", "protocol": "old", "fields": {}}]
            return self.answer(200, json.dumps(found).encode(), "application/json")
        if not self.path.endswith("/_matrix/app/v1/thirdparty/protocol/old"):
            return self.answer(404, b"{}", "application/json")
        body = {"user_fields": [], "location_fields": [], "icon": "mxc://x/y", "field_types": {},
                "instances": [{"desc": as_id, "fields": {}}]}
        self.answer(200, json.dumps(body).encode(), "application/json")


def _https_stand_in(cert: str, key: str, handler=_Recorder):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _registration(as_id: str, url: str, users: list[dict]) -> dict:
    return {"id": as_id, "url": url, "as_token": f"as_{as_id}", "hs_token": f"hs_{as_id}",
            "sender_localpart": f"{as_id}bot", "protocols": ["ymca"],
            "namespaces": {"users": users, "aliases": [], "rooms": []}}


@pytest.fixture(scope="module")
def setup(homeserver_factory, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("as_tls"))
    trusted = CertificateAuthority(os.path.join(directory, "trusted"))
    untrusted = CertificateAuthority(os.path.join(directory, "untrusted"), name="Nobody's CA")
    good = _https_stand_in(*trusted.issue("good"))
    bad = _https_stand_in(*untrusted.issue("bad"))
    old = _https_stand_in(*trusted.issue("old"), handler=_Http10)
    good_url = f"https://127.0.0.1:{good[0].server_address[1]}"
    bad_url = f"https://127.0.0.1:{bad[0].server_address[1]}"
    old_url = f"https://127.0.0.1:{old[0].server_address[1]}"
    ghosts = [{"regex": f"@as1_.*:{SERVER_NAME}", "exclusive": True}]
    registrations = [_registration("as1", f"{good_url}/as1", ghosts), _registration("as2", f"{good_url}/as2", []),
                     _registration("untrusted", f"{bad_url}/untrusted", [])]
    registrations += [dict(_registration(f"old{n}", f"{old_url}/old{n}", []), protocols=["old"]) for n in (1, 2, 3)]
    files = []
    for registration in registrations:
        files.append(os.path.join(directory, registration["id"] + ".yaml"))
        with open(files[-1], "w") as f:
            yaml.safe_dump(registration, f)
    server = homeserver_factory(app_service_config_files=files, env={"SSL_CERT_FILE": trusted.cert_path})
    yield server
    for stand_in, thread in (good, bad, old):
        stand_in.shutdown()
        stand_in.server_close()
        thread.join(10)


def test_https_appservice_trusted_by_ssl_cert_file(setup):
    server = setup
    path = CLIENT_V1 + "/appservice/{}/ping"
    status, body = server.request("POST", path.format("as1"), {"transaction_id": "t1"}, "as_as1")
    assert status == 200 and isinstance(body["duration_ms"], int), body
    assert "/as1/_matrix/app/v1/ping" in _Recorder.requests
    # A certificate from a CA that SSL_CERT_FILE does not name: no connection.
    status, body = server.request("POST", path.format("untrusted"), {}, "as_untrusted")
    assert (status, body["errcode"]) == (502, "M_CONNECTION_FAILED")


def test_appservice_room_directories_are_apart(setup):
    server = setup
    user = server.register(unique("dir"))
    as_room = user.create_room()
    main_room = user.create_room()
    user.ok("PUT", f"/directory/list/room/{q(main_room)}", {"visibility": "public"})
    as_path = f"/directory/list/appservice/{NETWORK}/{q(as_room)}"
    assert server.request("PUT", as_path, {"visibility": "public"}, "as_as1") == (200, {})

    def listed(body: dict | None = None, method: str = "POST", **params) -> set[str]:
        status, resp = user.request(method, "/publicRooms", body, params=params or None)
        assert status == 200, resp
        return {r["room_id"] for r in resp["chunk"]}

    assert as_room not in listed({}) and main_room in listed({})
    assert listed({"third_party_instance_id": f"as1|{NETWORK}"}) == {as_room}
    assert listed({"third_party_instance_id": f"as2|{NETWORK}"}) == set()  # another appservice's list
    assert {as_room, main_room} <= listed({"include_all_networks": True})
    assert listed(None, "GET", third_party_instance_id=f"as1|{NETWORK}") == {as_room}  # as Synapse, on GET too
    assert user.ok("GET", f"/directory/list/room/{q(as_room)}") == {"visibility": "private"}
    # Only an appservice edits its list; bad requests are refused.
    status, body = user.request("PUT", as_path, {"visibility": "public"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = server.request("PUT", as_path, {"visibility": "hidden"}, "as_as1")
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = server.request("PUT", f"/directory/list/appservice/{NETWORK}/{q('!nope:' + SERVER_NAME)}",
                                  {"visibility": "public"}, "as_as1")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    for bad in ({"include_all_networks": True, "third_party_instance_id": f"as1|{NETWORK}"},
                {"third_party_instance_id": "no-bar"}):
        status, body = user.request("POST", "/publicRooms", bad)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), bad
    status, body = user.request("POST", "/publicRooms", {"include_all_networks": "yes"})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    # Taken off the appservice's list (Synapse's DELETE), the room stays off the main one; the main one's
    # room stays on it.
    assert server.request("DELETE", as_path, None, "as_as1") == (200, {})
    assert listed({"third_party_instance_id": f"as1|{NETWORK}"}) == set()
    assert as_room not in listed({"include_all_networks": True}) and main_room in listed({})


def test_protocol_metadata_merged_and_kept(setup):
    server = setup
    user = server.register(unique("tp"))
    first = user.ok("GET", "/thirdparty/protocols")
    assert sorted(first) == ["old", "ymca"]
    instances = sorted(first["ymca"]["instances"], key=lambda i: i["desc"])
    assert instances == [
        {"desc": "as1 instance", "network_id": NETWORK, "fields": {}, "instance_id": f"as1|{NETWORK}"},
        {"desc": "as2 instance", "network_id": NETWORK, "fields": {}, "instance_id": f"as2|{NETWORK}"},
        {"desc": "no network", "fields": {}},
    ]
    assert first["ymca"]["user_fields"] == ["nick"]
    # The stand-ins now answer 500: the answers kept serve, without asking again.
    asked = len(_Recorder.requests)
    again = user.ok("GET", "/thirdparty/protocol/ymca")
    assert sorted(again["instances"], key=lambda i: i["desc"]) == instances
    assert len(_Recorder.requests) == asked


def test_masquerading_needs_a_registered_user(setup):
    server = setup
    ghost = f"as1_{unique('g')}"
    ghost_id = f"@{ghost}:{SERVER_NAME}"
    status, body = server.request("GET", "/account/whoami", token="as_as1", params={"user_id": ghost_id})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, _ = server.request("POST", "/register", {"type": "m.login.application_service", "username": ghost},
                               "as_as1")
    assert status == 200
    status, body = server.request("GET", "/account/whoami", token="as_as1", params={"user_id": ghost_id})
    assert (status, body["user_id"]) == (200, ghost_id)
    # The appservice's own sender needs no registration.
    status, body = server.request("GET", "/account/whoami", token="as_as1",
                                  params={"user_id": f"@as1bot:{SERVER_NAME}"})
    assert (status, body["user_id"]) == (200, f"@as1bot:{SERVER_NAME}")


def test_aliases_need_membership_by_default(setup):
    """``require_membership_for_aliases`` (true by default): only a member adds an alias; an appservice only
    one of its alias namespace (as2 has none)."""
    server = setup
    owner = server.register(unique("owner"))
    room_id = owner.create_room()
    outsider = server.register(unique("outsider"))
    alias = f"#plain{unique('a')}:{SERVER_NAME}"
    status, body = server.request("PUT", f"/directory/room/{q(alias)}", {"room_id": room_id}, "as_as2")
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    status, body = outsider.request("PUT", f"/directory/room/{q(alias)}", {"room_id": room_id})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    owner.ok("PUT", f"/directory/room/{q(alias)}", {"room_id": room_id})


@pytest.fixture(scope="module")
def alias_server(homeserver_factory, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("as_alias"))
    registration = _registration("aliases", "http://127.0.0.1:9", [])
    registration["namespaces"]["aliases"] = [{"regex": f"#bridged_.*:{SERVER_NAME}", "exclusive": True}]
    path = os.path.join(directory, "aliases.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(registration, f)
    return homeserver_factory(app_service_config_files=[path], require_membership_for_aliases=False)


def test_appservice_alias_without_membership(alias_server):
    server = alias_server
    owner = server.register(unique("owner"))
    room_id = owner.create_room()
    alias = f"#bridged_{unique('a')}:{SERVER_NAME}"
    assert server.request("PUT", f"/directory/room/{q(alias)}", {"room_id": room_id}, "as_aliases") == (200, {})
    assert owner.ok("GET", f"/directory/room/{q(alias)}")["room_id"] == room_id
    status, body = server.request("PUT", f"/directory/room/{q('#plain' + unique() + ':' + SERVER_NAME)}",
                                  {"room_id": room_id}, "as_aliases")
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    # With require_membership_for_aliases: false, a user outside the room may add one (not in a namespace).
    outsider = server.register(unique("outsider"))
    outsider.ok("PUT", f"/directory/room/{q('#free' + unique() + ':' + SERVER_NAME)}", {"room_id": room_id})
    status, body = outsider.request("PUT", f"/directory/room/{q('#bridged_x' + unique() + ':' + SERVER_NAME)}",
                                    {"room_id": room_id})
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")


def test_appservice_deactivates_its_user_and_posts_without_txn_id(setup):
    server = setup
    ghost = f"as1_{unique('d')}"
    ghost_id = f"@{ghost}:{SERVER_NAME}"
    status, body = server.request("POST", "/register", {"type": "m.login.application_service", "username": ghost},
                                  "as_as1")
    assert status == 200
    ghost_token = body["access_token"]
    owner = server.register(unique("owner"))
    room_id = owner.create_room(preset="public_chat")
    as_ghost = {"user_id": ghost_id}
    assert server.request("POST", f"/join/{q(room_id)}", {}, "as_as1", params=as_ghost)[0] == 200
    # Synapse's older POST /rooms/{roomId}/send/{eventType}: a new event each time, no transaction id.
    ids = set()
    for _ in range(2):
        status, body = server.request("POST", f"/rooms/{q(room_id)}/send/m.room.message",
                                      {"msgtype": "m.text", "body": "posted"}, "as_as1", params=as_ghost)
        assert status == 200, body
        ids.add(body["event_id"])
    assert len(ids) == 2
    event = owner.ok("GET", f"/rooms/{q(room_id)}/event/{q(ids.pop())}")
    assert (event["sender"], event["content"]["body"]) == (ghost_id, "posted")
    # A user deactivating itself needs UIA; the appservice deactivates its ghost without.
    status, body = server.request("POST", "/account/deactivate", {}, ghost_token)
    assert status == 401 and "flows" in body
    status, _ = server.request("POST", "/account/deactivate", {}, "as_as1", params=as_ghost)
    assert status == 200
    assert server.request("GET", "/account/whoami", token=ghost_token)[0] == 401
    assert server.request("GET", f"/rooms/{q(room_id)}/state/m.room.member/{q(ghost_id)}", token=owner.token
                          )[1]["membership"] == "leave"


def test_queries_survive_a_connection_closed_after_each_answer(setup):
    """An appservice that closes its connection after each answer (HTTP/1.0): the next query, sent at once on
    the pooled connection before its close is seen, is sent again on a new one (a GET, Twisted's retry)."""
    server = setup
    user = server.register(unique("old"))
    for _ in range(10):
        found = user.ok("GET", "/thirdparty/user/old", params={"q": "x"})
        assert sorted(u["userid"] for u in found) == [f"@old{n}:example.org" for n in (1, 2, 3)], found

"""The application service API (spec v1.19) end to end: a bridge written with mautrix-python (from PyPI)
against a real Hexagone process, on SQLite or PostgreSQL (``HEXAGONE_TEST_DATABASE``).

Registration file loaded, ghosts registered and masqueraded, timestamp massaging, transactions in
order, exclusive namespaces, ping both ways, user and alias queries, ephemeral events, a bridge outage
and a homeserver restart with nothing lost nor duplicated; and the error paths.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter

import pytest
import yaml

from tests.integration.appservice_bridge import Bridge, registration
from tests.integration.harness import (CLIENT_V1, SERVER_NAME, ServerError, StandInHandler, free_port,
                                       http_stand_in, q, unique)
from tests.integration.test_e2ee import RawDevice

mautrix = pytest.importorskip("mautrix")


def _write_registration(directory: str, name: str, content: dict) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        yaml.safe_dump(content, f)
    return path


class _Misbehaving(StandInHandler):
    """Stand-in appservices: /badstatus/... answers a 500, /notjson/... HTML, and /tp/... serves the
    third-party lookups of the protocol testproto (when asked with its hs_token)."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = (500, b'{"errcode": "M_UNKNOWN"}') if self.path.startswith("/badstatus") else (200, b"<html>")
        self.answer(status, body)

    def do_GET(self):  # noqa: N802
        prefix = "/tp/_matrix/app/v1/thirdparty/"
        if self.headers.get("Authorization") != "Bearer hs_tp_token" or not self.path.startswith(prefix):
            return self.answer(403, b"{}")
        path, _, query = self.path[len(prefix):].partition("?")
        if path == "protocol/testproto":
            found = {"user_fields": ["handle"], "location_fields": [], "icon": "mxc://x/y", "field_types": {},
                     "instances": [{"network_id": "net1", "desc": "Test network", "fields": {}}]}
        elif path == "user/testproto":
            found = [{"userid": "@ghost_tp:test.local", "protocol": "testproto", "fields": {"query": query}},
                     {"protocol": "testproto"}]  # the second, malformed, is left out
        else:
            return self.answer(404, b"{}")
        self.answer(200, json.dumps(found).encode())


@pytest.fixture(scope="module")
def misbehaving():
    with http_stand_in(_Misbehaving) as url:
        yield url


@pytest.fixture(scope="module")
def setup(homeserver_factory, tmp_path_factory, misbehaving):
    directory = str(tmp_path_factory.mktemp("appservices"))
    bridge_port = free_port()
    reg = registration("bridge", f"http://127.0.0.1:{bridge_port}", SERVER_NAME)
    no_url = registration("nourl", None, SERVER_NAME, namespaces={"users": [], "aliases": [], "rooms": []})
    crypto_port = free_port(bridge_port)
    down = registration("down", f"http://127.0.0.1:{free_port(bridge_port, crypto_port)}", SERVER_NAME,
                        namespaces={"users": [], "aliases": [], "rooms": []})
    crypto = registration("crypto", f"http://127.0.0.1:{crypto_port}", SERVER_NAME, prefix="crypt_",
                          receive_ephemeral=False,  # the older MSC2409 flag instead: the unstable field name
                          **{"org.matrix.msc3202": True, "io.element.msc4190": True,
                             "de.sorunome.msc2409.push_ephemeral": True})
    empty = {"users": [], "aliases": [], "rooms": []}
    bad_status = registration("badstatus", f"{misbehaving}/badstatus", SERVER_NAME, namespaces=empty)
    not_json = registration("notjson", f"{misbehaving}/notjson", SERVER_NAME, namespaces=empty)
    third_party = registration("tp", f"{misbehaving}/tp", SERVER_NAME, namespaces=empty)
    files = [_write_registration(directory, f"{r['id']}.yaml", r)
             for r in (reg, no_url, down, crypto, bad_status, not_json, third_party)]
    server = homeserver_factory(app_service_config_files=files)
    bridge = Bridge(reg, server.base_url, SERVER_NAME, bridge_port).start()
    crypto_bridge = Bridge(crypto, server.base_url, SERVER_NAME, crypto_port, prefix="crypt_").start()
    yield server, bridge, {"nourl": no_url, "down": down, "crypto": crypto_bridge, "badstatus": bad_status,
                           "notjson": not_json}
    crypto_bridge.close()
    bridge.close()


@pytest.fixture(scope="module")
def portal(setup):
    """A room made by the bridge bot, with a real user invited and joined, and one ghost in it."""
    server, bridge, _ = setup
    alice = server.register(unique("alice"))
    ghost = bridge.ghost(unique("portal"))
    room_id = bridge.run(bridge.bot.create_room(name="Portal", invitees=[alice.user_id]))
    alice.join(room_id)
    bridge.run(bridge.bot.invite_user(room_id, ghost.mxid))
    bridge.run(ghost.join_room(room_id))
    return room_id, alice, ghost


def test_ghost_sends_with_massaged_timestamp(setup, portal):
    """mautrix's own flows: create room, invite, intent.ensure_registered, a ghost's message with ?ts=."""
    server, bridge, _ = setup
    room_id, alice, ghost = portal
    bridge.run(ghost.ensure_registered())  # registered already: M_USER_IN_USE, which mautrix ignores
    assert bridge.run(ghost.whoami()).user_id == ghost.mxid
    event_id = bridge.run(ghost.send_text(room_id, "from the remote side", timestamp=1_600_000_000_000))
    seen, _ = alice.timeline_until(room_id, lambda e: e["event_id"] == event_id)
    assert seen["sender"] == ghost.mxid and seen["origin_server_ts"] == 1_600_000_000_000
    # A real user's message reaches the bridge, which sees its own ghost's too.
    sent = alice.send(room_id, "hello bridge")
    bridge.wait_for(lambda: any(e.get("event_id") == sent for e in bridge.events), "alice's message")


def test_transactions_in_order_and_once(setup, portal):
    server, bridge, _ = setup
    room_id, alice, _ = portal
    bodies = [f"ordered {i}" for i in range(40)]
    for body in bodies:
        alice.send(room_id, body)
    bridge.wait_for(lambda: bodies[-1] in bridge.bodies(room_id), "the last message")
    got = [b for b in bridge.bodies(room_id) if b in bodies]
    assert got == bodies


def test_latency_to_the_bridge(setup, portal):
    """From a user's send returning to the bridge's handler: median and p99 over 100 messages."""
    server, bridge, _ = setup
    room_id, alice, _ = portal
    delays = []
    for i in range(100):
        start = time.monotonic()
        event_id = alice.send(room_id, f"latency {i}")
        bridge.wait_for(lambda: any(e.get("event_id") == event_id for e in bridge.events[-5:]), "the message")
        delays.append((time.monotonic() - start) * 1000)
    p99 = sorted(delays)[98]
    print(f"\nappservice latency over 100 messages: median {statistics.median(delays):.1f} ms, p99 {p99:.1f} ms")
    assert p99 < 2000


def test_outage_and_homeserver_restart_lose_nothing(setup, portal):
    """Messages sent while the bridge is down, then across a homeserver restart, arrive once, in order."""
    server, bridge, _ = setup
    room_id, alice, _ = portal
    bridge.stop()
    during_outage = [f"outage {i}" for i in range(5)]
    for body in during_outage:
        alice.send(room_id, body)
    server.stop()
    server.start()
    after_restart = [f"restarted {i}" for i in range(5)]
    for body in after_restart:
        alice.send(room_id, body)
    bridge.start()
    expected = during_outage + after_restart
    bridge.wait_for(lambda: after_restart[-1] in bridge.bodies(room_id), "the messages sent during the outage",
                    timeout=60)
    got = [b for b in bridge.bodies(room_id) if b in expected]
    assert got == expected
    counts = Counter(e["event_id"] for e in bridge.events)
    assert [eid for eid, n in counts.items() if n > 1] == []


def test_masquerading_and_tokens(setup):
    server, bridge, _ = setup
    token = bridge.reg["as_token"]
    ghost_id = f"@ghost_{unique('m')}:{SERVER_NAME}"
    status, body = server.request("POST", "/register", {"type": "m.login.application_service",
                                                        "username": ghost_id[1:].split(":")[0]}, token)
    assert status == 200 and body["user_id"] == ghost_id and "access_token" in body
    status, body = server.request("POST", "/register", {"type": "m.login.application_service", "inhibit_login": True,
                                                        "username": unique("ghost_quiet")}, token)
    assert status == 200 and "access_token" not in body and "device_id" not in body
    status, body = server.request("GET", f"/account/whoami?user_id={q(ghost_id)}", token=token)
    assert (status, body["user_id"]) == (200, ghost_id)
    status, body = server.request("GET", "/account/whoami", token=token)
    assert body["user_id"] == f"@bridgebot:{SERVER_NAME}"
    outsider = server.register(unique("outsider"))
    status, body = server.request("GET", f"/account/whoami?user_id={q(outsider.user_id)}", token=token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = server.request("GET", "/account/whoami", token="as_wrong_token")
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    # Registration outside the namespace, and m.login.application_service login of a ghost.
    status, body = server.request("POST", "/register", {"type": "m.login.application_service",
                                                        "username": unique("notaghost")}, token)
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    status, body = server.request("POST", "/login", {"type": "m.login.application_service",
                                                     "identifier": {"type": "m.id.user", "user": ghost_id}}, token)
    assert status == 200 and body["user_id"] == ghost_id
    assert server.request("GET", "/account/whoami", token=body["access_token"])[1]["user_id"] == ghost_id
    status, body = server.request("POST", "/login", {"type": "m.login.application_service", "identifier": {
        "type": "m.id.user", "user": f"@ghost_{unique('never')}:{SERVER_NAME}"}}, token)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")  # not registered (Synapse's answer too)
    status, body = server.request("POST", "/register", {"type": "m.login.application_service",
                                                        "username": unique("ghost_x")}, "as_wrong_token")
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_exclusive_namespaces(setup):
    server, bridge, _ = setup
    status, body = server.request("POST", "/register", {"username": unique("ghost_taken"), "password": "p" * 12,
                                                        "auth": {"type": "m.login.dummy"}})
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    user = server.register(unique("bob"))
    room_id = user.create_room()
    alias = f"#ghost_{unique('alias')}:{SERVER_NAME}"
    status, body = user.request("PUT", f"/directory/room/{q(alias)}", {"room_id": room_id})
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    status, body = user.request("POST", "/createRoom", {"room_alias_name": alias[1:].split(":")[0]})
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    # The bridge itself may take it, and publish its room (application service room directory).
    bridge_room = bridge.run(bridge.bot.create_room(alias_localpart=alias[1:].split(":")[0]))
    assert user.ok("GET", f"/directory/room/{q(alias)}")["room_id"] == bridge_room
    path = f"/directory/list/appservice/testproto/{q(bridge_room)}"
    assert server.request("PUT", path, {"visibility": "public"}, bridge.reg["as_token"]) == (200, {})
    assert user.ok("GET", f"/directory/list/room/{q(bridge_room)}") == {"visibility": "private"}  # its own list
    listed = user.ok("POST", "/publicRooms", {"third_party_instance_id": "bridge|testproto"})["chunk"]
    assert [r["room_id"] for r in listed] == [bridge_room]
    status, body = user.request("PUT", path, {"visibility": "private"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_user_and_alias_queries(setup):
    server, bridge, _ = setup
    user = server.register(unique("carol"))
    ghost_id = f"@ghost_auto{unique('q')}:{SERVER_NAME}"
    profile = user.ok("GET", f"/profile/{q(ghost_id)}")
    assert profile["displayname"] == f"Auto {ghost_id}" and ghost_id in bridge.queried
    status, body = user.request("GET", f"/profile/{q(f'@ghost_nobody{unique()}:{SERVER_NAME}')}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    alias = f"#ghost_room{unique('r')}:{SERVER_NAME}"
    room_id = user.join(alias)
    assert alias in bridge.queried and user.ok("GET", f"/directory/room/{q(alias)}")["room_id"] == room_id
    # Inviting an unknown ghost asks the bridge first; the invite then reaches it in a transaction.
    invited = f"@ghost_auto{unique('i')}:{SERVER_NAME}"
    own_room = user.create_room()
    user.invite(own_room, invited)
    assert invited in bridge.queried
    bridge.wait_for(lambda: any(e.get("state_key") == invited and e["content"].get("membership") == "invite"
                                for e in bridge.events), "the ghost's invite")


def test_ping_both_ways(setup):
    server, bridge, others = setup
    # The bridge asks the homeserver, which pings the bridge: any error would raise. (mautrix reads a
    # duration_ms of 0, usual on loopback, as -1.)
    assert isinstance(bridge.run(bridge.appservice.ping_self("ping-txn")), int)
    path = CLIENT_V1 + "/appservice/{}/ping"
    status, body = server.request("POST", path.format("nourl"), {}, others["nourl"]["as_token"])
    assert (status, body["errcode"]) == (400, "M_URL_NOT_SET")
    status, body = server.request("POST", path.format("down"), {}, others["down"]["as_token"])
    assert (status, body["errcode"]) == (502, "M_CONNECTION_FAILED")
    status, body = server.request("POST", path.format("bridge"), {}, others["down"]["as_token"])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = server.request("POST", path.format("badstatus"), {}, others["badstatus"]["as_token"])
    assert (status, body["errcode"], body["status"]) == (502, "M_BAD_STATUS", 500) and "M_UNKNOWN" in body["body"]
    status, body = server.request("POST", path.format("notjson"), {}, others["notjson"]["as_token"])
    assert (status, body["errcode"]) == (502, "M_NOT_JSON")


def test_ephemeral_events(setup, portal):
    server, bridge, _ = setup
    room_id, alice, _ = portal
    alice.ok("PUT", f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000})
    bridge.wait_for(lambda: any(e["type"] == "m.typing" and alice.user_id in e["content"]["user_ids"]
                                for e in bridge.ephemeral), "alice typing")
    event_id = alice.send(room_id, "read me")
    alice.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})
    bridge.wait_for(lambda: any(e["type"] == "m.receipt" and event_id in e["content"] for e in bridge.ephemeral),
                    "alice's receipt")
    alice.ok("PUT", f"/presence/{q(alice.user_id)}/status", {"presence": "unavailable", "status_msg": "away"})
    bridge.wait_for(lambda: any(e["type"] == "m.presence" and e["sender"] == alice.user_id
                                and e["content"].get("status_msg") == "away" for e in bridge.ephemeral),
                    "alice's presence")


def test_encrypted_appservice_extensions(setup):
    """MSC4190 device management by the appservice, MSC4203 to-device messages, MSC3202 one-time key
    counts and device list changes, as mautrix reads them (its encryption_events mode)."""
    server, _, others = setup
    bridge = others["crypto"]
    token = bridge.reg["as_token"]
    ghost_id = f"@crypt_{unique('g')}:{SERVER_NAME}"
    status, body = server.request("POST", "/register", {"type": "m.login.application_service",
                                                        "username": ghost_id[1:].split(":")[0]}, token)
    assert status == 200 and "access_token" not in body  # MSC4190: the appservice manages devices
    as_ghost = {"user_id": ghost_id}
    status, _ = server.request("PUT", "/devices/GHOSTDEV", {"display_name": "bridge"}, token, params=as_ghost)
    assert status == 201
    status, _ = server.request("PUT", "/devices/SPARE", {}, token, params=as_ghost)
    assert status == 201
    assert server.request("DELETE", "/devices/SPARE", {}, token, params=as_ghost)[0] == 200  # no UIA
    devices = server.request("GET", "/devices", token=token, params=as_ghost)[1]["devices"]
    assert [d["device_id"] for d in devices] == ["GHOSTDEV"]
    status, body = server.request("POST", "/keys/upload", {"one_time_keys": {
        f"signed_curve25519:K{i}": {"key": f"key{i}"} for i in range(3)}}, token,
        params={**as_ghost, "org.matrix.msc3202.device_id": "GHOSTDEV"})
    assert status == 200 and body["one_time_key_counts"] == {"signed_curve25519": 3}
    status, body = server.request("GET", "/account/whoami", token=token, params={**as_ghost, "device_id": "NOPE"})
    assert (status, body["errcode"]) == (400, "M_UNKNOWN_DEVICE")

    alice = server.register(unique("alice"))
    alice.ok("PUT", f"/sendToDevice/m.test/{unique('t')}", {"messages": {ghost_id: {"GHOSTDEV": {"n": 1}}}})
    message = bridge.wait_for(lambda: next((m for m in bridge.to_device if m["content"] == {"n": 1}), None),
                              "the to-device message")
    assert (message["sender"], message["to_user_id"], message["to_device_id"]) == (alice.user_id, ghost_id,
                                                                                     "GHOSTDEV")
    bridge.wait_for(lambda: any(c.get(ghost_id, {}).get("GHOSTDEV", {}).get("signed_curve25519") == 3
                                for c in bridge.otk_counts), "the ghost's one-time key count")
    # Alice shares a room with the ghost; her new device keys show in the bridge's device lists.
    room_id = alice.create_room(invite=[ghost_id])
    server.request("POST", f"/join/{q(room_id)}", {}, token, params=as_ghost)
    device = RawDevice(alice)
    assert device.upload(device_keys=device.device_keys())[0] == 200
    bridge.wait_for(lambda: any(alice.user_id in changed for changed in bridge.device_lists),
                    "alice in device_lists.changed")
    # Registered with de.sorunome.msc2409.push_ephemeral: typing comes as de.sorunome.msc2409.ephemeral.
    alice.ok("PUT", f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000})
    bridge.wait_for(lambda: any(e["type"] == "m.typing" and e["room_id"] == room_id for e in bridge.ephemeral),
                    "alice typing, under the unstable name")


def test_thirdparty_lookups(setup):
    """The client's /thirdparty/* answered by the appservices of the protocol (mautrix serves none: skipped)."""
    server, bridge, _ = setup
    user = server.register(unique("dave"))
    protocols = user.ok("GET", "/thirdparty/protocols")
    assert list(protocols) == ["testproto"]
    assert protocols["testproto"]["instances"][0]["instance_id"] == "tp|net1"
    assert user.ok("GET", "/thirdparty/protocol/testproto")["user_fields"] == ["handle"]
    found = user.ok("GET", "/thirdparty/user/testproto", params={"handle": "bob"})
    assert found == [{"userid": "@ghost_tp:test.local", "protocol": "testproto", "fields": {"query": "handle=bob"}}]
    status, body = user.request("GET", "/thirdparty/protocol/nosuch")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


def test_malformed_registration_refuses_start(homeserver_factory, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("badreg"))
    bad = registration("bad", "http://127.0.0.1:9", SERVER_NAME)
    bad["namespaces"]["users"][0]["exclusive"] = "yes"
    path = _write_registration(directory, "bad.yaml", bad)
    server = homeserver_factory(start=False, app_service_config_files=[path])
    with pytest.raises(ServerError) as refused:
        server.start()
    assert "bad.yaml" in str(refused.value) and "namespaces.users[0].exclusive" in str(refused.value)

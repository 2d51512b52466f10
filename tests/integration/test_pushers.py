"""HTTP pushers end to end (spec v1.19 client-server "Push Notifications", push gateway API):
a real Hexagone process and a push gateway on 127.0.0.1 recording what it receives."""

from __future__ import annotations

import asyncio
import time

import nio
import pytest

from tests.integration.fedtls import CertificateAuthority
from tests.integration.harness import unique
from tests.integration.pushgateway import PushGateway
from tests.integration.test_accounts import password_auth
from tests.integration.test_nio_chat import close_all, registered_client

DEADLINE_S = 30


def until(predicate, what: str):
    """Re-check a server-side condition until it holds (the server acts after the gateway answered)."""
    end = time.monotonic() + DEADLINE_S
    while not (result := predicate()):
        assert time.monotonic() < end, f"not reached in time: {what}"
        time.sleep(0.05)
    return result


@pytest.fixture(scope="module")
def gateway():
    gw = PushGateway()
    yield gw
    gw.close()


@pytest.fixture(scope="module")
def server(homeserver_factory):
    # Synapse's behaviour: pusher URLs are checked against ip_range_blacklist, which refuses 127.0.0.0/8.
    return homeserver_factory(ip_range_whitelist=["127.0.0.1/32"])


def set_pusher(user, gateway, pushkey: str, **extra) -> None:
    body = {"kind": "http", "app_id": "org.example.app", "pushkey": pushkey, "app_display_name": "App",
            "device_display_name": "Phone", "lang": "en", "data": {"url": gateway.url}, **extra}
    user.ok("POST", "/pushers/set", body)


def test_dm_notifies_each_message_highlights_mentions_not_own(server, gateway):
    alice, bob = server.register(), server.register()
    room = alice.create_room(is_direct=True, invite=[bob.user_id])
    bob.join(room)
    key = unique("bobkey")
    set_pusher(bob, gateway, key)
    assert [p["pushkey"] for p in bob.ok("GET", "/pushers")["pushers"]] == [key]
    ids = [alice.send(room, f"hello {i}") for i in range(3)]
    bob.send(room, "my own message")
    mention = alice.send(room, {"msgtype": "m.text", "body": f"hey {bob.user_id}",
                                "m.mentions": {"user_ids": [bob.user_id]}})
    got = gateway.wait(lambda g: len(g.for_key(key)) >= 4 and g.for_key(key))
    assert [n["event_id"] for n in got] == ids + [mention]
    assert [n["counts"]["unread"] for n in got[:3]] == [1, 2, 3]
    first = got[0]
    assert first["room_id"] == room and first["sender"] == alice.user_id and first["type"] == "m.room.message"
    assert first["content"]["body"] == "hello 0" and first["devices"][0]["pushkey"] == key
    assert first["devices"][0]["tweaks"].get("sound") == "default" and first["prio"] == "high"
    assert got[3]["devices"][0]["tweaks"].get("highlight") is True
    # GET /notifications lists them; only=highlight the mention
    listed = bob.ok("GET", "/notifications", params={"only": "highlight"})["notifications"]
    assert [n["event"]["event_id"] for n in listed] == [mention]


def test_event_id_only_and_rejected_pushkey_removes_pusher(server, gateway):
    alice, bob = server.register(), server.register()
    room = alice.create_room(preset="private_chat", invite=[bob.user_id])
    bob.join(room)
    key = unique("rejected")
    set_pusher(bob, gateway, key, data={"url": gateway.url, "format": "event_id_only"})
    gateway.rejected.add(key)
    event = alice.send(room, {"msgtype": "m.text", "body": "ping", "m.mentions": {"user_ids": [bob.user_id]}})
    got = gateway.wait(lambda g: g.for_key(key))
    assert got[0]["event_id"] == event and "content" not in got[0] and "sender" not in got[0]
    # the pusher is gone once the gateway rejected it
    until(lambda: bob.ok("GET", "/pushers")["pushers"] == [], "rejected pusher removed")


def test_set_errors_delete_and_logout(server, gateway):
    bob = server.register()
    base = {"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D",
            "lang": "en"}
    status, body = bob.request("POST", "/pushers/set", dict(base, data={}))
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
    status, body = bob.request("POST", "/pushers/set", dict(base, data={"url": "http://127.0.0.1/x"}))
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = bob.request("POST", "/pushers/set", {k: v for k, v in base.items() if k != "app_id"})
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
    # the rules of one kind (as Synapse serves them)
    assert any(r["rule_id"] == ".m.rule.master" for r in bob.ok("GET", "/pushrules/global/override/"))
    assert bob.request("GET", "/pushrules/global/nope/")[0] == 400
    set_pusher(bob, gateway, "k1")
    bob.ok("POST", "/pushers/set", {"app_id": "org.example.app", "pushkey": "k1", "kind": None})
    assert bob.ok("GET", "/pushers")["pushers"] == []
    # append: false takes the pushkey from another user; logout removes the device's pushers
    carol = server.register()
    set_pusher(bob, gateway, "shared")
    set_pusher(carol, gateway, "shared")
    assert bob.ok("GET", "/pushers")["pushers"] == []
    second = server.login(carol.user_id)
    carol.ok("POST", "/logout", {})
    assert second.ok("GET", "/pushers")["pushers"] == []
    # a password change logging out the other devices removes their pushers, not the requester's
    set_pusher(second, gateway, "mine")
    third = server.login(carol.user_id)
    set_pusher(third, gateway, "other device")
    status, challenge = second.request("POST", "/account/password", {"new_password": "changed password"})
    assert status == 401
    second.ok("POST", "/account/password", {"new_password": "changed password",
                                            "auth": password_auth(second, challenge["session"])})
    assert [p["pushkey"] for p in second.ok("GET", "/pushers")["pushers"]] == ["mine"]


def test_gateway_failure_is_retried(server, gateway):
    alice, bob = server.register(), server.register()
    room = alice.create_room(preset="private_chat", invite=[bob.user_id], name="Flaky room")
    bob.join(room)
    key = unique("flaky")
    set_pusher(bob, gateway, key)
    gateway.failures[key] = 1
    first = alice.send(room, "answered 503 first")
    second = alice.send(room, "then this one")
    got = gateway.wait(lambda g: len(g.for_key(key)) >= 3 and g.for_key(key))
    assert [n["event_id"] for n in got] == [first, first, second]
    assert got[2]["room_name"] == "Flaky room"


def test_restart_loses_nothing(homeserver_factory, gateway):
    srv = homeserver_factory(ip_range_whitelist=["127.0.0.1/32"])
    alice, bob = srv.register(), srv.register()
    room = alice.create_room(preset="private_chat", invite=[bob.user_id])
    bob.join(room)
    key = unique("restart")
    set_pusher(bob, gateway, key)
    before = [alice.send(room, f"before {i}") for i in range(3)]
    gateway.wait(lambda g: len(g.for_key(key)) >= 3)
    srv.stop()
    srv.start()
    after = [alice.send(room, f"after {i}") for i in range(3)]
    gateway.wait(lambda g: len(g.for_key(key)) >= 6)
    assert [n["event_id"] for n in gateway.for_key(key)] == before + after


def test_blacklisted_gateway_is_not_contacted(homeserver_factory, gateway):
    """Without the whitelist, 127.0.0.1 is refused by the default ip_range_blacklist (as Synapse)."""
    srv = homeserver_factory()
    alice, bob = srv.register(), srv.register()
    room = alice.create_room(preset="private_chat", invite=[bob.user_id])
    bob.join(room)
    key = unique("blocked")
    set_pusher(bob, gateway, key)
    alice.send(room, "not pushed")
    until(lambda: "refused by ip_range_blacklist" in srv.log(), "the push refused")
    assert gateway.for_key(key) == []


def test_nio_phone_unread_counts_follow_read_receipts(server, gateway):
    """matrix-nio users: the phone's unread count grows per message and restarts after its read receipt."""
    async def scenario():
        alice, bob = await registered_client(server), await registered_client(server)
        room = (await alice.room_create(is_direct=True, invite=[bob.user_id])).room_id
        assert isinstance(await bob.join(room), nio.JoinResponse)
        key = unique("phone")
        status, _ = server.request("POST", "/pushers/set", {
            "kind": "http", "app_id": "org.example.phone", "pushkey": key, "app_display_name": "Phone",
            "device_display_name": "nio", "lang": "en", "data": {"url": gateway.url}}, bob.access_token)
        assert status == 200

        async def say(text):
            resp = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text})
            assert isinstance(resp, nio.RoomSendResponse), resp
            return resp.event_id

        first = [await say(f"m{i}") for i in range(2)]
        await asyncio.to_thread(gateway.wait, lambda g: len(g.for_key(key)) >= 2)
        assert isinstance(await bob.room_read_markers(room, first[-1], first[-1]), nio.RoomReadMarkersResponse)
        # The read receipt sends the new count alone (no event: a badge update, as Synapse), 0 to clear the badge.
        badge = (await asyncio.to_thread(gateway.wait, lambda g: len(g.for_key(key)) >= 3 and g.for_key(key)))[2]
        assert badge["counts"] == {"unread": 0} and "event_id" not in badge and "type" not in badge
        assert [d["pushkey"] for d in badge["devices"]] == [key]
        last = await say("after reading")
        got = await asyncio.to_thread(gateway.wait, lambda g: len(g.for_key(key)) >= 4 and g.for_key(key))
        assert [(n.get("event_id"), n["counts"]["unread"]) for n in got] == [
            (first[0], 1), (first[1], 2), (None, 0), (last, 1)]
        assert got[3]["room_id"] == room and got[3]["sender"] == alice.user_id
        await close_all(alice, bob)

    asyncio.run(scenario())


def test_federated_message_is_pushed(home, hexagone_peer, gateway):
    """An event received over federation notifies the local member's pusher."""
    alice, bob = home.process.register(), hexagone_peer.process.register()
    key = unique("fedkey")
    set_pusher(alice, gateway, key)
    room_id = bob.create_room(preset="private_chat")
    bob.invite(room_id, alice)
    alice.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room_id))
    assert alice.join(room_id) == room_id
    event_id = bob.send(room_id, "from the other server")
    got = gateway.wait(lambda g: [n for n in g.for_key(key) if n["event_id"] == event_id])
    assert got[0]["sender"] == bob.user_id and got[0]["content"]["body"] == "from the other server"


def test_https_gateway_certificate_is_verified_unless_insecure_testing_client(homeserver_factory, tmp_path):
    """A push gateway's certificate is checked against the system CAs; Synapse's
    ``use_insecure_ssl_client_just_for_testing_do_not_use`` turns that off (test suites such as SyTest run their
    gateway with their own CA)."""
    ca = CertificateAuthority(str(tmp_path / "ca"))
    gateway = PushGateway(tls=ca.issue("gateway"))
    try:
        for insecure in (False, True):
            srv = homeserver_factory(ip_range_whitelist=["127.0.0.1/32"],
                                     use_insecure_ssl_client_just_for_testing_do_not_use=insecure)
            alice, bob = srv.register(), srv.register()
            room = alice.create_room(preset="private_chat", invite=[bob.user_id])
            bob.join(room)
            key = unique("tls")
            set_pusher(bob, gateway, key)
            alice.send(room, "over https")
            if insecure:
                gateway.wait(lambda gw: gw.for_key(key))
            else:
                until(lambda: "Push to org.example.app failed" in srv.log(), "the push failing on the certificate")
                assert "CERTIFICATE_VERIFY_FAILED" in srv.log() or "certificate verify failed" in srv.log()
                assert gateway.for_key(key) == []
    finally:
        gateway.close()


def test_invite_is_pushed_with_its_target_and_membership(server, gateway):
    """.m.rule.invite_for_me: the invite is pushed to the invited user, ``user_is_target`` true (spec) and
    ``membership`` "invite" (as Synapse)."""
    alice, bob = server.register(), server.register()
    key = unique("invited")
    set_pusher(bob, gateway, key)
    room = alice.create_room(preset="private_chat", invite=[bob.user_id])
    got = gateway.wait(lambda g: [n for n in g.for_key(key) if n.get("type") == "m.room.member"])
    assert got[0]["room_id"] == room and got[0]["sender"] == alice.user_id
    assert got[0]["user_is_target"] is True and got[0]["membership"] == "invite"

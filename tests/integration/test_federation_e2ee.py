"""End-to-end encryption across servers: Hexagone and a peer that is another Hexagone or a real Synapse,
over real TLS federation, in both directions; the encrypted conversations with real clients also on one server
(the ``topology`` fixture), with the same assertions.

Spec v1.19 server-server "Device Management", "End-to-End Encryption" and "Send-to-device messaging";
client-server "End-to-End Encryption". Raw HTTP with real ed25519 signatures for keys, device lists,
cross-signing and to-device messages; matrix-nio with real Olm/Megolm for encrypted conversations.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import statistics
import threading
import time

import pytest
from nio import EncryptionError, MegolmEvent
from signedjson.sign import sign_json

from federation.handlers.edus import _device_keys
from tests.integration.federation import FedServer, put_transaction
from tests.integration.harness import q, shared_room, unique, wait_for
from tests.integration.test_e2ee import (NioDevice, RawDevice, assert_stored_encrypted, claim, cross_signing_key,
                                         password_auth, query)

LATENCY_SAMPLES = 7


def sync_token(user) -> str:
    return user.sync()["next_batch"]


def device_list(sync: dict, kind: str) -> list:
    """``device_lists.changed`` or ``.left`` of a /sync answer; Synapse leaves ``device_lists`` out when empty."""
    return sync.get("device_lists", {}).get(kind, [])


def query_until(user, target: str, predicate, since: str, deadline_s: float = 20.0) -> tuple[dict, str]:
    """Sync until ``target`` is in device_lists.changed, then /keys/query until an answer satisfies
    ``predicate``: a server may list the change before it has fetched the new list (Synapse does)."""
    _, since = user.sync_until(lambda r: target in device_list(r, "changed"), since, deadline_s=deadline_s)
    return wait_for(lambda: _satisfying(predicate, query(user, target)), f"/keys/query of {target}", deadline_s), since


def _satisfying(predicate, value):
    return value if predicate(value) else None


def devices_of(found: dict, user_id: str) -> dict:
    return found["device_keys"].get(user_id, {})


def without_unsigned(keys: dict) -> dict:
    return {k: v for k, v in keys.items() if k != "unsigned"}


# -- keys across servers -------------------------------------------------------------------------------

def test_keys_query_and_claim_then_fallback_across_servers(pair):
    a, b = pair
    alice = RawDevice(a.process.register())
    bob = b.process.register()
    keys = alice.device_keys()
    otks = alice.one_time_keys(2)
    fallback = alice.one_time_keys(1, fallback=True)
    assert alice.upload(device_keys=keys, one_time_keys=otks, fallback_keys=fallback)[0] == 200

    # No shared room: Bob's server asks Alice's each time.
    found = query(bob, alice.user_id)
    assert found["failures"] == {}
    assert without_unsigned(devices_of(found, alice.user_id)[alice.user.device_id]) == keys
    one = query(bob, devices={alice.user_id: [alice.user.device_id, "NO_SUCH_DEVICE"]})
    assert list(devices_of(one, alice.user_id)) == [alice.user.device_id]

    # Each one-time key goes once, then the fallback key, again and again.
    claimed = [claim(bob, alice.user) for _ in range(2)]
    assert sorted(k for c in claimed for k in c) == sorted(otks)
    assert all(c[k] == otks[k] for c in claimed for k in c)
    assert claim(bob, alice.user) == fallback
    assert claim(bob, alice.user) == fallback
    counts = alice.user.sync()
    assert counts["device_one_time_keys_count"].get("signed_curve25519", 0) == 0
    assert counts["device_unused_fallback_key_types"] == []


def test_device_list_follows_new_and_deleted_devices(pair):
    a, b = pair
    alice = a.process.register()
    bob = RawDevice(b.process.register())
    room_id = shared_room(alice, bob.user, encrypted=True)
    first = since = sync_token(alice)
    bob.upload(device_keys=bob.device_keys())
    found, since = query_until(alice, bob.user_id, lambda f: bob.user.device_id in devices_of(f, bob.user_id), since)
    assert without_unsigned(devices_of(found, bob.user_id)[bob.user.device_id]) == \
        without_unsigned(query(bob.user, bob.user_id)["device_keys"][bob.user_id][bob.user.device_id])

    laptop = RawDevice(b.process.login(bob.user_id))
    laptop.upload(device_keys=laptop.device_keys())
    both = {bob.user.device_id, laptop.user.device_id}
    _, since = query_until(alice, bob.user_id, lambda f: set(devices_of(f, bob.user_id)) == both, since)

    laptop.user.ok("POST", "/logout", {})
    _, since = query_until(alice, bob.user_id, lambda f: set(devices_of(f, bob.user_id)) == {bob.user.device_id},
                           since)
    assert alice.ok("GET", "/keys/changes", params={"from": first, "to": since}) == {
        "changed": [bob.user_id], "left": []}

    # Once Bob shares no room with Alice, his server no longer tells hers: she asks it again.
    bob.user.leave(room_id)
    alice.sync_until(lambda r: bob.user_id in device_list(r, "left"), since)
    fresh = bob.device_keys()
    bob.upload(device_keys=fresh)
    # Her server may still answer from its copy until it has handled the leave (after her /sync showed it).
    wait_for(lambda: without_unsigned(devices_of(query(alice, bob.user_id), bob.user_id)[bob.user.device_id]) == fresh,
             "Bob's new keys, asked of his server")


def test_new_and_renamed_devices_reach_the_other_server(home, hexagone_peer):
    """A device logged in (no keys yet) or renamed is an m.device_list_update, as in Synapse: users of the other
    server see the change in device_lists.changed."""
    alice = home.process.register()
    bob = hexagone_peer.process.register()
    shared_room(alice, bob)
    since = sync_token(alice)
    laptop = hexagone_peer.process.login(bob.user_id)
    _, since = alice.sync_until(lambda r: bob.user_id in device_list(r, "changed"), since)
    bob.ok("PUT", f"/devices/{laptop.device_id}", {"display_name": "Bob's laptop"})
    alice.sync_until(lambda r: bob.user_id in device_list(r, "changed"), since)


def test_an_update_after_a_gap_is_fetched_again_then_told(home, hexagone_peer):
    """An m.device_list_update whose prev_id was never seen: the list is fetched again from the user's server
    (GET /user/devices) and local users are told once it is cached; the update's own content is not trusted."""
    alice = home.process.register()
    bob = RawDevice(hexagone_peer.process.register())
    shared_room(alice, bob.user)
    since = sync_token(alice)  # before the upload, whose update may be handled at once
    keys = bob.device_keys()
    bob.upload(device_keys=keys)
    _, since = query_until(alice, bob.user_id, lambda f: bob.user.device_id in devices_of(f, bob.user_id), since)
    ghost = {"user_id": bob.user_id, "device_id": "GHOST", "stream_id": 10 ** 12, "prev_id": [10 ** 12 - 1],
             "keys": {"user_id": bob.user_id, "device_id": "GHOST", "algorithms": [], "keys": {}, "signatures": {}}}
    status, _ = put_transaction(home, hexagone_peer, edus=[{"edu_type": "m.device_list_update", "content": ghost}])
    assert status == 200
    alice.sync_until(lambda r: bob.user_id in device_list(r, "changed"), since)
    found = devices_of(query(alice, bob.user_id), bob.user_id)
    assert list(found) == [bob.user.device_id] and without_unsigned(found[bob.user.device_id]) == keys


def test_remote_device_keys_are_passed_on_unless_they_name_another_device():
    """As Synapse, keys another server gives are stored as given (the clients check them); keys that say they
    are another user's or another device's are dropped."""
    assert _device_keys({"device_keys": {}}, "@a:x", "D") == {"device_keys": {}}
    assert _device_keys({"user_id": "@a:x", "device_id": "D", "keys": {}}, "@a:x", "D") is not None
    assert _device_keys({"user_id": "@b:x", "device_id": "D"}, "@a:x", "D") is None
    assert _device_keys({"user_id": "@a:x", "device_id": "E"}, "@a:x", "D") is None
    assert _device_keys("not an object", "@a:x", "D") is None


def test_cross_signing_keys_and_signatures_across_servers(pair):
    a, b = pair
    alice = RawDevice(a.process.register())
    bob = RawDevice(b.process.register())
    for device in (alice, bob):
        device.upload(device_keys=device.device_keys())
    shared_room(alice.user, bob.user, encrypted=True)
    since = sync_token(bob.user)

    master, master_pub = cross_signing_key(alice.user_id, "master")
    ssk, ssk_pub = cross_signing_key(alice.user_id, "self_signing", master)
    usk, usk_pub = cross_signing_key(alice.user_id, "user_signing", master)
    upload_signing_keys(alice, {"master_key": master_pub, "self_signing_key": ssk_pub, "user_signing_key": usk_pub})
    stored = without_unsigned(query(alice.user, alice.user_id)["device_keys"][alice.user_id][alice.user.device_id])
    signed_device = sign_json(copy.deepcopy(stored), alice.user_id, ssk)
    signed_master = sign_json(copy.deepcopy(master_pub), alice.user_id, alice.signing_key)
    resp = alice.user.ok("POST", "/keys/signatures/upload", {alice.user_id: {
        alice.user.device_id: signed_device, public_key_of(master): signed_master}})
    assert resp["failures"] == {}

    device_sig = signed_device["signatures"][alice.user_id][f"ed25519:{ssk.version}"]
    master_sig = signed_master["signatures"][alice.user_id][f"ed25519:{alice.user.device_id}"]

    # Hexagone shares Alice's device signature of her master key; Synapse shares the bare key.
    master_seen = {**master_pub, "signatures": {alice.user_id: {f"ed25519:{alice.user.device_id}": master_sig}}} \
        if isinstance(a, FedServer) else master_pub

    def complete(found: dict) -> bool:
        device = devices_of(found, alice.user_id).get(alice.user.device_id, {})
        return device.get("signatures", {}).get(alice.user_id, {}).get(f"ed25519:{ssk.version}") == device_sig \
            and found["master_keys"].get(alice.user_id) == master_seen \
            and found["self_signing_keys"].get(alice.user_id) == ssk_pub

    found, since = query_until(bob.user, alice.user_id, complete, since)
    assert alice.user_id not in found.get("user_signing_keys", {})  # private to Alice

    # Bob signs Alice's master key with his own user-signing key: only Bob sees that signature.
    bob_master, bob_master_pub = cross_signing_key(bob.user_id, "master")
    bob_usk, bob_usk_pub = cross_signing_key(bob.user_id, "user_signing", bob_master)
    upload_signing_keys(bob, {"master_key": bob_master_pub, "user_signing_key": bob_usk_pub})
    bob_signed = sign_json(without_unsigned(copy.deepcopy(found["master_keys"][alice.user_id])), bob.user_id, bob_usk)
    assert bob.user.ok("POST", "/keys/signatures/upload", {alice.user_id: {public_key_of(master): bob_signed}}) == \
        {"failures": {}}
    seen = query(bob.user, alice.user_id)["master_keys"][alice.user_id]["signatures"]
    assert seen[bob.user_id] == {f"ed25519:{bob_usk.version}":
                                 bob_signed["signatures"][bob.user_id][f"ed25519:{bob_usk.version}"]}
    assert bob.user_id not in query(alice.user, alice.user_id)["master_keys"][alice.user_id]["signatures"]


def public_key_of(key) -> str:
    """A cross-signing key's id in /keys/signatures/upload: its public key."""
    return key.version


def upload_signing_keys(device: RawDevice, body: dict) -> None:
    status, resp = device.user.request("POST", "/keys/device_signing/upload", body)
    if status == 401:  # a server that wants the password even for the first keys
        status, resp = device.user.request("POST", "/keys/device_signing/upload",
                                           {**body, "auth": password_auth(device.user, resp["session"])})
    assert status == 200, resp


def test_server_endpoints_answer_for_local_users_only(home, hexagone_peer):
    alice = RawDevice(home.process.register())
    otks = alice.one_time_keys(1)
    first_keys = alice.device_keys()
    alice.upload(device_keys=first_keys, one_time_keys=otks)
    master, master_pub = cross_signing_key(alice.user_id, "master")
    _, ssk_pub = cross_signing_key(alice.user_id, "self_signing", master)
    _, usk_pub = cross_signing_key(alice.user_id, "user_signing", master)
    upload_signing_keys(alice, {"master_key": master_pub, "self_signing_key": ssk_pub, "user_signing_key": usk_pub})
    devices_path = f"/_matrix/federation/v1/user/devices/{q(alice.user_id)}"

    def signed(method: str, path: str, content=None):
        return home.signed(method, path, origin=hexagone_peer.name, key=hexagone_peer.signing_key, content=content)

    status, listed = signed("GET", devices_path)
    assert status == 200, listed
    assert listed == {"user_id": alice.user_id, "stream_id": listed["stream_id"], "master_key": master_pub,
                      "self_signing_key": ssk_pub, "devices": [{"device_id": alice.user.device_id,
                                                                 "keys": first_keys}]}
    keys = alice.device_keys()
    assert alice.upload(device_keys=keys)[0] == 200  # new keys: a later version of the list
    status, relisted = signed("GET", devices_path)
    assert relisted["devices"] == [{"device_id": alice.user.device_id, "keys": keys}]
    assert relisted["stream_id"] > listed["stream_id"] > 0

    status, found = signed("POST", "/_matrix/federation/v1/user/keys/query", {"device_keys": {alice.user_id: []}})
    # Spec /user/keys/query: as uploaded "with the addition of an unsigned property" (no names over federation).
    assert status == 200 and found == {"device_keys": {alice.user_id: {alice.user.device_id: {**keys, "unsigned": {}}}},
                                       "master_keys": {alice.user_id: master_pub},
                                       "self_signing_keys": {alice.user_id: ssk_pub}}
    status, claimed = signed("POST", "/_matrix/federation/v1/user/keys/claim", {"one_time_keys": {
        alice.user_id: {alice.user.device_id: "signed_curve25519"}, "@x:elsewhere.example": {"D": "x"}}})
    assert (status, claimed) == (200, {"one_time_keys": {alice.user_id: {alice.user.device_id: otks}}})

    for method, path, body, errcode in (
            ("GET", f"/_matrix/federation/v1/user/devices/{q('@bob:' + hexagone_peer.name)}", None, "M_UNKNOWN"),
            ("POST", "/_matrix/federation/v1/user/keys/query", {"device_keys": {"@x:elsewhere.example": []}},
             "M_UNKNOWN"),
            ("POST", "/_matrix/federation/v1/user/keys/query", {"device_keys": [alice.user_id]}, "M_BAD_JSON"),
            ("POST", "/_matrix/federation/v1/user/keys/claim", {"one_time_keys": {alice.user_id: "x"}}, "M_BAD_JSON")):
        status, err = signed(method, path, body)
        assert (status, err["errcode"]) == (400, errcode), (path, err)
    status, err = home.https("GET", devices_path)  # not signed
    assert status == 401, err


def test_unreachable_servers_are_reported_in_failures(home):
    alice = home.process.register()
    nobody = "@nobody:unreachable.invalid"
    found = alice.ok("POST", "/keys/query", {"device_keys": {nobody: []}, "timeout": 5000})
    assert found["device_keys"] == {} and found["failures"]["unreachable.invalid"]["status"] == 503
    claimed = alice.ok("POST", "/keys/claim", {"one_time_keys": {nobody: {"D": "signed_curve25519"}}})
    assert claimed["one_time_keys"] == {} and claimed["failures"]["unreachable.invalid"]["status"] == 503
    for path, body in (("/keys/query", {"device_keys": {nobody: []}, "timeout": "soon"}),
                       ("/keys/claim", {"one_time_keys": {nobody: {"D": "x"}}, "timeout": True})):
        status, err = alice.request("POST", path, body)
        assert (status, err["errcode"]) == (400, "M_BAD_JSON"), err


# -- send-to-device ------------------------------------------------------------------------------------

def test_to_device_round_trip_across_servers(pair):
    a, b = pair
    alice = a.process.register()
    bob = b.process.register()
    bob_laptop = b.process.login(bob.user_id)
    since = {u.device_id: sync_token(u) for u in (alice, bob, bob_laptop)}
    txn = unique("txn")
    content = {"body": "psst", "nested": {"n": [1, 2]}}
    alice.ok("PUT", f"/sendToDevice/com.example.secret/{txn}", {"messages": {bob.user_id: {bob.device_id: content}}})
    alice.ok("PUT", f"/sendToDevice/com.example.secret/{txn}", {"messages": {bob.user_id: {bob.device_id: {"x": 1}}}})
    alice.ok("PUT", f"/sendToDevice/com.example.all/{unique('txn')}", {"messages": {bob.user_id: {"*": {"all": 1}}}})

    expected = [{"sender": alice.user_id, "type": "com.example.secret", "content": content},
                {"sender": alice.user_id, "type": "com.example.all", "content": {"all": 1}}]
    received: list = []
    bob.sync_until(lambda r: received.extend(r["to_device"]["events"]) or len(received) >= 2, since[bob.device_id])
    assert received == expected  # in order, and the repeated transaction id sent nothing
    laptop_got, _ = bob_laptop.sync_until(lambda r: r["to_device"]["events"], since[bob_laptop.device_id])
    assert laptop_got == expected[1:]

    bob.ok("PUT", f"/sendToDevice/com.example.reply/{unique('txn')}",
           {"messages": {alice.user_id: {alice.device_id: {"thanks": True}}}})
    reply, _ = alice.sync_until(lambda r: r["to_device"]["events"], since[alice.device_id])
    assert reply == [{"sender": bob.user_id, "type": "com.example.reply", "content": {"thanks": True}}]


# -- real clients ----------------------------------------------------------------------------------------

def nio_device(server, user, tmp_path, name: str) -> NioDevice:
    return NioDevice(server.process, user.user_id, tmp_path / name)


@contextlib.asynccontextmanager
async def logged_in(tmp_path, *members):
    """A matrix-nio device logged in for each (server, user, name), in a list the test may add to; every
    device in it is closed at the end."""
    devices: list[NioDevice] = []
    try:
        for server, user, name in members:
            devices.append(await nio_device(server, user, tmp_path, name).login())
        yield devices
    finally:
        for device in devices:
            await device.close()


async def knows_device(device: NioDevice, other: NioDevice) -> None:
    await device.sync_until(lambda r: other.client.device_id in device.device_ids_of(other.client.user_id))


def test_encrypted_conversation(topology, tmp_path):
    a, b = topology
    alice, bob = a.process.register(), b.process.register()
    room_id = shared_room(alice, bob, encrypted=True)

    async def scenario():
        async with logged_in(tmp_path, (a, alice, "alice"), (b, bob, "bob")) as (alice_nio, bob_nio):
            await alice_nio.sync_until(lambda r: room_id in alice_nio.client.rooms
                                       and alice_nio.client.rooms[room_id].encrypted)
            for sender, receiver, text in ((alice_nio, bob_nio, "hello from the first server 🔐"),
                                           (bob_nio, alice_nio, "and back from the second"),
                                           (alice_nio, bob_nio, "same session, next message")):
                await knows_device(sender, receiver)
                event_id = await sender.send_text(room_id, text)
                got = await receiver.receive_text(room_id, text)
                assert got.decrypted and got.sender == sender.client.user_id and got.event_id == event_id
                assert got.source["content"]["body"] == text
                assert_stored_encrypted(alice, room_id, event_id, text)
                assert_stored_encrypted(bob, room_id, event_id, text)

    asyncio.run(scenario())


def test_a_second_device_logging_in_later_decrypts_new_messages(topology, tmp_path):
    a, b = topology
    alice, bob = a.process.register(), b.process.register()
    room_id = shared_room(alice, bob, encrypted=True)

    async def scenario():
        async with logged_in(tmp_path, (a, alice, "alice"), (b, bob, "bob")) as devices:
            alice_nio, bob_nio = devices
            await knows_device(alice_nio, bob_nio)
            await alice_nio.send_text(room_id, "before the laptop")
            await bob_nio.receive_text(room_id, "before the laptop")

            laptop = await nio_device(b, bob, tmp_path, "bob-laptop").login()
            devices.append(laptop)
            await knows_device(alice_nio, laptop)  # through m.device_list_update, then /keys/query
            await alice_nio.send_text(room_id, "after the laptop")
            for receiver in (laptop, bob_nio):
                assert (await receiver.receive_text(room_id, "after the laptop")).decrypted

    asyncio.run(scenario())


def test_a_member_who_left_cannot_decrypt_the_next_message(pair, tmp_path):
    a, b = pair
    alice, bob, carol = a.process.register(), b.process.register(), b.process.register()
    room_id = shared_room(alice, bob, carol, encrypted=True)

    async def scenario():
        async with logged_in(tmp_path, (a, alice, "alice"), (b, bob, "bob"), (b, carol, "carol")) as devices:
            alice_nio, bob_nio, carol_nio = devices
            await knows_device(alice_nio, bob_nio)
            await knows_device(alice_nio, carol_nio)
            await alice_nio.send_text(room_id, "while bob is here")
            for receiver in (bob_nio, carol_nio):
                await receiver.receive_text(room_id, "while bob is here")

            bob.leave(room_id)
            await alice_nio.sync_until(lambda r: bob.user_id not in alice_nio.client.rooms[room_id].users)
            event_id = await alice_nio.send_text(room_id, "after bob left")
            assert (await carol_nio.receive_text(room_id, "after bob left")).decrypted
            # Bob's server still holds the event (Carol is there); Bob's device has no key for it.
            await bob_nio.sync()
            raw = carol.ok("GET", f"/rooms/{q(room_id)}/event/{q(event_id)}")
            event = MegolmEvent.from_dict({**raw, "room_id": room_id})
            with pytest.raises(EncryptionError):
                bob_nio.client.decrypt_event(event)

    asyncio.run(scenario())


# -- latency ----------------------------------------------------------------------------------------------

def kind(server) -> str:
    return "Hexagone" if isinstance(server, FedServer) else "Synapse"


def test_device_list_latency(pair, capsys):
    """Time from a device's key upload to the other server's /sync listing its user in device_lists.changed."""
    a, b = pair
    uploader = RawDevice(a.process.register())
    observer = b.process.register()
    shared_room(uploader.user, observer, encrypted=True)
    since = sync_token(observer)
    uploader.upload(device_keys=uploader.device_keys())
    _, since = observer.sync_until(lambda r: uploader.user_id in device_list(r, "changed"), since)
    samples = []
    for _ in range(LATENCY_SAMPLES):
        seen: dict = {}

        def watch(token=since):
            seen["result"] = observer.sync_until(
                lambda r: uploader.user_id in device_list(r, "changed") and seen.setdefault("t", time.monotonic()),
                token)

        watcher = threading.Thread(target=watch)
        watcher.start()
        start = time.monotonic()
        assert uploader.upload(device_keys=uploader.device_keys())[0] == 200
        watcher.join(30)
        assert "result" in seen, "the change never reached the other server"
        samples.append((seen["t"] - start) * 1000)
        since = seen["result"][1]
    with capsys.disabled():
        print(f"\ndevice list latency {kind(a)} {a.name} -> {kind(b)} {b.name}: "
              f"median {statistics.median(samples):.0f} ms "
              f"(samples: {', '.join(f'{s:.0f}' for s in samples)})")
    assert statistics.median(samples) < 5000

"""End-to-end encryption on one server, over real HTTP.

Spec v1.19 client-server "End-to-End Encryption" (key management, device
lists, cross-signing), "Send-to-Device messaging", "Server-side key backups".
Raw HTTP with real ed25519 signatures (signedjson) for the protocol details
and error paths. The encrypted conversations with matrix-nio (real Olm/Megolm)
run on one server and across servers in ``test_federation_e2ee.py``.
"""

from __future__ import annotations

import asyncio
import copy
import os

from nio import (AsyncClient, AsyncClientConfig, EncryptionError, KeysUploadResponse, LoginResponse, MegolmEvent,
                 RoomMessageText, RoomSendResponse, SyncResponse)
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from tests.integration.harness import PASSWORD, User, q, shared_room, unique


def random_key() -> str:
    return encode_base64(os.urandom(32))


class RawDevice:
    """A logged-in device speaking raw HTTP, with its own ed25519 identity key."""

    def __init__(self, user: User):
        self.user = user
        self.signing_key = generate_signing_key(user.device_id)
        self.ed25519 = encode_verify_key_base64(get_verify_key(self.signing_key))
        self._next_key = 0

    @property
    def user_id(self) -> str:
        return self.user.user_id

    def device_keys(self, **overrides) -> dict:
        dev = self.user.device_id
        keys = {"user_id": self.user_id, "device_id": dev,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {f"ed25519:{dev}": self.ed25519, f"curve25519:{dev}": random_key()}}
        keys.update(overrides)
        return sign_json(keys, self.user_id, self.signing_key)

    def one_time_keys(self, count: int, fallback: bool = False) -> dict:
        keys = {}
        for _ in range(count):
            self._next_key += 1
            obj = {"key": random_key(), **({"fallback": True} if fallback else {})}
            keys[f"signed_curve25519:AAAA{self._next_key}"] = sign_json(obj, self.user_id, self.signing_key)
        return keys

    def upload(self, **body) -> tuple[int, dict]:
        return self.user.request("POST", "/keys/upload", body)


def cross_signing_key(user_id: str, usage: str, signer=None) -> tuple[object, dict]:
    """A new cross-signing key pair: (signing key, public key object, signed by ``signer`` if given)."""
    key = generate_signing_key("tmp")
    public = encode_verify_key_base64(get_verify_key(key))
    key.version = public  # its key id is ed25519:<public key>
    obj = {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}
    return key, (sign_json(obj, user_id, signer) if signer is not None else obj)


def query(user: User, *user_ids: str, devices: dict | None = None) -> dict:
    body = {"device_keys": devices or {u: [] for u in user_ids}, "timeout": 10000}
    return user.ok("POST", "/keys/query", body)


def claim(user: User, target: User, algorithm: str = "signed_curve25519") -> dict:
    resp = user.ok("POST", "/keys/claim", {"one_time_keys": {target.user_id: {target.device_id: algorithm}}})
    return resp["one_time_keys"].get(target.user_id, {}).get(target.device_id, {})


def password_auth(user: User, session: str) -> dict:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password, "session": session}


def assert_error(result: tuple[int, dict], status: int, errcode: str) -> dict:
    assert result[0] == status and result[1]["errcode"] == errcode, result
    return result[1]


# -- device keys and one-time keys ---------------------------------------------------------------

def test_upload_and_query_device_keys(homeserver):
    alice = RawDevice(homeserver.register(initial_device_display_name="Alice's phone"))
    bob = homeserver.register()
    keys = alice.device_keys()
    status, resp = alice.upload(device_keys=keys, one_time_keys=alice.one_time_keys(3))
    assert status == 200, resp
    assert resp["one_time_key_counts"] == {"signed_curve25519": 3}

    found = query(bob, alice.user_id, "@someone:elsewhere.example")
    device = found["device_keys"][alice.user_id][alice.user.device_id]
    assert device.pop("unsigned") == {"device_display_name": "Alice's phone"}
    assert device == keys
    # Federation comes later: a remote server is reported as unreachable, not silently dropped.
    assert list(found["failures"]) == ["elsewhere.example"]
    # One device by id; an unknown device or a user without keys is simply absent.
    one = query(bob, devices={alice.user_id: [alice.user.device_id, "NOPE"], bob.user_id: []})
    assert list(one["device_keys"][alice.user_id]) == [alice.user.device_id]
    assert one["device_keys"][bob.user_id] == {}

    # Uploading only more one-time keys adds to the count; an identical re-upload is a no-op.
    more = alice.one_time_keys(2)
    assert alice.upload(one_time_keys=more)[1]["one_time_key_counts"]["signed_curve25519"] == 5
    assert alice.upload(one_time_keys=more)[1]["one_time_key_counts"]["signed_curve25519"] == 5
    reused = {next(iter(more)): alice.one_time_keys(1).popitem()[1]}
    assert_error(alice.upload(one_time_keys=reused), 400, "M_INVALID_PARAM")
    assert alice.upload()[1] == {"one_time_key_counts": {"signed_curve25519": 5}}


def test_upload_refuses_keys_that_are_not_yours_or_malformed(homeserver):
    alice = RawDevice(homeserver.register())
    mallory = RawDevice(homeserver.register())
    other_device = homeserver.login(alice.user_id)

    # Keys claiming to be another user's, or another device's, even if properly self-signed.
    forged = RawDevice(alice.user)
    forged.signing_key = mallory.signing_key
    assert_error(mallory.upload(device_keys=forged.device_keys()), 400, "M_BAD_JSON")
    assert_error(alice.upload(device_keys=alice.device_keys(device_id=other_device.device_id)), 400, "M_BAD_JSON")
    # Malformed objects.
    for bad in ({**alice.device_keys(), "keys": ["not", "a", "map"]}, "a string", None,
                {k: v for k, v in alice.device_keys().items() if k != "signatures"},
                {k: v for k, v in alice.device_keys().items() if k != "user_id"}):
        assert_error(alice.upload(device_keys=bad), 400, "M_BAD_JSON")
    assert_error(alice.upload(one_time_keys={"no_colon": random_key()}), 400, "M_BAD_JSON")
    assert_error(alice.upload(one_time_keys={"a:b:c": random_key()}), 400, "M_BAD_JSON")
    assert_error(alice.upload(one_time_keys={"signed_curve25519:X": {"no": "key"}}), 400, "M_BAD_JSON")
    assert_error(alice.upload(fallback_keys=["x"]), 400, "M_BAD_JSON")
    # Nothing of any refused request was stored.
    found = query(mallory.user, alice.user_id, mallory.user_id)["device_keys"]
    assert found == {alice.user_id: {}, mallory.user_id: {}}
    assert alice.upload()[1]["one_time_key_counts"] == {"signed_curve25519": 0}
    assert claim(mallory.user, alice.user) == {}


def test_device_and_one_time_keys_are_stored_without_checking_their_self_signatures(homeserver):
    """Spec v1.19 leaves verifying a device's self-signature to the clients that use its keys (``DeviceKeys``:
    only user_id and device_id "must match" the login); Synapse stores them unchecked, and so do we."""
    alice = RawDevice(homeserver.register())
    bob = homeserver.register()
    dev = alice.user.device_id
    # A bad signature, no ed25519 key at all: stored and served as they are.
    bogus = {"user_id": alice.user_id, "device_id": dev, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
             "keys": {f"curve25519:{dev}": "curve25519+key"},
             "signatures": {alice.user_id: {f"ed25519:{dev}": "self+signature"}}}
    bad_otk = alice.one_time_keys(1)
    next(iter(bad_otk.values()))["key"] = random_key()
    status, resp = alice.upload(device_keys=bogus, one_time_keys=bad_otk)
    assert status == 200 and resp["one_time_key_counts"]["signed_curve25519"] == 1, resp
    # Spec /keys/query: what was uploaded "with the addition of an unsigned property" (empty: no device name).
    assert query(bob, alice.user_id)["device_keys"][alice.user_id][dev] == {**bogus, "unsigned": {}}
    assert claim(bob, alice.user) == bad_otk
    # Replacing them with properly signed keys is a change others see.
    shared_room(alice.user, bob)
    since = bob.ok("GET", "/sync", params={"timeout": "0"})["next_batch"]
    keys = alice.device_keys()
    assert alice.upload(device_keys=keys)[0] == 200
    assert query(bob, alice.user_id)["device_keys"][alice.user_id][dev] == {**keys, "unsigned": {}}
    changes = bob.ok("GET", "/keys/changes", params={"from": since, "to": bob.ok("GET", "/sync", params={
        "timeout": "0"})["next_batch"]})
    assert alice.user_id in changes["changed"]


def test_one_time_keys_run_out_then_fallback_key(homeserver):
    alice = RawDevice(homeserver.register())
    bob = homeserver.register()
    fallback = alice.one_time_keys(1, fallback=True)
    otks = alice.one_time_keys(2)
    status, _ = alice.upload(device_keys=alice.device_keys(), one_time_keys=otks,
                             fallback_keys=fallback)
    assert status == 200
    first = alice.user.sync()
    assert first["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert first["device_unused_fallback_key_types"] == ["signed_curve25519"]

    # Each one-time key is handed out once, oldest upload first; then the fallback key, again and again.
    claimed = [claim(bob, alice.user) for _ in range(2)]
    assert sorted(k for c in claimed for k in c) == sorted(otks)
    assert all(c[k] == otks[k] for c in claimed for k in c)
    assert claim(bob, alice.user) == fallback
    assert claim(bob, alice.user) == fallback
    assert claim(bob, alice.user, "curve25519") == {}

    after = alice.user.sync(first["next_batch"])
    assert after["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert after["device_unused_fallback_key_types"] == []
    # Claims move no stream: a fresh initial sync is not the one remembered from before them.
    fresh = alice.user.sync()
    assert fresh["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert fresh["device_unused_fallback_key_types"] == []
    # A new fallback key (the unstable field name works too) is unused again.
    assert alice.upload(**{"org.matrix.msc2732.fallback_keys": alice.one_time_keys(1, fallback=True)})[0] == 200
    assert alice.user.sync()["device_unused_fallback_key_types"] == ["signed_curve25519"]
    assert_error(bob.request("POST", "/keys/claim", {"one_time_keys": {alice.user_id: "x"}}), 400, "M_BAD_JSON")


# -- device lists ------------------------------------------------------------------------------------

def test_device_list_changes_in_sync_and_keys_changes(homeserver):
    alice = homeserver.register()
    bob = RawDevice(homeserver.register())
    carol = homeserver.register()
    stranger = RawDevice(homeserver.register())
    room_id = shared_room(alice, bob.user, encrypted=True)
    token = alice.sync()["next_batch"]

    bob.upload(device_keys=bob.device_keys())
    stranger.upload(device_keys=stranger.device_keys())
    changed, token2 = alice.sync_until(lambda r: r["device_lists"]["changed"], token)
    assert changed == [bob.user_id]  # not the stranger: no shared room
    resp = alice.ok("GET", "/keys/changes", params={"from": token, "to": token2})
    assert resp == {"changed": [bob.user_id], "left": []}

    # A user newly sharing a room is "changed"; one no longer sharing any room is "left".
    alice.invite(room_id, carol)
    carol.join(room_id)
    _, token3 = alice.sync_until(lambda r: carol.user_id in r["device_lists"]["changed"], token2)
    bob.user.leave(room_id)
    _, token4 = alice.sync_until(lambda r: bob.user_id in r["device_lists"]["left"], token3)
    assert alice.ok("GET", "/keys/changes", params={"from": token2, "to": token4}) == {
        "changed": [carol.user_id], "left": [bob.user_id]}
    assert_error(alice.request("GET", "/keys/changes"), 400, "M_MISSING_PARAM")
    assert_error(alice.request("GET", "/keys/changes", params={"from": "garbage"}), 400, "M_INVALID_PARAM")


def test_deleting_a_device_removes_its_keys_and_changes_the_list(homeserver):
    alice = homeserver.register()
    bob = homeserver.register()
    bob2 = RawDevice(homeserver.login(bob.user_id))
    bob2.upload(device_keys=bob2.device_keys(), one_time_keys=bob2.one_time_keys(1))
    shared_room(alice, bob, encrypted=True)
    token = alice.sync()["next_batch"]
    assert list(query(alice, bob.user_id)["device_keys"][bob.user_id]) == [bob2.user.device_id]

    bob2.user.ok("POST", "/logout", {})
    alice.sync_until(lambda r: bob.user_id in r["device_lists"]["changed"], token)
    assert query(alice, bob.user_id)["device_keys"][bob.user_id] == {}
    assert claim(alice, bob2.user) == {}


def changed_in(user: User, who: str):
    return lambda r: who in r["device_lists"]["changed"]


def test_new_and_renamed_devices_change_the_device_list(homeserver):
    """As Synapse: a new device (login) or a renamed one is a device list change, seen by the users sharing a
    room and by the user's own other devices."""
    alice = homeserver.register()
    bob = homeserver.register()
    shared_room(alice, bob)
    token, bob_token = alice.sync()["next_batch"], bob.sync()["next_batch"]
    bob2 = homeserver.login(bob.user_id)
    _, token = alice.sync_until(changed_in(alice, bob.user_id), token)
    _, bob_token = bob.sync_until(changed_in(bob, bob.user_id), bob_token)
    assert bob.ok("PUT", f"/devices/{bob2.device_id}", {"display_name": "Bob's tablet"}) == {}
    _, token2 = alice.sync_until(changed_in(alice, bob.user_id), token)
    assert alice.ok("GET", "/keys/changes", params={"from": token, "to": token2})["changed"] == [bob.user_id]
    # Renaming a device that does not exist changes nothing (404).
    assert_error(bob.request("PUT", "/devices/NOPE", {"display_name": "x"}), 404, "M_NOT_FOUND")


def test_user_signing_key_and_signatures_of_others_are_told_to_the_signer_only(homeserver):
    """The user-signing key and the signatures it makes are visible to their owner only, so only they see a
    change in ``device_lists.changed`` (Synapse's user signature stream); the others do not."""
    alice = RawDevice(homeserver.register())
    bob = RawDevice(homeserver.register())
    carol = RawDevice(homeserver.register())
    shared_room(alice.user, bob.user, carol.user)
    master, master_pub = cross_signing_key(alice.user_id, "master")
    _, bob_master_pub = cross_signing_key(bob.user_id, "master")
    assert upload_cross_signing(alice.user, {"master_key": master_pub})[0] == 200
    assert upload_cross_signing(bob.user, {"master_key": bob_master_pub})[0] == 200
    tokens = {d.user_id: d.user.sync()["next_batch"] for d in (alice, bob, carol)}

    usk, usk_pub = cross_signing_key(alice.user_id, "user_signing", master)
    _, challenge = upload_cross_signing(alice.user, {"user_signing_key": usk_pub})
    assert upload_cross_signing(alice.user, {"user_signing_key": usk_pub,
                                             "auth": password_auth(alice.user, challenge["session"])})[0] == 200
    _, after_usk = alice.user.sync_until(changed_in(alice.user, alice.user_id), tokens[alice.user_id])
    bob_master_id = next(iter(bob_master_pub["keys"])).split(":", 1)[1]
    signed_bob = sign_json(copy.deepcopy(bob_master_pub), alice.user_id, usk)
    resp = alice.user.ok("POST", "/keys/signatures/upload", {bob.user_id: {bob_master_id: signed_bob}})
    assert resp["failures"] == {}
    alice.user.sync_until(changed_in(alice.user, bob.user_id), after_usk)

    # A public change after both (Carol's new device keys) bounds what Bob and Carol were told.
    carol.upload(device_keys=carol.device_keys())
    for device in (bob, carol):
        _, upto = device.user.sync_until(changed_in(device.user, carol.user_id), tokens[device.user_id])
        changes = device.user.ok("GET", "/keys/changes", params={"from": tokens[device.user_id], "to": upto})
        assert changes == {"changed": [carol.user_id], "left": []}


# -- send-to-device --------------------------------------------------------------------------------

def to_device_events(user: User, since: str | None = None) -> tuple[list[dict], str]:
    resp = user.sync(since)
    return resp["to_device"]["events"], resp["next_batch"]


def test_send_to_device_round_trip(homeserver):
    alice = homeserver.register()
    bob = homeserver.register()
    bob2 = homeserver.login(bob.user_id)
    _, bob_token = to_device_events(bob)
    content = {"body": "psst", "n": 1}
    path = f"/sendToDevice/{q('com.example.secret')}/{unique('txn')}"
    alice.ok("PUT", path, {"messages": {bob.user_id: {bob.device_id: content, "NO_SUCH_DEVICE": {"x": 1}},
                                        "@remote:elsewhere.example": {"*": {"x": 2}}}})
    alice.ok("PUT", path, {"messages": {bob.user_id: {bob.device_id: {"again": True}}}})  # same txn: ignored

    events, _ = bob.sync_until(lambda r: r["to_device"]["events"], bob_token)
    assert events == [{"sender": alice.user_id, "type": "com.example.secret", "content": content}]
    # At least once: syncing again from the same token delivers it again...
    again, next_token = to_device_events(bob, bob_token)
    assert again == events
    # ...until a sync uses a token past it; then it is gone.
    assert to_device_events(bob, next_token)[0] == []
    assert to_device_events(bob)[0] == []
    assert to_device_events(bob2)[0] == []  # only the addressed device

    # "*" reaches every device of the user.
    alice.ok("PUT", f"/sendToDevice/m.test/{unique('txn')}", {"messages": {bob.user_id: {"*": {"all": 1}}}})
    for device in (bob, bob2):
        assert [e["content"] for e in to_device_events(device)[0]] == [{"all": 1}]

    for bad in ({"messages": {bob.user_id: "x"}}, {"messages": {bob.user_id: {bob.device_id: 5}}}, {}):
        assert_error(alice.request("PUT", f"/sendToDevice/m.test/{unique('txn')}", bad), 400, "M_BAD_JSON")


def test_to_device_limit_per_sync(homeserver):
    alice = homeserver.register()
    bob = homeserver.register()
    _, token = to_device_events(bob)
    for n in range(105):
        alice.ok("PUT", f"/sendToDevice/m.test/{unique('txn')}", {"messages": {bob.user_id: {bob.device_id: {"n": n}}}})
    first, token = to_device_events(bob, token)
    assert [e["content"]["n"] for e in first] == list(range(100))
    rest, token = to_device_events(bob, token)
    assert [e["content"]["n"] for e in rest] == list(range(100, 105))
    assert to_device_events(bob, token)[0] == []


# -- cross-signing -----------------------------------------------------------------------------------

def upload_cross_signing(user: User, body: dict) -> tuple[int, dict]:
    return user.request("POST", "/keys/device_signing/upload", body)


def test_cross_signing_keys_and_signatures(homeserver):
    alice = RawDevice(homeserver.register())
    bob = RawDevice(homeserver.register())
    for device in (alice, bob):
        device.upload(device_keys=device.device_keys())
    master, master_pub = cross_signing_key(alice.user_id, "master")
    ssk, ssk_pub = cross_signing_key(alice.user_id, "self_signing", master)
    usk, usk_pub = cross_signing_key(alice.user_id, "user_signing", master)
    body = {"master_key": master_pub, "self_signing_key": ssk_pub, "user_signing_key": usk_pub}

    # A self-signing key not signed by the master key is refused, and nothing is stored.
    _, bad_ssk = cross_signing_key(alice.user_id, "self_signing", generate_signing_key("other"))
    assert_error(upload_cross_signing(alice.user, {**body, "self_signing_key": bad_ssk}), 400, "M_INVALID_SIGNATURE")
    assert_error(upload_cross_signing(alice.user, {**body, "master_key": {**master_pub, "user_id": bob.user_id}}),
                 400, "M_INVALID_PARAM")
    assert_error(upload_cross_signing(alice.user, {"self_signing_key": ssk_pub}), 400, "M_MISSING_PARAM")
    assert "master_keys" not in query(bob.user, alice.user_id) or not query(bob.user, alice.user_id)["master_keys"]

    # The first upload needs no user-interactive auth; the same keys again neither (idempotent).
    assert upload_cross_signing(alice.user, body) == (200, {})
    assert upload_cross_signing(alice.user, body) == (200, {})
    mine = query(alice.user, alice.user_id)
    assert mine["master_keys"][alice.user_id] == master_pub
    assert mine["self_signing_keys"][alice.user_id] == ssk_pub
    assert mine["user_signing_keys"][alice.user_id] == usk_pub
    theirs = query(bob.user, alice.user_id)
    assert theirs["master_keys"] == {alice.user_id: master_pub} and theirs["user_signing_keys"] == {}

    # Replacing keys needs the password.
    master2, master2_pub = cross_signing_key(alice.user_id, "master")
    status, challenge = upload_cross_signing(alice.user, {"master_key": master2_pub})
    assert status == 401 and {"stages": ["m.login.password"]} in challenge["flows"], challenge
    assert query(bob.user, alice.user_id)["master_keys"][alice.user_id] == master_pub
    status, _ = upload_cross_signing(alice.user, {"master_key": master2_pub,
                                                  "auth": password_auth(alice.user, challenge["session"])})
    assert status == 200
    assert query(bob.user, alice.user_id)["master_keys"][alice.user_id] == master2_pub
    ssk2, ssk2_pub = cross_signing_key(alice.user_id, "self_signing", master2)
    usk2, usk2_pub = cross_signing_key(alice.user_id, "user_signing", master2)
    status, challenge = upload_cross_signing(alice.user, {"self_signing_key": ssk2_pub, "user_signing_key": usk2_pub})
    assert status == 401
    assert upload_cross_signing(alice.user, {"self_signing_key": ssk2_pub, "user_signing_key": usk2_pub,
                                             "auth": password_auth(alice.user, challenge["session"])})[0] == 200
    check_signature_uploads(alice, bob, master2, master2_pub, ssk2, usk2)


def check_signature_uploads(alice: RawDevice, bob: RawDevice, master, master_pub: dict, ssk, usk) -> None:
    """Alice signs her device (self-signing key), her master key (device) and Bob's master key (user-signing)."""
    bob_master, bob_master_pub = cross_signing_key(bob.user_id, "master")
    assert upload_cross_signing(bob.user, {"master_key": bob_master_pub})[0] == 200
    stored_device = query(alice.user, alice.user_id)["device_keys"][alice.user_id][alice.user.device_id]
    stored_device.pop("unsigned", None)
    master_id = next(iter(master_pub["keys"])).split(":", 1)[1]
    bob_master_id = next(iter(bob_master_pub["keys"])).split(":", 1)[1]

    forged_device = sign_json(copy.deepcopy(stored_device), alice.user_id, generate_signing_key(ssk.version))
    resp = alice.user.ok("POST", "/keys/signatures/upload", {alice.user_id: {alice.user.device_id: forged_device}})
    assert resp["failures"][alice.user_id][alice.user.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert f"ed25519:{ssk.version}" not in str(query(bob.user, alice.user_id)["device_keys"])
    changed_device = sign_json({**copy.deepcopy(stored_device), "algorithms": []}, alice.user_id, ssk)
    resp = alice.user.ok("POST", "/keys/signatures/upload", {alice.user_id: {alice.user.device_id: changed_device}})
    assert resp["failures"][alice.user_id][alice.user.device_id]["errcode"] == "M_INVALID_PARAM"

    signed_device = sign_json(copy.deepcopy(stored_device), alice.user_id, ssk)
    signed_master = sign_json(copy.deepcopy(master_pub), alice.user_id, alice.signing_key)
    signed_bob = sign_json(copy.deepcopy(bob_master_pub), alice.user_id, usk)
    resp = alice.user.ok("POST", "/keys/signatures/upload", {
        alice.user_id: {alice.user.device_id: signed_device, master_id: signed_master},
        bob.user_id: {bob_master_id: signed_bob, "NOT_A_KEY": signed_bob}})
    assert resp["failures"] == {bob.user_id: {"NOT_A_KEY": resp["failures"][bob.user_id]["NOT_A_KEY"]}}
    assert resp["failures"][bob.user_id]["NOT_A_KEY"]["errcode"] == "M_NOT_FOUND"

    # Bob sees Alice's signatures of her own device and master key...
    seen = query(bob.user, alice.user_id)
    device_sigs = seen["device_keys"][alice.user_id][alice.user.device_id]["signatures"][alice.user_id]
    assert device_sigs[f"ed25519:{ssk.version}"] == signed_device["signatures"][alice.user_id][f"ed25519:{ssk.version}"]
    assert seen["master_keys"][alice.user_id]["signatures"][alice.user_id][f"ed25519:{alice.user.device_id}"]
    # ...and only Alice sees her signature of Bob's master key.
    assert alice.user_id not in query(bob.user, bob.user_id)["master_keys"][bob.user_id].get("signatures", {})
    alice_view = query(alice.user, bob.user_id)["master_keys"][bob.user_id]["signatures"][alice.user_id]
    assert alice_view == {f"ed25519:{usk.version}": signed_bob["signatures"][alice.user_id][f"ed25519:{usk.version}"]}
    # Without a user-signing key, Bob's signature of Alice's master key fails.
    resp = bob.user.ok("POST", "/keys/signatures/upload", {alice.user_id: {master_id: signed_master}})
    assert resp["failures"][alice.user_id][master_id]["errcode"] == "M_NOT_FOUND"


# -- key backup ---------------------------------------------------------------------------------------

def session_key(index: int, forwarded: int, verified: bool, data: str) -> dict:
    return {"first_message_index": index, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ephemeral": "e", "ciphertext": data, "mac": "m"}}


def test_key_backup_versions(homeserver):
    alice = homeserver.register()
    assert_error(alice.request("GET", "/room_keys/version"), 404, "M_NOT_FOUND")
    info = {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abc"}}
    v1 = alice.ok("POST", "/room_keys/version", info)["version"]
    v2 = alice.ok("POST", "/room_keys/version", info)["version"]
    assert int(v2) > int(v1)
    assert alice.ok("GET", "/room_keys/version") == {**info, "version": v2, "count": 0, "etag": "0"}
    assert alice.ok("GET", f"/room_keys/version/{v1}")["version"] == v1
    for missing in ("999", "abc"):
        assert_error(alice.request("GET", f"/room_keys/version/{missing}"), 404, "M_NOT_FOUND")
    assert_error(alice.request("POST", "/room_keys/version", {"algorithm": 5, "auth_data": {}}), 400, "M_BAD_JSON")

    new_auth = {"public_key": "def"}
    assert alice.ok("PUT", f"/room_keys/version/{v2}", {**info, "auth_data": new_auth}) == {}
    assert alice.ok("GET", "/room_keys/version")["auth_data"] == new_auth
    assert_error(alice.request("PUT", f"/room_keys/version/{v2}", {**info, "algorithm": "other"}),
                 400, "M_INVALID_PARAM")
    assert_error(alice.request("PUT", f"/room_keys/version/{v2}", {**info, "version": v1}), 400, "M_INVALID_PARAM")
    assert_error(alice.request("PUT", "/room_keys/version/999", info), 404, "M_NOT_FOUND")

    assert alice.ok("DELETE", f"/room_keys/version/{v2}") == {}
    assert_error(alice.request("DELETE", f"/room_keys/version/{v2}"), 404, "M_NOT_FOUND")
    assert alice.ok("GET", "/room_keys/version")["version"] == v1
    assert int(alice.ok("POST", "/room_keys/version", info)["version"]) > int(v2)  # numbers are never reused
    # Another user sees none of it.
    assert_error(homeserver.register().request("GET", f"/room_keys/version/{v1}"), 404, "M_NOT_FOUND")


def test_key_backup_keys_etag_count_and_replacement(homeserver):
    alice = homeserver.register()
    info = {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abc"}}
    old = alice.ok("POST", "/room_keys/version", info)["version"]
    version = alice.ok("POST", "/room_keys/version", info)["version"]
    room, room2 = "!room:test.local", "!other:test.local"
    keys_path = lambda *parts: "/room_keys/keys" + "".join("/" + q(p) for p in parts)  # noqa: E731

    base = session_key(5, 2, False, "base")
    r = alice.ok("PUT", keys_path(room, "s1"), base, params={"version": version})
    assert r == {"etag": "1", "count": 1}
    r = alice.ok("PUT", keys_path(room), {"sessions": {"s2": session_key(0, 0, False, "s2")}},
                 params={"version": version})
    assert r == {"etag": "2", "count": 2}
    r = alice.ok("PUT", keys_path(), {"rooms": {room2: {"sessions": {"s3": session_key(0, 0, True, "s3")}}}},
                 params={"version": version})
    assert r == {"etag": "3", "count": 3}

    def s1() -> dict:
        return alice.ok("GET", keys_path(room, "s1"), params={"version": version})

    # Not better: same or worse on every criterion, or unverified over verified. The etag stays.
    for worse in (session_key(5, 2, False, "same"), session_key(6, 0, False, "later"),
                  session_key(5, 3, False, "more forwarded")):
        assert alice.ok("PUT", keys_path(room, "s1"), worse, params={"version": version})["etag"] == "3"
    assert s1() == base
    # Better: lower forwarded_count; then lower first_message_index; then verified beats anything unverified.
    for better, etag in ((session_key(5, 1, False, "fewer forwards"), "4"), (session_key(4, 9, False, "earlier"), "5"),
                         (session_key(90, 9, True, "verified"), "6")):
        assert alice.ok("PUT", keys_path(room, "s1"), better, params={"version": version}) == {"etag": etag,
                                                                                                 "count": 3}
        assert s1() == better
    assert alice.ok("PUT", keys_path(room, "s1"), session_key(0, 0, False, "unverified"),
                    params={"version": version})["etag"] == "6"
    assert s1()["session_data"]["ciphertext"] == "verified"

    every = alice.ok("GET", keys_path(), params={"version": version})
    assert {r: sorted(v["sessions"]) for r, v in every["rooms"].items()} == {room: ["s1", "s2"], room2: ["s3"]}
    assert sorted(alice.ok("GET", keys_path(room), params={"version": version})["sessions"]) == ["s1", "s2"]
    assert alice.ok("GET", keys_path("!empty:test.local"), params={"version": version}) == {"sessions": {}}
    assert_error(alice.request("GET", keys_path(room, "nope"), params={"version": version}), 404, "M_NOT_FOUND")
    assert alice.ok("GET", "/room_keys/version")["count"] == 3

    # Writing to a version that is not the current one; unknown versions; bad input.
    err = assert_error(alice.request("PUT", keys_path(room, "s9"), base, params={"version": old}),
                       403, "M_WRONG_ROOM_KEYS_VERSION")
    assert err["current_version"] == version
    assert_error(alice.request("PUT", keys_path(room, "s9"), base, params={"version": "999"}), 404, "M_NOT_FOUND")
    assert_error(alice.request("GET", keys_path(), params={"version": "999"}), 404, "M_NOT_FOUND")
    assert_error(alice.request("GET", keys_path()), 400, "M_MISSING_PARAM")
    assert_error(alice.request("PUT", keys_path(room, "s9"), {**base, "is_verified": "yes"},
                               params={"version": version}), 400, "M_INVALID_PARAM")
    assert_error(alice.request("PUT", keys_path(room, "s9"), {**base, "first_message_index": None},
                               params={"version": version}), 400, "M_BAD_JSON")
    assert alice.ok("GET", "/room_keys/version")["etag"] == "6"

    # Deleting: one session, one room, everything; the etag moves each time.
    assert alice.ok("DELETE", keys_path(room, "s1"), params={"version": version}) == {"etag": "7", "count": 2}
    assert alice.ok("DELETE", keys_path(room), params={"version": version}) == {"etag": "8", "count": 1}
    assert alice.ok("DELETE", keys_path(), params={"version": version}) == {"etag": "9", "count": 0}
    assert_error(alice.request("DELETE", keys_path(), params={"version": "999"}), 404, "M_NOT_FOUND")


# -- real clients: matrix-nio with Olm/Megolm ------------------------------------------------------------

class NioDevice:
    """A matrix-nio client with encryption, keeping its keys uploaded and its view of others' keys fresh."""

    def __init__(self, server, user_id: str, store_dir):
        os.makedirs(store_dir, exist_ok=True)
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
        self.client = AsyncClient(server.base_url, user_id, store_path=str(store_dir), config=config)
        self._undecrypted: list = []

    async def login(self) -> "NioDevice":
        resp = await self.client.login(PASSWORD, device_name="nio")
        assert isinstance(resp, LoginResponse), resp
        await self.sync()
        return self

    async def sync(self, timeout_ms: int = 0):
        resp = await self.client.sync(timeout=timeout_ms, full_state=self.client.next_batch is None)
        assert isinstance(resp, SyncResponse), resp
        if self.client.should_upload_keys:
            assert isinstance(await self.client.keys_upload(), KeysUploadResponse)
        if self.client.should_query_keys:
            await self.client.keys_query()
        return resp

    async def sync_until(self, predicate, deadline_s: float = 20.0):
        end = asyncio.get_running_loop().time() + deadline_s
        while asyncio.get_running_loop().time() < end:
            resp = await self.sync(timeout_ms=1000)
            found = predicate(resp)
            if found:
                return found
        raise AssertionError(f"{self.client.user_id}: condition not met within {deadline_s}s")

    async def receive_text(self, room_id: str, body: str) -> RoomMessageText:
        """Sync until ``body`` arrives decrypted in ``room_id`` (retrying events whose key came later)."""
        def find(resp):
            room = resp.rooms.join.get(room_id)
            self._undecrypted += [e for e in (room.timeline.events if room else []) if isinstance(e, MegolmEvent)]
            candidates = list(room.timeline.events if room else [])
            for event in list(self._undecrypted):
                try:
                    candidates.append(self.client.decrypt_event(event))
                    self._undecrypted.remove(event)
                except EncryptionError:
                    pass
            return next((e for e in candidates if isinstance(e, RoomMessageText) and e.body == body), None)
        return await self.sync_until(find)

    async def send_text(self, room_id: str, body: str) -> str:
        resp = await self.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body},
                                           ignore_unverified_devices=True)
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    def device_ids_of(self, user_id: str) -> set[str]:
        return {d.id for d in self.client.device_store.active_user_devices(user_id)}

    async def close(self) -> None:
        await self.client.close()


def assert_stored_encrypted(user: User, room_id: str, event_id: str, plaintext: str) -> None:
    """The server holds an ordinary m.room.encrypted event that does not contain the plaintext."""
    event = user.ok("GET", f"/rooms/{q(room_id)}/event/{q(event_id)}")
    assert event["type"] == "m.room.encrypted"
    assert event["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert plaintext not in str(event)


def test_to_device_and_keys_survive_a_restart(homeserver_factory):
    server = homeserver_factory()
    alice = server.register()
    bob = RawDevice(server.register())
    bob.upload(device_keys=bob.device_keys(), one_time_keys=bob.one_time_keys(2))
    _, token = to_device_events(bob.user)
    alice.ok("PUT", f"/sendToDevice/m.test/{unique('txn')}", {"messages": {bob.user_id: {"*": {"n": 1}}}})
    delivered, token = to_device_events(bob.user, token)
    assert [e["content"] for e in delivered] == [{"n": 1}]
    _, token = to_device_events(bob.user, token)  # acknowledges n=1: it is deleted
    alice.ok("PUT", f"/sendToDevice/m.test/{unique('txn')}", {"messages": {bob.user_id: {"*": {"n": 2}}}})

    server.stop()
    server.start()
    # The stream carries on past every token handed out: nothing new is taken as already delivered.
    alice.ok("PUT", f"/sendToDevice/m.test/{unique('txn')}", {"messages": {bob.user_id: {"*": {"n": 3}}}})
    assert [e["content"] for e in to_device_events(bob.user, token)[0]] == [{"n": 2}, {"n": 3}]
    assert len(query(alice, bob.user_id)["device_keys"][bob.user_id]) == 1
    assert bob.upload()[1]["one_time_key_counts"] == {"signed_curve25519": 2}

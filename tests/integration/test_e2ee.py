"""End-to-end encryption on one server, over real HTTP.

Spec v1.19 client-server "End-to-End Encryption" (key management, device
lists, cross-signing), "Send-to-Device messaging", "Server-side key backups".
Raw HTTP with real ed25519 signatures (signedjson) for the protocol details
and error paths; matrix-nio with real Olm/Megolm (vodozemac) for encrypted
conversations.
"""

from __future__ import annotations

import asyncio
import copy
import os

from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from tests.integration.harness import PASSWORD, User, q, unique


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


def shared_room(owner: User, *others: User, encrypted: bool = True) -> str:
    state = [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]
    room_id = owner.create_room(preset="private_chat", initial_state=state if encrypted else [])
    for other in others:
        owner.invite(room_id, other)
        other.join(room_id)
    return room_id


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
    # Not signed by the device's own key, or no ed25519 key at all.
    unsigned = alice.device_keys()
    unsigned["signatures"][alice.user_id][f"ed25519:{alice.user.device_id}"] = encode_base64(b"\0" * 64)
    assert_error(alice.upload(device_keys=unsigned), 400, "M_INVALID_PARAM")
    tampered = alice.device_keys()
    tampered["algorithms"] = ["m.olm.v1.curve25519-aes-sha2"]
    assert_error(alice.upload(device_keys=tampered), 400, "M_INVALID_PARAM")
    no_ed25519 = alice.device_keys(keys={f"curve25519:{alice.user.device_id}": random_key()})
    assert_error(alice.upload(device_keys=no_ed25519), 400, "M_INVALID_PARAM")
    # Malformed objects.
    for bad in ({**alice.device_keys(), "keys": ["not", "a", "map"]}, "a string", None,
                {k: v for k, v in alice.device_keys().items() if k != "signatures"}):
        assert_error(alice.upload(device_keys=bad), 400, "M_BAD_JSON")
    assert_error(alice.upload(one_time_keys={"no_colon": random_key()}), 400, "M_BAD_JSON")
    assert_error(alice.upload(one_time_keys={"a:b:c": random_key()}), 400, "M_BAD_JSON")
    assert_error(alice.upload(one_time_keys={"signed_curve25519:X": {"no": "key"}}), 400, "M_BAD_JSON")
    assert_error(alice.upload(fallback_keys=["x"]), 400, "M_BAD_JSON")
    # A signed one-time key whose signature by the device does not verify (keys in the same request).
    bad_otk = alice.one_time_keys(1)
    next(iter(bad_otk.values()))["key"] = random_key()
    assert_error(alice.upload(device_keys=alice.device_keys(), one_time_keys=bad_otk), 400, "M_INVALID_PARAM")

    # Nothing of any refused request was stored.
    found = query(mallory.user, alice.user_id, mallory.user_id)["device_keys"]
    assert found == {alice.user_id: {}, mallory.user_id: {}}
    assert alice.upload()[1]["one_time_key_counts"] == {"signed_curve25519": 0}
    assert claim(mallory.user, alice.user) == {}


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
    room_id = shared_room(alice, bob.user)
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
    shared_room(alice, bob)
    token = alice.sync()["next_batch"]
    assert list(query(alice, bob.user_id)["device_keys"][bob.user_id]) == [bob2.user.device_id]

    bob2.user.ok("POST", "/logout", {})
    alice.sync_until(lambda r: bob.user_id in r["device_lists"]["changed"], token)
    assert query(alice, bob.user_id)["device_keys"][bob.user_id] == {}
    assert claim(alice, bob2.user) == {}

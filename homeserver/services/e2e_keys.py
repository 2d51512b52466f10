"""Device keys, one-time keys, fallback keys and cross-signing (spec v1.19 "End-to-End Encryption").

The server stores what clients publish and hands it out. Device keys and
one-time keys are the device's own statements, checked for shape and owner
(user id and device id) but not for their self-signatures: the spec leaves
verifying those to the clients that use them, and Synapse does not check them
either. Signatures the server relies on itself (cross-signing keys and the
signatures of /keys/signatures/upload) are verified before they are stored.
Remote users' keys come through ``remote`` (the federation's device lists).
"""

from __future__ import annotations

import binascii
import hashlib
import logging
from typing import Protocol

from nacl.signing import VerifyKey
from unpaddedbase64 import decode_base64

from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.events.errors import EventFormatError, SignatureError
from homeserver.events.signing import verify_signed_json
from homeserver.services.edu_outbox import EduOutbox
from homeserver.storage.accounts import AccountStore
from homeserver.storage.e2e_keys import E2eKeyStore, OneTimeKeyConflict, Signature, canonical

CROSS_SIGNING_FIELDS = {"master_key": "master", "self_signing_key": "self_signing",
                        "user_signing_key": "user_signing"}
FALLBACK_FIELDS = ("fallback_keys", "org.matrix.msc2732.fallback_keys")
DEFAULT_OTK_ALGORITHM = "signed_curve25519"
logger = logging.getLogger(__name__)
DEFAULT_FEDERATION_TIMEOUT_MS = 10_000  # spec /keys/query and /keys/claim ``timeout``


def invalid_signature(msg: str = "Invalid signature") -> MatrixError:
    return MatrixError(400, "M_INVALID_SIGNATURE", msg)


def signature_valid(obj: dict, user_id: str, key_id: str, public_key: str) -> bool:
    """Whether ``obj`` carries a valid ed25519 signature by ``user_id``'s key ``key_id`` (Appendices "Signing JSON")."""
    if not key_id.startswith("ed25519:") or not isinstance(public_key, str):
        return False
    try:
        verify_key = VerifyKey(decode_base64(public_key))
        verify_signed_json(obj, user_id, lambda _user, signed_by: verify_key if signed_by == key_id else None)
    except (SignatureError, EventFormatError, ValueError, binascii.Error, TypeError, AttributeError):
        return False
    return True


def _is_signatures(value) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, dict) and all(isinstance(s, str) for s in v.values()) for v in value.values())


def _is_str_map(value) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _without_unsigned(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "unsigned"}


def _without_signatures(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _check_device_keys(keys, user_id: str, device_id: str) -> None:
    """Validate uploaded device keys (spec v1.19 ``DeviceKeys``): the shape, and that they are the
    authenticated device's. Their self-signature is not checked, as in Synapse: the spec asks clients to
    verify it before using the keys and says nothing of the server doing so."""
    if not isinstance(keys, dict) or not isinstance(keys.get("algorithms"), list) \
            or not all(isinstance(a, str) for a in keys["algorithms"]) or not _is_str_map(keys.get("keys")) \
            or not _is_signatures(keys.get("signatures")) or not isinstance(keys.get("user_id"), str) \
            or not isinstance(keys.get("device_id"), str):
        raise bad_json("device_keys must have user_id, device_id, algorithms, keys and signatures")
    if keys["user_id"] != user_id:
        raise bad_json("Provided user_id in device_keys does not match that of the authenticated user")
    if keys["device_id"] != device_id:
        raise bad_json("Provided device_id in device_keys does not match that of the authenticated device")


def _parse_key_objects(field: str, keys) -> list[tuple[str, str, object]]:
    """``{"<algorithm>:<key_id>": key}`` of /keys/upload into (algorithm, key_id, key)."""
    if not isinstance(keys, dict):
        raise bad_json(f"{field} must be an object")
    parsed = []
    for name, key in keys.items():
        parts = name.split(":")
        if len(parts) != 2 or not all(parts):
            raise bad_json(f'Invalid {field} key {name!r}: expected "<algorithm>:<key_id>"')
        if not isinstance(key, str) and not (
                isinstance(key, dict) and isinstance(key.get("key"), str)
                and _is_signatures(key.get("signatures", {})) and isinstance(key.get("fallback", False), bool)):
            raise bad_json(f"Invalid key object for {name!r} in {field}")
        parsed.append((parts[0], parts[1], key))
    return parsed


def _key_of_cross_signing_key(key) -> tuple[str, str]:
    """(key id, public key) of a cross-signing key object (exactly one ed25519 key)."""
    keys = key.get("keys") if isinstance(key, dict) else None
    if not _is_str_map(keys) or len(keys) != 1:
        raise invalid_param("A cross-signing key must have exactly one key")
    ((key_id, public_key),) = keys.items()
    if key_id != f"ed25519:{public_key}":
        raise invalid_param("A cross-signing key id must be ed25519:<public key>")
    return key_id, public_key


class RemoteKeys(Protocol):
    """Remote users' devices and keys, asked of their servers (``federation.handlers.edus.RemoteDeviceLists``)."""

    async def query(self, requester_id: str, wanted: dict, timeout_s: float) -> dict: ...

    async def claim(self, wanted: dict, timeout_s: float) -> dict: ...


class LocalKeys:
    """Local users' device and cross-signing keys as others see them: read by key queries (local and over
    federation) and by the device list EDUs sent to other servers."""

    def __init__(self, *, store: E2eKeyStore, accounts: AccountStore):
        self._store = store
        self._accounts = accounts

    async def get(self, wanted: dict[str, list[str] | None], viewer: str | None) -> dict:
        """Device and cross-signing keys of local users (an empty or null device list: every device), with
        the signatures ``viewer`` may see; for a remote server (``viewer`` None) the users' own only."""
        users = list(wanted)
        found = await self._store.get_device_keys([(u, d) for u in users for d in (wanted[u] or [None])])
        cross_signing = await self._store.get_cross_signing_keys(users)
        signatures = await self._store.signatures_of(users, viewer or "")
        result = {"device_keys": {u: {} for u in users}, "master_keys": {}, "self_signing_keys": {},
                  "user_signing_keys": {}}
        for user_id in users:
            names = {d["device_id"]: d.get("display_name") for d in await self._accounts.list_devices(user_id)}
            for device_id, keys in found.get(user_id, {}).items():
                # Spec /keys/query: "the same as uploaded via /keys/upload, with the addition of an unsigned
                # property" (always there, as Synapse; the device's name only for local users).
                keys["unsigned"] = {"device_display_name": names[device_id]} \
                    if names.get(device_id) is not None and viewer is not None else {}
                result["device_keys"][user_id][device_id] = keys
            for field, key_type in CROSS_SIGNING_FIELDS.items():
                key = cross_signing.get(user_id, {}).get(key_type)
                if key is not None and (key_type != "user_signing" or user_id == viewer):
                    result[field + "s"][user_id] = key
        _merge_signatures(result, signatures)
        return result


class E2eKeysService:
    def __init__(self, *, store: E2eKeyStore, keys: LocalKeys, accounts: AccountStore, device_lists,
                 remote: RemoteKeys, server_name: str, clock, federation: EduOutbox):
        self._store = store
        self._accounts = accounts
        self._device_lists = device_lists
        self.server_name = server_name
        self._clock = clock
        self.remote = remote
        self._keys = keys
        self._federation = federation  # told when a local user's master or self-signing key changes
        # Per user, how often the one-time or fallback keys of their devices changed (uploads and claims, all
        # through this service): a remembered /sync answer carrying their counts stands while this is unchanged.
        self._key_changes: dict[str, int] = {}

    def key_counts_version(self, user_id: str) -> int:
        return self._key_changes.get(user_id, 0)

    def _key_counts_changed(self, user_ids) -> None:
        for user_id in user_ids:
            self._key_changes[user_id] = self._key_changes.get(user_id, 0) + 1

    def _is_local(self, user_id: str) -> bool:
        return user_id.split(":", 1)[-1] == self.server_name

    # -- /keys/upload ----------------------------------------------------------------------
    async def upload(self, user_id: str, device_id: str | None, body: dict) -> dict:
        """POST /keys/upload: everything is validated before anything is stored."""
        if device_id is None:
            raise MatrixError(400, "M_UNKNOWN", "To upload keys, you must pass device_id when authenticating")
        device_keys = body.get("device_keys")
        if "device_keys" in body:
            _check_device_keys(device_keys, user_id, device_id)
        one_time = _parse_key_objects("one_time_keys", body.get("one_time_keys") or {})
        fallback_field = next((f for f in FALLBACK_FIELDS if body.get(f) is not None), FALLBACK_FIELDS[0])
        fallback = _parse_key_objects(fallback_field, body.get(fallback_field) or {})
        if one_time:
            try:
                await self._store.add_one_time_keys(user_id, device_id, one_time)
            except OneTimeKeyConflict as e:
                raise invalid_param(f"One time key {e.key} already exists with different content")
            finally:
                self._key_counts_changed([user_id])
        if fallback:
            await self._store.set_fallback_keys(user_id, device_id, fallback)
            self._key_counts_changed([user_id])
        if device_keys is not None and await self._store.set_device_keys(
                user_id, device_id, device_keys, int(self._clock.seconds() * 1000)):
            await self._device_lists.mark_changed(user_id, [device_id])
        return {"one_time_key_counts": await self.one_time_key_counts(user_id, device_id)}

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        """Unclaimed one-time keys per algorithm; signed_curve25519 is always listed (as Synapse does)."""
        counts = await self._store.count_one_time_keys(user_id, device_id)
        counts.setdefault(DEFAULT_OTK_ALGORITHM, 0)
        return counts

    async def counts_for_sync(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """/sync's ``device_one_time_keys_count`` and ``device_unused_fallback_key_types``."""
        counts, fallback_types = await self._store.key_counts_for_sync(user_id, device_id)
        counts.setdefault(DEFAULT_OTK_ALGORITHM, 0)
        return counts, fallback_types

    # -- /keys/query ---------------------------------------------------------------------------
    async def query(self, requester_id: str, body: dict) -> dict:
        """POST /keys/query: local users from the store, remote ones from their servers (``failures``)."""
        wanted = body.get("device_keys")
        if not isinstance(wanted, dict) or not all(
                v is None or (isinstance(v, list) and all(isinstance(d, str) for d in v)) for v in wanted.values()):
            raise bad_json("device_keys must map user ids to lists of device ids")
        timeout_s = _timeout_s(body)
        result = await self.local_keys({u: d for u, d in wanted.items() if self._is_local(u)}, requester_id)
        result["failures"] = {}
        remote = {u: d for u, d in wanted.items() if not self._is_local(u)}
        if remote:
            found = await self.remote.query(requester_id, remote, timeout_s)
            for field in ("device_keys", "master_keys", "self_signing_keys", "failures"):
                result[field].update(found[field])
        return result

    async def local_keys(self, wanted: dict[str, list[str] | None], viewer: str | None) -> dict:
        """See :meth:`LocalKeys.get`."""
        return await self._keys.get(wanted, viewer)

    async def federation_device_list(self, user_id: str) -> dict:
        """Server-server GET /user/devices/{userId}: a local user's devices, keys and cross-signing keys.

        Device names are not shared with other servers (Synapse's default,
        ``allow_device_name_lookup_over_federation: false``).
        """
        keys = await self.local_keys({user_id: None}, None)
        devices = []
        for device in await self._accounts.list_devices(user_id):
            entry = {"device_id": device["device_id"]}
            if device["device_id"] in keys["device_keys"][user_id]:  # DeviceKeys as uploaded: no "unsigned"
                entry["keys"] = _without_unsigned(keys["device_keys"][user_id][device["device_id"]])
            devices.append(entry)
        result = {"user_id": user_id, "stream_id": await self._device_lists.last_device_update(user_id),
                  "devices": devices}
        for field in ("master_key", "self_signing_key"):
            if user_id in keys[field + "s"]:
                result[field] = keys[field + "s"][user_id]
        return result

    # -- /keys/claim ---------------------------------------------------------------------------
    async def claim(self, body: dict) -> dict:
        """POST /keys/claim: a one-time key each, or the fallback key once none remain; remote users'
        from their servers."""
        wanted = body.get("one_time_keys")
        if not isinstance(wanted, dict) or not all(_is_str_map(v) for v in wanted.values()):
            raise bad_json("one_time_keys must map user ids to device ids to algorithms")
        timeout_s = _timeout_s(body)
        claimed = await self.claim_local({u: d for u, d in wanted.items() if self._is_local(u)})
        result = {"one_time_keys": claimed, "failures": {}}
        remote = {u: d for u, d in wanted.items() if not self._is_local(u)}
        if remote:
            found = await self.remote.claim(remote, timeout_s)
            result["one_time_keys"].update(found["one_time_keys"])
            result["failures"] = found["failures"]
        return result

    async def claim_local(self, wanted: dict[str, dict[str, str]]) -> dict:
        """One key per (local user, device, algorithm), as /keys/claim and server-server /user/keys/claim give."""
        try:
            return await self._store.claim_keys(
                [(u, d, alg) for u, devices in wanted.items() for d, alg in devices.items()])
        finally:
            self._key_counts_changed(wanted)

    # -- cross-signing ----------------------------------------------------------------------------
    async def check_signing_keys(self, user_id: str, body: dict) -> tuple[dict[str, dict], bool]:
        """Validate /keys/device_signing/upload: (keys by type, whether user-interactive auth is needed).

        No auth is needed for the first master key, nor to upload again exactly the keys stored (spec v1.11).
        """
        keys = {key_type: body[field] for field, key_type in CROSS_SIGNING_FIELDS.items() if field in body}
        stored = (await self._store.get_cross_signing_keys([user_id])).get(user_id, {})
        master = keys.get("master", stored.get("master"))
        if master is None:
            raise MatrixError(400, "M_MISSING_PARAM", "No master key available")
        device_ids = {d["device_id"] for d in await self._accounts.list_devices(user_id)}
        master_key_id, master_public = _key_of_cross_signing_key(master)
        for key_type, key in keys.items():
            key_id, public_key = _key_of_cross_signing_key(key)
            if key.get("user_id") != user_id or not isinstance(key.get("usage"), list) \
                    or key_type not in key["usage"]:
                raise invalid_param(f"Invalid {key_type} key")
            if public_key in device_ids:
                raise forbidden("Key ID in use")
            if key_type != "master" and not signature_valid(key, user_id, master_key_id, master_public):
                raise invalid_signature(f"Invalid signature on {key_type} key")
        unchanged = all(canonical(stored.get(t)) == canonical(k) for t, k in keys.items())
        return keys, "master" in stored and not unchanged

    async def store_signing_keys(self, user_id: str, keys: dict[str, dict]) -> None:
        if keys:
            await self._store.set_cross_signing_keys(user_id, keys)
            if "master" in keys or "self_signing" in keys:
                await self._device_lists.mark_changed(user_id)
                await self._signing_keys_changed(user_id)
            if "user_signing" in keys:  # private: only the user is told (as Synapse)
                await self._device_lists.mark_signatures_changed(user_id, [user_id])

    async def _signing_keys_changed(self, user_id: str) -> None:
        try:
            await self._federation.on_signing_keys(user_id)
        except Exception:  # the keys are stored: this must not fail the request
            logger.exception("Sending the signing keys of %s failed", user_id)

    async def upload_signatures(self, user_id: str, body: dict) -> dict:
        """POST /keys/signatures/upload: each valid signature is stored, each bad one reported in ``failures``."""
        if not all(isinstance(objs, dict) and all(isinstance(o, dict) for o in objs.values())
                   for objs in body.values()):
            raise invalid_param("Expected a map of user ids to key ids to signed objects")
        stored = await self._store.get_cross_signing_keys(list({user_id, *body}))
        unknown = [u for u in body if not self._is_local(u) and "master" not in stored.get(u, {})]
        if unknown:  # as Synapse: a remote user's master key we do not hold is asked of their server
            found = await self.remote.query(user_id, {u: [] for u in unknown}, DEFAULT_FEDERATION_TIMEOUT_MS / 1000)
            for target, key in found["master_keys"].items():
                stored.setdefault(target, {})["master"] = key
        own_devices = (await self._store.get_device_keys([(user_id, None)])).get(user_id, {})
        accepted: list[Signature] = []
        failures: dict[str, dict[str, dict]] = {}
        for target_user, objects in body.items():
            for key_id, signed in objects.items():
                try:
                    if not _is_signatures(signed.get("signatures", {})):
                        raise invalid_param("signatures must map user ids to key ids to signatures")
                    if target_user == user_id:
                        accepted += self._own_signatures(user_id, key_id, signed, stored.get(user_id, {}),
                                                         own_devices)
                    else:
                        accepted.append(self._other_signature(user_id, target_user, key_id, signed, stored))
                except MatrixError as e:
                    failures.setdefault(target_user, {})[key_id] = e.to_json()
        if accepted:
            await self._store.store_signatures(accepted)
            own = {s.target_key_id for s in accepted if s.target_user_id == user_id}
            # Spec: a device's new cross-signing signature is an m.device_list_update of that device.
            if own:
                await self._device_lists.mark_changed(user_id, sorted(own & set(own_devices)))
            if own - set(own_devices):  # our master key, signed by one of our devices
                await self._signing_keys_changed(user_id)
            others = sorted({s.target_user_id for s in accepted if s.target_user_id != user_id})
            if others:  # visible to the signer only (user-signing signatures), so only they are told
                await self._device_lists.mark_signatures_changed(user_id, others)
        return {"failures": failures}

    def _own_signatures(self, user_id: str, key_id: str, signed: dict, cross_signing: dict,
                        devices: dict[str, dict]) -> list[Signature]:
        """A device signed by our self-signing key, or our master key signed by our devices."""
        master = cross_signing.get("master")
        if master is not None and key_id == _key_of_cross_signing_key(master)[1]:
            sigs = signed.get("signatures", {}).get(user_id, {})
            by_devices = {k: v for k, v in sigs.items() if k.startswith("ed25519:") and k[8:] in devices}
            if not by_devices:
                raise invalid_signature("No signature by one of your devices")
            if _without_signatures(signed) != _without_signatures(master):
                raise invalid_param("The signed key does not match the stored master key")
            for signing_key_id in by_devices:
                if not signature_valid(signed, user_id, signing_key_id,
                                       devices[signing_key_id[8:]]["keys"].get(signing_key_id)):
                    raise invalid_signature()
            return [Signature(user_id, k, user_id, key_id, v) for k, v in by_devices.items()]
        if key_id not in devices:
            raise not_found("Unknown device")
        return [self._signature_by(user_id, cross_signing.get("self_signing"), "self-signing", signed,
                                   devices[key_id], user_id, key_id)]

    def _other_signature(self, user_id: str, target_user: str, key_id: str, signed: dict,
                         stored: dict[str, dict]) -> Signature:
        """Another user's master key signed by our user-signing key."""
        master = stored.get(target_user, {}).get("master")
        if master is None or key_id != _key_of_cross_signing_key(master)[1]:
            raise not_found("Unknown master key")
        return self._signature_by(user_id, stored.get(user_id, {}).get("user_signing"), "user-signing", signed,
                                  master, target_user, key_id)

    @staticmethod
    def _signature_by(user_id: str, signing_key: dict | None, kind: str, signed: dict, stored_obj: dict,
                      target_user: str, target_key_id: str) -> Signature:
        if signing_key is None:
            raise not_found(f"No {kind} key uploaded")
        signing_key_id, public_key = _key_of_cross_signing_key(signing_key)
        signature = signed.get("signatures", {}).get(user_id, {}).get(signing_key_id)
        if not isinstance(signature, str):
            raise invalid_signature(f"No signature by your {kind} key")
        if _without_signatures(signed) != _without_signatures(stored_obj):
            raise invalid_param("The signed key does not match the stored key")
        if not signature_valid(signed, user_id, signing_key_id, public_key):
            raise invalid_signature()
        return Signature(user_id, signing_key_id, target_user, target_key_id, signature)

    # -- devices added, renamed, removed -----------------------------------------------------------------
    async def on_devices_changed(self, user_id: str, device_ids: list[str]) -> None:
        """AuthService hook: a new or renamed device changes the user's device list (as in Synapse: others
        re-fetch the list, and servers sharing a room get an m.device_list_update)."""
        await self._device_lists.mark_changed(user_id, device_ids)

    async def on_devices_removed(self, user_id: str, device_ids: list[str]) -> None:
        """AuthService hook: a removed device's keys go, and the user's device list changed."""
        if device_ids:
            await self._store.delete_device_keys(user_id, device_ids)
            await self._device_lists.mark_changed(user_id, device_ids)


def _timeout_s(body: dict) -> float:
    """The request's ``timeout`` for remote servers, in seconds (10 by default, at most 60)."""
    timeout = body.get("timeout", DEFAULT_FEDERATION_TIMEOUT_MS)
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        raise bad_json("timeout must be an integer")
    return min(max(timeout, 100), 60_000) / 1000


def _merge_signatures(result: dict, signatures: list[Signature]) -> None:
    """Add stored signatures to the device keys and master keys of a /keys/query result."""
    for s in signatures:
        target = result["device_keys"].get(s.target_user_id, {}).get(s.target_key_id)
        master = result["master_keys"].get(s.target_user_id)
        if target is None and master is not None and f"ed25519:{s.target_key_id}" in master.get("keys", {}):
            target = master
        if target is not None:
            target.setdefault("signatures", {}).setdefault(s.signer_user_id, {})[s.signing_key_id] = s.signature


def request_fingerprint(user_id: str, keys: dict) -> str:
    """The user-interactive auth fingerprint of a cross-signing upload: the same keys, the same session."""
    return f"device_signing:{user_id}:" + hashlib.sha256(canonical(keys).encode()).hexdigest()

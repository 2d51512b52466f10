"""Device identity keys, one-time and fallback keys, cross-signing keys and their signatures.

Spec v1.19 client-server "End-to-End Encryption". Key objects are stored as
canonical JSON text exactly as the client uploaded them; signatures uploaded
later through /keys/signatures/upload live in their own table and are merged
in when keys are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.storage.database import Store


MIGRATIONS = [
    """
    CREATE TABLE e2e_device_keys (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        key_json TEXT NOT NULL,
        ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, device_id)
    );
    CREATE TABLE e2e_one_time_keys (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        key_id TEXT NOT NULL,
        key_json TEXT NOT NULL,
        upload_seq BIGINT NOT NULL,
        PRIMARY KEY (user_id, device_id, algorithm, key_id)
    );
    CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys (user_id, device_id, algorithm, upload_seq);
    CREATE TABLE e2e_fallback_keys (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        key_id TEXT NOT NULL,
        key_json TEXT NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, device_id, algorithm)
    );
    CREATE TABLE e2e_cross_signing_keys (
        user_id TEXT NOT NULL,
        key_type TEXT NOT NULL,
        key_json TEXT NOT NULL,
        PRIMARY KEY (user_id, key_type)
    );
    CREATE TABLE e2e_cross_signing_signatures (
        signer_user_id TEXT NOT NULL,
        signing_key_id TEXT NOT NULL,
        target_user_id TEXT NOT NULL,
        target_key_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        PRIMARY KEY (signer_user_id, signing_key_id, target_user_id, target_key_id)
    );
    CREATE INDEX e2e_cross_signing_signatures_target
        ON e2e_cross_signing_signatures (target_user_id, target_key_id)
    """,
    # Server-server "Device Management": the cached device lists of remote users sharing a room with
    # ours, each at the stream_id of its latest update (their cross-signing keys go in
    # e2e_cross_signing_keys with the local users').
    """
    CREATE TABLE e2e_remote_users (
        user_id TEXT PRIMARY KEY,
        stream_id BIGINT NOT NULL
    );
    CREATE TABLE e2e_remote_devices (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        display_name TEXT,
        key_json TEXT,
        PRIMARY KEY (user_id, device_id)
    )
    """,
]

KeyTriple = tuple[str, str, object]  # (algorithm, key_id, key object or string)


class OneTimeKeyConflict(Exception):
    """A one-time key id was uploaded again with different content."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Signature:
    signer_user_id: str
    signing_key_id: str
    target_user_id: str
    target_key_id: str
    signature: str


def canonical(value) -> str:
    return encode_canonical_json(value).decode("utf-8")


def _in(values) -> str:
    return ",".join("?" for _ in values)


class E2eKeyStore(Store):
    # -- device keys -------------------------------------------------------------------
    async def set_device_keys(self, user_id: str, device_id: str, keys: dict, now_ms: int) -> bool:
        """Store a device's identity keys; True if they differ from what was stored.

        Signatures of the old keys made by others no longer apply, so they go when the keys change.
        """
        text = canonical(keys)

        def txn_fn(txn):
            old = txn.select_value("SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
                                   (user_id, device_id))
            if old == text:
                return False
            txn.execute("DELETE FROM e2e_device_keys WHERE user_id = ? AND device_id = ?", (user_id, device_id))
            txn.execute("INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts) VALUES (?, ?, ?, ?)",
                        (user_id, device_id, text, now_ms))
            txn.execute("DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = ? AND target_key_id = ?",
                        (user_id, device_id))
            return True

        return await self.db.run("set_device_keys", txn_fn)

    async def get_device_keys(self, query: list[tuple[str, str | None]]) -> dict[str, dict[str, dict]]:
        """user_id -> device_id -> stored keys, for (user_id, device_id) pairs (None: every device)."""

        def txn_fn(txn):
            found: dict[str, dict[str, dict]] = {}
            for user_id, device_id in query:
                if device_id is None:
                    rows = txn.select_all("SELECT device_id, key_json FROM e2e_device_keys WHERE user_id = ?",
                                          (user_id,))
                else:
                    rows = txn.select_all("SELECT device_id, key_json FROM e2e_device_keys "
                                          "WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                for dev, text in rows:
                    found.setdefault(user_id, {})[dev] = json.loads(text)
            return found

        return await self.db.run("get_device_keys", txn_fn)

    # -- one-time and fallback keys --------------------------------------------------------
    async def add_one_time_keys(self, user_id: str, device_id: str, keys: list[KeyTriple]) -> None:
        """Add one-time keys as one upload batch; re-uploading an identical key is a no-op.

        Raises ``OneTimeKeyConflict`` (and stores nothing) if a key id is reused with other content.
        """

        def txn_fn(txn):
            seq = txn.select_value("SELECT MAX(upload_seq) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?",
                                   (user_id, device_id), default=0) + 1
            for algorithm, key_id, key in keys:
                text = canonical(key)
                old = txn.select_value("SELECT key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? "
                                       "AND algorithm = ? AND key_id = ?", (user_id, device_id, algorithm, key_id))
                if old is None:
                    txn.execute("INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, "
                                "upload_seq) VALUES (?, ?, ?, ?, ?, ?)",
                                (user_id, device_id, algorithm, key_id, text, seq))
                elif old != text:
                    raise OneTimeKeyConflict(f"{algorithm}:{key_id}")

        await self.db.run("add_one_time_keys", txn_fn)

    async def count_one_time_keys(self, user_id: str, device_id: str) -> dict[str, int]:
        rows = await self.db.run("count_one_time_keys", lambda t: t.select_all(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? "
            "GROUP BY algorithm", (user_id, device_id)))
        return {r[0]: int(r[1]) for r in rows}

    async def set_fallback_keys(self, user_id: str, device_id: str, keys: list[KeyTriple]) -> None:
        """One fallback key per algorithm replaces the previous one; the same key uploaded again keeps its state."""

        def txn_fn(txn):
            for algorithm, key_id, key in keys:
                text = canonical(key)
                old = txn.select_one("SELECT key_id, key_json FROM e2e_fallback_keys "
                                     "WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                                     (user_id, device_id, algorithm))
                if old is not None and (old[0], old[1]) == (key_id, text):
                    continue
                txn.execute("DELETE FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                            (user_id, device_id, algorithm))
                txn.execute("INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) "
                            "VALUES (?, ?, ?, ?, ?, 0)", (user_id, device_id, algorithm, key_id, text))

        await self.db.run("set_fallback_keys", txn_fn)

    async def key_counts_for_sync(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """Unclaimed one-time keys per algorithm and the unused fallback key algorithms, in one statement."""
        rows = await self.db.run("key_counts_for_sync", lambda t: t.select_all(
            "SELECT 0, algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? "
            "GROUP BY algorithm "
            "UNION ALL SELECT 1, algorithm, 0 FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0",
            (user_id, device_id, user_id, device_id)))
        counts = {r[1]: int(r[2]) for r in rows if r[0] == 0}
        return counts, sorted(r[1] for r in rows if r[0] == 1)

    async def claim_keys(self, query: list[tuple[str, str, str]]) -> dict[str, dict[str, dict]]:
        """Claim one key per (user_id, device_id, algorithm): the oldest one-time key, else the fallback key.

        A claimed one-time key is deleted in the same transaction, so it is handed out at most once;
        a fallback key stays (it is only marked used).
        """

        def txn_fn(txn):
            claimed: dict[str, dict[str, dict]] = {}
            for user_id, device_id, algorithm in query:
                key = _claim_one_time_key(txn, user_id, device_id, algorithm)
                if key is None:
                    key = _claim_fallback_key(txn, user_id, device_id, algorithm)
                if key is not None:
                    claimed.setdefault(user_id, {}).setdefault(device_id, {})[key[0]] = key[1]
            return claimed

        return await self.db.run("claim_keys", txn_fn)

    async def delete_device_keys(self, user_id: str, device_ids: list[str]) -> None:
        """Every key of removed devices, and the signatures made of them."""

        def txn_fn(txn):
            for device_id in device_ids:
                for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"):
                    txn.execute(f"DELETE FROM {table} WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                txn.execute("DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = ? AND target_key_id = ?",
                            (user_id, device_id))

        await self.db.run("delete_device_keys", txn_fn)

    # -- cross-signing ------------------------------------------------------------------------
    async def get_cross_signing_keys(self, user_ids: list[str]) -> dict[str, dict[str, dict]]:
        """user_id -> key type (master, self_signing, user_signing) -> stored key."""
        if not user_ids:
            return {}
        rows = await self.db.run("get_cross_signing_keys", lambda t: t.select_all(
            f"SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys WHERE user_id IN ({_in(user_ids)})",
            list(user_ids)))
        found: dict[str, dict[str, dict]] = {}
        for user_id, key_type, text in rows:
            found.setdefault(user_id, {})[key_type] = json.loads(text)
        return found

    async def set_cross_signing_keys(self, user_id: str, keys: dict[str, dict]) -> None:
        def txn_fn(txn):
            for key_type, key in keys.items():
                txn.execute("DELETE FROM e2e_cross_signing_keys WHERE user_id = ? AND key_type = ?",
                            (user_id, key_type))
                txn.execute("INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)",
                            (user_id, key_type, canonical(key)))

        await self.db.run("set_cross_signing_keys", txn_fn)

    async def store_signatures(self, signatures: list[Signature]) -> None:
        def txn_fn(txn):
            for s in signatures:
                txn.execute("DELETE FROM e2e_cross_signing_signatures WHERE signer_user_id = ? AND signing_key_id = ? "
                            "AND target_user_id = ? AND target_key_id = ?",
                            (s.signer_user_id, s.signing_key_id, s.target_user_id, s.target_key_id))
                txn.execute("INSERT INTO e2e_cross_signing_signatures (signer_user_id, signing_key_id, "
                            "target_user_id, target_key_id, signature) VALUES (?, ?, ?, ?, ?)",
                            (s.signer_user_id, s.signing_key_id, s.target_user_id, s.target_key_id, s.signature))

        await self.db.run("store_signatures", txn_fn)

    async def signatures_of(self, target_user_ids: list[str], viewer: str) -> list[Signature]:
        """Signatures of the targets' keys made by the targets themselves or by ``viewer``."""
        if not target_user_ids:
            return []
        rows = await self.db.run("signatures_of", lambda t: t.select_all(
            "SELECT signer_user_id, signing_key_id, target_user_id, target_key_id, signature "
            f"FROM e2e_cross_signing_signatures WHERE target_user_id IN ({_in(target_user_ids)}) "
            "AND (signer_user_id = target_user_id OR signer_user_id = ?)", [*target_user_ids, viewer]))
        return [Signature(*r) for r in rows]


@dataclass(frozen=True)
class RemoteDevice:
    device_id: str
    display_name: str | None
    keys: dict | None  # None: a device without identity keys


def _put_remote_device(txn, user_id: str, device: RemoteDevice) -> None:
    txn.execute("DELETE FROM e2e_remote_devices WHERE user_id = ? AND device_id = ?", (user_id, device.device_id))
    txn.execute("INSERT INTO e2e_remote_devices (user_id, device_id, display_name, key_json) VALUES (?, ?, ?, ?)",
                (user_id, device.device_id, device.display_name,
                 canonical(device.keys) if device.keys is not None else None))


class RemoteDeviceCache(Store):
    """The device lists of remote users (server-server "Device Management"), kept by their updates."""

    async def positions(self, user_ids) -> dict[str, int]:
        """user_id -> stream_id of the cached list, for the users whose list is cached."""
        ids = list(user_ids)
        if not ids:
            return {}
        rows = await self.db.run("remote_device_list_positions", lambda t: t.select_all(
            f"SELECT user_id, stream_id FROM e2e_remote_users WHERE user_id IN ({_in(ids)})", ids))
        return {r[0]: int(r[1]) for r in rows}

    async def replace(self, user_id: str, stream_id: int, devices: list[RemoteDevice],
                      cross_signing: dict[str, dict]) -> None:
        """A full snapshot of the user's devices and cross-signing keys (a resync)."""

        def txn_fn(txn):
            _drop_txn(txn, user_id)
            txn.execute("INSERT INTO e2e_remote_users (user_id, stream_id) VALUES (?, ?)", (user_id, stream_id))
            for device in devices:
                _put_remote_device(txn, user_id, device)
            for key_type, key in cross_signing.items():
                txn.execute("INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)",
                            (user_id, key_type, canonical(key)))

        await self.db.run("replace_remote_device_list", txn_fn)

    async def update_device(self, user_id: str, stream_id: int, device: RemoteDevice, deleted: bool) -> bool:
        """Apply one update to a cached list; False (nothing done) when the list is not cached."""

        def txn_fn(txn):
            txn.execute("UPDATE e2e_remote_users SET stream_id = ? WHERE user_id = ?", (stream_id, user_id))
            if txn.rowcount != 1:
                return False
            if deleted:
                txn.execute("DELETE FROM e2e_remote_devices WHERE user_id = ? AND device_id = ?",
                            (user_id, device.device_id))
            else:
                _put_remote_device(txn, user_id, device)
            return True

        return await self.db.run("update_remote_device", txn_fn)

    async def drop(self, user_id: str) -> None:
        """Forget a remote user's cached devices and cross-signing keys (never call it for a local user)."""
        await self.db.run("drop_remote_device_list", _drop_txn, user_id)

    async def device_keys(self, query: list[tuple[str, str | None]]) -> dict[str, dict[str, dict]]:
        """user_id -> device_id -> keys (with ``unsigned.device_display_name``) of cached devices that have keys."""

        def txn_fn(txn):
            found: dict[str, dict[str, dict]] = {}
            for user_id, device_id in query:
                sql = "SELECT device_id, display_name, key_json FROM e2e_remote_devices " \
                      "WHERE user_id = ? AND key_json IS NOT NULL"
                args: tuple = (user_id,)
                if device_id is not None:
                    sql, args = sql + " AND device_id = ?", (user_id, device_id)
                for dev, name, text in txn.select_all(sql, args):
                    keys = json.loads(text)
                    unsigned = keys.get("unsigned")
                    keys["unsigned"] = dict(unsigned) if isinstance(unsigned, dict) else {}  # spec /keys/query
                    if name is not None:
                        keys["unsigned"]["device_display_name"] = name
                    found.setdefault(user_id, {})[dev] = keys
            return found

        return await self.db.run("remote_device_keys", txn_fn)


def _drop_txn(txn, user_id: str) -> None:
    for table in ("e2e_remote_users", "e2e_remote_devices", "e2e_cross_signing_keys"):
        txn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))


def _claim_one_time_key(txn, user_id: str, device_id: str, algorithm: str) -> tuple[str, dict] | None:
    candidates = txn.select_all(
        "SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? "
        "ORDER BY upload_seq, key_id LIMIT 5", (user_id, device_id, algorithm))
    for key_id, text in candidates:
        txn.execute("DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? "
                    "AND key_id = ?", (user_id, device_id, algorithm, key_id))
        if txn.rowcount == 1:  # a concurrent claim on another connection did not take it first
            return f"{algorithm}:{key_id}", json.loads(text)
    return None


def _claim_fallback_key(txn, user_id: str, device_id: str, algorithm: str) -> tuple[str, dict] | None:
    row = txn.select_one("SELECT key_id, key_json FROM e2e_fallback_keys "
                         "WHERE user_id = ? AND device_id = ? AND algorithm = ?", (user_id, device_id, algorithm))
    if row is None:
        return None
    txn.execute("UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                (user_id, device_id, algorithm))
    return f"{algorithm}:{row[0]}", json.loads(row[1])

"""Users, devices, access tokens, profiles and registration tokens.

Access tokens are stored as their SHA-256 (hex): a token carries enough entropy (40 random characters)
that a salt or a slow hash would add nothing, and a copy of the database logs no one in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from homeserver.storage.database import Store
from homeserver.storage.user_directory import index_new_user_txn, reindex_users_txn


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _hash_stored_tokens(txn) -> None:
    """Migration 2: the access tokens stored in clear become their hashes."""
    rows = txn.select_all("SELECT token FROM access_tokens")
    txn.executemany("UPDATE access_tokens SET token = ? WHERE token = ?", [(token_hash(t), t) for (t,) in rows])
    txn.execute("ALTER TABLE access_tokens RENAME COLUMN token TO token_hash")

MIGRATIONS = [
    """
    CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        password_hash TEXT,
        admin INTEGER NOT NULL DEFAULT 0,
        deactivated INTEGER NOT NULL DEFAULT 0,
        is_guest INTEGER NOT NULL DEFAULT 0,
        creation_ts BIGINT NOT NULL
    );
    CREATE TABLE devices (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        display_name TEXT,
        last_seen_ts BIGINT,
        last_seen_ip TEXT,
        PRIMARY KEY (user_id, device_id)
    );
    CREATE TABLE access_tokens (
        token TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        device_id TEXT,
        creation_ts BIGINT NOT NULL
    );
    CREATE INDEX access_tokens_user_device ON access_tokens (user_id, device_id);
    CREATE TABLE profiles (
        user_id TEXT PRIMARY KEY,
        displayname TEXT,
        avatar_url TEXT
    );
    CREATE TABLE registration_tokens (
        token TEXT PRIMARY KEY,
        uses_allowed INTEGER,
        pending INTEGER NOT NULL DEFAULT 0,
        completed INTEGER NOT NULL DEFAULT 0,
        expiry_time BIGINT
    )
    """,
    _hash_stored_tokens,
    # Registration and login look a user up case-insensitively: without it, a scan of every user each time.
    "CREATE INDEX users_lower_user_id ON users (LOWER(user_id))",
]


@dataclass(frozen=True)
class TokenInfo:
    user_id: str
    device_id: str | None
    is_admin: bool
    deactivated: bool
    is_guest: bool = False
    valid_until_ms: int | None = None  # an access token that expires (storage/session_tokens.py)
    first_use_revokes: bool = False  # its first use revokes the refresh token it replaced (not done yet)


class AccountStore(Store):
    # -- users -------------------------------------------------------------
    async def create_user(self, user_id: str, password_hash: str | None, *, admin: bool, now_ms: int,
                          displayname: str | None, guest: bool = False) -> bool:
        """Insert a user and its profile; False if the id is taken. Only inserts under the user's key, so it
        runs ordered (on PostgreSQL READ COMMITTED: under SERIALIZABLE, concurrent registrations reading the
        same index page of ``users`` aborted each other, up to 8 attempts each in a bulk registration)."""

        def txn_fn(txn):
            if txn.select_one("INSERT INTO users (user_id, password_hash, admin, is_guest, creation_ts) "
                              "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING RETURNING 1",
                              (user_id, password_hash, int(admin), int(guest), now_ms)) is None:
                return False
            txn.execute("INSERT INTO profiles (user_id, displayname) VALUES (?, ?)", (user_id, displayname))
            index_new_user_txn(txn, user_id, displayname)
            return True

        return await self.db.run_ordered("create_user", txn_fn)

    async def upgrade_guest(self, user_id: str, password_hash: str | None) -> bool:
        """Client-server "Guest Access": the guest becomes a full account; False if it is not a guest."""

        def txn_fn(txn):
            txn.execute("UPDATE users SET is_guest = 0, password_hash = ? WHERE user_id = ? AND is_guest = 1",
                        (password_hash, user_id))
            return txn.rowcount == 1

        return await self.db.run("upgrade_guest", txn_fn)

    async def guests_among(self, user_ids: list[str]) -> set[str]:
        """Which of these users are guest accounts."""

        def txn_fn(txn):
            found = set()
            for i in range(0, len(user_ids), 500):
                batch = user_ids[i:i + 500]
                found.update(r[0] for r in txn.select_all(
                    f"SELECT user_id FROM users WHERE is_guest = 1 AND user_id IN ({','.join('?' * len(batch))})",
                    tuple(batch)))
            return found

        return await self.db.run("guests_among", txn_fn)

    async def user_exists(self, user_id: str) -> bool:
        return await self.db.run("user_exists", lambda t: t.select_one(
            "SELECT 1 FROM users WHERE user_id = ?", (user_id,)) is not None)

    async def get_user(self, user_id: str) -> dict | None:
        def txn_fn(txn):
            row = txn.select_one("SELECT password_hash, admin, deactivated FROM users WHERE user_id = ?", (user_id,))
            if row is None:
                return None
            return {"password_hash": row[0], "admin": bool(row[1]), "deactivated": bool(row[2])}

        return await self.db.run("get_user", txn_fn)

    async def find_user_case_insensitive(self, user_id: str) -> str | None:
        return await self.db.run("find_user_ci", lambda t: t.select_value(
            "SELECT user_id FROM users WHERE LOWER(user_id) = LOWER(?)", (user_id,)))

    async def set_password_hash(self, user_id: str, password_hash: str, *, keep_device: str | None,
                                logout_devices: bool) -> list[str]:
        """Change a password; optionally log out every other device. Returns the removed device ids."""

        def txn_fn(txn):
            txn.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id))
            if not logout_devices:
                return []
            return _delete_devices_txn(txn, user_id, except_device=keep_device)

        return await self.db.run("set_password_hash", txn_fn)

    async def deactivate(self, user_id: str) -> list[str]:
        def txn_fn(txn):
            txn.execute("UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = ?", (user_id,))
            txn.execute("UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = ?", (user_id,))
            reindex_users_txn(txn, [user_id])
            return _delete_devices_txn(txn, user_id, except_device=None)

        return await self.db.run("deactivate", txn_fn)

    async def count_users(self) -> int:
        return await self.db.run("count_users", lambda t: t.select_value("SELECT COUNT(*) FROM users", default=0))

    # -- devices and tokens ---------------------------------------------------
    async def add_device_and_token(self, user_id: str, device_id: str, token: str, *, display_name: str | None,
                                   now_ms: int, client_ip: str | None) -> bool:
        """Create (or reuse) a device and give it a new access token. True if the device is new."""

        def txn_fn(txn):
            exists = txn.select_one("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id))
            if exists:
                # Spec: logging in with an existing device_id invalidates its previous tokens.
                txn.execute("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                txn.execute("UPDATE devices SET last_seen_ts = ?, last_seen_ip = ? WHERE user_id = ? AND device_id = ?",
                            (now_ms, client_ip, user_id, device_id))
            else:
                txn.execute("INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip) "
                            "VALUES (?, ?, ?, ?, ?)", (user_id, device_id, display_name, now_ms, client_ip))
            txn.execute("INSERT INTO access_tokens (token_hash, user_id, device_id, creation_ts) VALUES (?, ?, ?, ?)",
                        (token_hash(token), user_id, device_id, now_ms))
            return not exists

        return await self.db.run("add_device_and_token", txn_fn)

    async def create_device(self, user_id: str, device_id: str, display_name: str | None, now_ms: int) -> bool:
        """A device with no access token (MSC4190: an appservice manages its users' devices); False if it exists."""
        def txn_fn(txn):
            if txn.select_one("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)):
                return False
            txn.execute("INSERT INTO devices (user_id, device_id, display_name, last_seen_ts) VALUES (?, ?, ?, ?)",
                        (user_id, device_id, display_name, now_ms))
            return True

        return await self.db.run("create_device", txn_fn)

    async def get_token(self, token: str) -> TokenInfo | None:
        """The token's user and device, with its lifetime (one read: a token's first use needs no second)."""
        def txn_fn(txn):
            row = txn.select_one(
                "SELECT t.user_id, t.device_id, u.admin, u.deactivated, u.is_guest, l.valid_until_ms,"
                " l.refresh_token_hash IS NOT NULL AND l.used = 0 FROM access_tokens t"
                " JOIN users u ON u.user_id = t.user_id"
                " LEFT JOIN access_token_lifetimes l ON l.token_hash = t.token_hash WHERE t.token_hash = ?",
                (token_hash(token),))
            return None if row is None else TokenInfo(row[0], row[1], bool(row[2]), bool(row[3]), bool(row[4]),
                                                      row[5], bool(row[6]))

        return await self.db.run("get_token", txn_fn)

    async def delete_token(self, token: str) -> None:
        await self.db.run("delete_token", lambda t: t.execute("DELETE FROM access_tokens WHERE token_hash = ?",
                                                              (token_hash(token),)))

    async def delete_devices(self, user_id: str, device_ids: list[str] | None) -> list[str]:
        """Delete the given devices (all when None) with their tokens; returns the ids removed."""

        def txn_fn(txn):
            if device_ids is None:
                return _delete_devices_txn(txn, user_id, except_device=None)
            removed = []
            for device_id in device_ids:
                txn.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                if txn.rowcount:
                    removed.append(device_id)
                txn.execute("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", (user_id, device_id))
            return removed

        return await self.db.run("delete_devices", txn_fn)

    async def list_devices(self, user_id: str) -> list[dict]:
        rows = await self.db.run("list_devices", lambda t: t.select_all(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ? "
            "ORDER BY device_id", (user_id,)))
        return [_device_json(user_id, r) for r in rows]

    async def get_device(self, user_id: str, device_id: str) -> dict | None:
        row = await self.db.run("get_device", lambda t: t.select_one(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices "
            "WHERE user_id = ? AND device_id = ?", (user_id, device_id)))
        return None if row is None else _device_json(user_id, row)

    async def rename_device(self, user_id: str, device_id: str, display_name: str) -> bool:
        def txn_fn(txn):
            txn.execute("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                        (display_name, user_id, device_id))
            return txn.rowcount > 0

        return await self.db.run("rename_device", txn_fn)

    # -- profiles ---------------------------------------------------------------
    async def get_profile(self, user_id: str) -> dict | None:
        row = await self.db.run("get_profile", lambda t: t.select_one(
            "SELECT displayname, avatar_url FROM profiles WHERE user_id = ?", (user_id,)))
        if row is None:
            return None
        return {k: v for k, v in (("displayname", row[0]), ("avatar_url", row[1])) if v is not None}

    async def set_profile_field(self, user_id: str, field: str, value: str | None) -> None:
        assert field in ("displayname", "avatar_url")

        def txn_fn(txn):
            txn.execute(f"UPDATE profiles SET {field} = ? WHERE user_id = ?", (value, user_id))
            if field == "displayname":
                reindex_users_txn(txn, [user_id])

        await self.db.run("set_profile_field", txn_fn)

    # -- registration tokens -----------------------------------------------------
    async def use_registration_token(self, token: str, now_ms: int) -> bool:
        """Consume one use of a registration token if it is valid (spec m.login.registration_token)."""

        def txn_fn(txn):
            row = txn.select_one("SELECT uses_allowed, completed, expiry_time FROM registration_tokens WHERE token = ?",
                                 (token,))
            if row is None:
                return False
            uses_allowed, completed, expiry = row
            if expiry is not None and expiry < now_ms:
                return False
            if uses_allowed is not None and completed >= uses_allowed:
                return False
            txn.execute("UPDATE registration_tokens SET completed = completed + 1 WHERE token = ?", (token,))
            return True

        return await self.db.run("use_registration_token", txn_fn)

    async def registration_token_valid(self, token: str, now_ms: int) -> bool:
        row = await self.db.run("registration_token_valid", lambda t: t.select_one(
            "SELECT uses_allowed, completed, expiry_time FROM registration_tokens WHERE token = ?", (token,)))
        if row is None:
            return False
        uses_allowed, completed, expiry = row
        return (expiry is None or expiry >= now_ms) and (uses_allowed is None or completed < uses_allowed)

    async def create_registration_token(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        """False if the token already exists."""

        def txn_fn(txn):
            # ON CONFLICT, not a SELECT first: a concurrent creation must not fail with the token in its error.
            txn.execute("INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (?, ?, ?) "
                        "ON CONFLICT (token) DO NOTHING", (token, uses_allowed, expiry_time))
            return txn.rowcount == 1

        return await self.db.run("create_registration_token", txn_fn)

    async def registration_tokens(self, token: str | None = None) -> list[dict]:
        """Every registration token (or the one named), in Synapse's admin API shape."""
        sql = "SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens"
        args: tuple = ()
        if token is not None:
            sql, args = sql + " WHERE token = ?", (token,)
        rows = await self.db.run("registration_tokens", lambda t: t.select_all(sql + " ORDER BY token", args))
        return [dict(zip(("token", "uses_allowed", "pending", "completed", "expiry_time"), r)) for r in rows]

    async def update_registration_token(self, token: str, changes: dict) -> bool:
        assert set(changes) <= {"uses_allowed", "expiry_time"}

        def txn_fn(txn):
            for column, value in changes.items():
                txn.execute(f"UPDATE registration_tokens SET {column} = ? WHERE token = ?", (value, token))
            return txn.select_one("SELECT 1 FROM registration_tokens WHERE token = ?", (token,)) is not None

        return await self.db.run("update_registration_token", txn_fn)

    async def delete_registration_token(self, token: str) -> bool:
        def txn_fn(txn):
            txn.execute("DELETE FROM registration_tokens WHERE token = ?", (token,))
            return txn.rowcount > 0

        return await self.db.run("delete_registration_token", txn_fn)


def _delete_devices_txn(txn, user_id: str, except_device: str | None) -> list[str]:
    rows = txn.select_all("SELECT device_id FROM devices WHERE user_id = ?", (user_id,))
    removed = [r[0] for r in rows if r[0] != except_device]
    for device_id in removed:
        txn.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id))
    if except_device is None:
        txn.execute("DELETE FROM access_tokens WHERE user_id = ?", (user_id,))
    else:
        txn.execute("DELETE FROM access_tokens WHERE user_id = ? AND (device_id IS NULL OR device_id != ?)",
                    (user_id, except_device))
    return removed


def _device_json(user_id: str, row) -> dict:
    device = {"device_id": row[0], "user_id": user_id}
    if row[1] is not None:
        device["display_name"] = row[1]
    if row[2] is not None:
        device["last_seen_ts"] = row[2]
    if row[3] is not None:
        device["last_seen_ip"] = row[3]
    return device

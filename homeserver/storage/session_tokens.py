"""Refresh tokens, access token lifetimes and login tokens (their own migration domain).

Spec v1.19 client-server "Refreshing access tokens" and "Login" (``m.login.token``). Tokens are stored as
their SHA-256, as access tokens are (:func:`homeserver.storage.accounts.token_hash`).

A refresh token names the refresh token it was exchanged for (``next_token_hash``); an access token issued
with a refresh token names it (``refresh_token_hash``). When that access token (or its refresh token) is
first used, the refresh token it replaced goes, and with it the access token that came with the old one;
everything happens in one transaction, so a refresh is all or nothing.
"""

from __future__ import annotations

from homeserver.storage.accounts import token_hash
from homeserver.storage.database import Store

MIGRATIONS = [
    """
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        expiry_ts BIGINT,
        next_token_hash TEXT
    );
    CREATE INDEX refresh_tokens_user_device ON refresh_tokens (user_id, device_id);
    CREATE INDEX refresh_tokens_next ON refresh_tokens (next_token_hash);
    CREATE TABLE access_token_lifetimes (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        valid_until_ms BIGINT,
        refresh_token_hash TEXT,
        used INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX access_token_lifetimes_user_device ON access_token_lifetimes (user_id, device_id);
    CREATE INDEX access_token_lifetimes_refresh ON access_token_lifetimes (refresh_token_hash);
    CREATE TABLE login_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        expiry_ts BIGINT NOT NULL
    )
    """,
]


def _revoke_refresh_token_txn(txn, refresh_hash: str) -> None:
    """A refresh token goes, with the access tokens issued along with it."""
    for (access_hash,) in txn.select_all(
            "SELECT token_hash FROM access_token_lifetimes WHERE refresh_token_hash = ?", (refresh_hash,)):
        txn.execute("DELETE FROM access_tokens WHERE token_hash = ?", (access_hash,))
        txn.execute("DELETE FROM access_token_lifetimes WHERE token_hash = ?", (access_hash,))
    txn.execute("DELETE FROM refresh_tokens WHERE token_hash = ?", (refresh_hash,))


def _revoke_predecessors_txn(txn, refresh_hash: str) -> bool:
    """The refresh tokens exchanged for ``refresh_hash`` go (spec: once the new token is used); True if any."""
    old = txn.select_all("SELECT token_hash FROM refresh_tokens WHERE next_token_hash = ?", (refresh_hash,))
    for (old_hash,) in old:
        _revoke_refresh_token_txn(txn, old_hash)
    return bool(old)


def _add_tokens_txn(txn, user_id: str, device_id: str, access_token: str, valid_until_ms: int | None,
                    refresh_token: str | None, refresh_expiry_ts: int | None) -> None:
    refresh_hash = token_hash(refresh_token) if refresh_token is not None else None
    txn.execute("INSERT INTO access_token_lifetimes (token_hash, user_id, device_id, valid_until_ms, "
                "refresh_token_hash) VALUES (?, ?, ?, ?, ?)",
                (token_hash(access_token), user_id, device_id, valid_until_ms, refresh_hash))
    if refresh_hash is not None:
        txn.execute("INSERT INTO refresh_tokens (token_hash, user_id, device_id, expiry_ts) VALUES (?, ?, ?, ?)",
                    (refresh_hash, user_id, device_id, refresh_expiry_ts))


class SessionTokenStore(Store):
    # -- access token lifetimes and refresh tokens ---------------------------------------------
    async def add_tokens(self, user_id: str, device_id: str, access_token: str, valid_until_ms: int | None,
                         refresh_token: str | None, refresh_expiry_ts: int | None) -> None:
        """The lifetime of a new access token (issued by the account store), with its refresh token if any."""
        await self.db.run("add_session_tokens", _add_tokens_txn, user_id, device_id, access_token,
                          valid_until_ms, refresh_token, refresh_expiry_ts)

    async def use_access_token(self, access_token: str) -> tuple[int | None, bool]:
        """(valid until, whether this first use revoked the refresh token it replaced); (None, False) for a
        token with no lifetime recorded."""

        def txn_fn(txn):
            row = txn.select_one("SELECT valid_until_ms, refresh_token_hash, used FROM access_token_lifetimes "
                                 "WHERE token_hash = ?", (token_hash(access_token),))
            if row is None:
                return None, False
            valid_until, refresh_hash, used = row
            if refresh_hash is None or used:
                return valid_until, False
            txn.execute("UPDATE access_token_lifetimes SET used = 1 WHERE token_hash = ?", (token_hash(access_token),))
            return valid_until, _revoke_predecessors_txn(txn, refresh_hash)

        return await self.db.run("use_access_token", txn_fn)

    async def refresh(self, refresh_token: str, now_ms: int, new_access_token: str, valid_until_ms: int | None,
                      new_refresh_token: str, refresh_expiry_ts: int | None) -> tuple[str, str] | str:
        """Exchange a refresh token: (user id, device id), or "unknown" / "expired".

        The new access token is added to ``access_tokens`` in the same transaction. A refresh token already
        exchanged, whose successor was never used, is exchanged again: that unused successor goes.
        """
        old_hash = token_hash(refresh_token)

        def txn_fn(txn):
            row = txn.select_one("SELECT user_id, device_id, expiry_ts, next_token_hash FROM refresh_tokens "
                                 "WHERE token_hash = ?", (old_hash,))
            if row is None:
                return "unknown"
            user_id, device_id, expiry_ts, next_hash = row
            if expiry_ts is not None and expiry_ts <= now_ms:
                return "expired"
            if next_hash is not None:
                _revoke_refresh_token_txn(txn, next_hash)
            _revoke_predecessors_txn(txn, old_hash)   # using this refresh token revokes the one before it
            txn.execute("INSERT INTO access_tokens (token_hash, user_id, device_id, creation_ts) VALUES (?, ?, ?, ?)",
                        (token_hash(new_access_token), user_id, device_id, now_ms))
            _add_tokens_txn(txn, user_id, device_id, new_access_token, valid_until_ms, new_refresh_token,
                            refresh_expiry_ts)
            txn.execute("UPDATE refresh_tokens SET next_token_hash = ? WHERE token_hash = ?",
                        (token_hash(new_refresh_token), old_hash))
            return user_id, device_id

        return await self.db.run("refresh_token", txn_fn)

    async def on_devices_removed(self, user_id: str, device_ids: list[str]) -> None:
        """The devices' refresh tokens and lifetimes go with them (also when a login reuses a device id)."""

        def txn_fn(txn):
            for device_id in device_ids:
                txn.execute("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                txn.execute("DELETE FROM access_token_lifetimes WHERE user_id = ? AND device_id = ?",
                            (user_id, device_id))

        if device_ids:
            await self.db.run("delete_session_tokens", txn_fn)

    # -- login tokens (m.login.token) ----------------------------------------------------------
    async def add_login_token(self, token: str, user_id: str, expiry_ts: int) -> None:
        await self.db.run("add_login_token", lambda t: t.execute(
            "INSERT INTO login_tokens (token_hash, user_id, expiry_ts) VALUES (?, ?, ?)",
            (token_hash(token), user_id, expiry_ts)))

    async def consume_login_token(self, token: str, now_ms: int) -> str | None:
        """The user a login token logs in, once: it goes whether valid or expired (expired ones swept too)."""

        def txn_fn(txn):
            row = txn.select_one("SELECT user_id, expiry_ts FROM login_tokens WHERE token_hash = ?",
                                 (token_hash(token),))
            txn.execute("DELETE FROM login_tokens WHERE token_hash = ?", (token_hash(token),))
            taken = txn.rowcount == 1   # a concurrent login with the same token took it first otherwise
            txn.execute("DELETE FROM login_tokens WHERE expiry_ts <= ?", (now_ms,))
            return row[0] if row is not None and taken and row[1] > now_ms else None

        return await self.db.run("consume_login_token", txn_fn)

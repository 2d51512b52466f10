"""Third-party identifiers of accounts and the sessions that validate them.

Spec v1.19 client-server "Adding Account Administrative Contact Information": an address (medium
``email``) belongs to at most one account; a validation session (``sid``, with the client's
``client_secret``) is one address proved by a token mailed to it, kept until it expires. A session is
reused for the same client secret and address (a higher ``send_attempt`` mails a new token).
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Store

MIGRATIONS = [
    """
    CREATE TABLE user_threepids (
        medium TEXT NOT NULL,
        address TEXT NOT NULL,
        user_id TEXT NOT NULL,
        validated_at BIGINT NOT NULL,
        added_at BIGINT NOT NULL,
        PRIMARY KEY (medium, address)
    );
    CREATE INDEX user_threepids_user ON user_threepids (user_id);
    CREATE TABLE threepid_sessions (
        session_id TEXT NOT NULL PRIMARY KEY,
        client_secret TEXT NOT NULL,
        medium TEXT NOT NULL,
        address TEXT NOT NULL,
        purpose TEXT NOT NULL,
        send_attempt BIGINT NOT NULL,
        token TEXT NOT NULL,
        next_link TEXT,
        expires_at BIGINT NOT NULL,
        validated_at BIGINT
    );
    CREATE UNIQUE INDEX threepid_sessions_secret ON threepid_sessions (client_secret, medium, address, purpose);
    CREATE INDEX threepid_sessions_expiry ON threepid_sessions (expires_at)
    """,
]


VALIDATED_KEPT_MS = 24 * 60 * 60 * 1000  # a validated session not used is forgotten this long after its link expired


@dataclass(frozen=True)
class ValidationSession:
    session_id: str
    client_secret: str
    medium: str
    address: str
    purpose: str  # registration, add_threepid, password_reset: what the mailed link is for
    send_attempt: int
    token: str
    next_link: str | None
    expires_at: int
    validated_at: int | None


_SESSION_COLUMNS = ("session_id, client_secret, medium, address, purpose, send_attempt, token, next_link,"
                    " expires_at, validated_at")


class ThreepidStore(Store):
    # -- an account's identifiers ---------------------------------------------------------------
    async def threepids(self, user_id: str) -> list[dict]:
        rows = await self.db.run("user_threepids", lambda t: t.select_all(
            "SELECT medium, address, validated_at, added_at FROM user_threepids WHERE user_id = ?"
            " ORDER BY added_at, address", (user_id,)))
        return [{"medium": m, "address": a, "validated_at": v, "added_at": ad} for m, a, v, ad in rows]

    async def owner(self, medium: str, address: str) -> str | None:
        return await self.db.run("threepid_owner", lambda t: t.select_value(
            "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?", (medium, address)))

    async def add(self, user_id: str, medium: str, address: str, validated_at: int, now_ms: int) -> bool:
        """Bind the address to the account; False (and nothing written) if another account has it."""

        def txn_fn(txn):
            txn.execute("INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (medium, address) DO NOTHING",
                        (medium, address, user_id, validated_at, now_ms))
            return txn.select_value("SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?",
                                    (medium, address)) == user_id

        return await self.db.run("add_threepid", txn_fn)

    async def remove(self, user_id: str, medium: str, address: str) -> bool:
        def txn_fn(txn):
            txn.execute("DELETE FROM user_threepids WHERE user_id = ? AND medium = ? AND address = ?",
                        (user_id, medium, address))
            return txn.rowcount > 0

        return await self.db.run("remove_threepid", txn_fn)

    async def remove_all(self, user_id: str) -> None:
        await self.db.run("remove_user_threepids", lambda t: t.execute(
            "DELETE FROM user_threepids WHERE user_id = ?", (user_id,)))

    # -- validation sessions --------------------------------------------------------------------
    async def start_session(self, session: ValidationSession, now_ms: int) -> tuple[ValidationSession, bool]:
        """The live session of (client_secret, medium, address, purpose), created as ``session`` if there is none;
        with a higher ``send_attempt``, given ``session``'s token and expiry. Returns it and whether a token
        must be mailed (new session or higher attempt). Expired sessions (validated ones a day later) are
        forgotten on the way."""

        def txn_fn(txn):
            txn.execute("DELETE FROM threepid_sessions WHERE expires_at < ?"
                        " AND (validated_at IS NULL OR expires_at < ?)", (now_ms, now_ms - VALIDATED_KEPT_MS))
            key = (session.client_secret, session.medium, session.address, session.purpose)
            row = txn.select_one(f"SELECT {_SESSION_COLUMNS} FROM threepid_sessions WHERE client_secret = ?"
                                 " AND medium = ? AND address = ? AND purpose = ?", key)
            if row is None:
                txn.execute(f"INSERT INTO threepid_sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (session.session_id, *key, session.send_attempt, session.token, session.next_link,
                             session.expires_at, None))
                return session, True
            old = ValidationSession(*row)
            if session.send_attempt <= old.send_attempt:
                return old, False
            txn.execute("UPDATE threepid_sessions SET send_attempt = ?, token = ?, next_link = ?, expires_at = ?"
                        " WHERE session_id = ?", (session.send_attempt, session.token, session.next_link,
                                                  session.expires_at, old.session_id))
            return ValidationSession(**dict(old.__dict__, send_attempt=session.send_attempt, token=session.token,
                                            next_link=session.next_link, expires_at=session.expires_at)), True

        return await self.db.run("start_threepid_session", txn_fn)

    async def unsent(self, session_id: str) -> None:
        """Its mail could not be sent: the next requestToken of the session mails, whatever its send_attempt."""
        await self.db.run("threepid_session_unsent", lambda t: t.execute(
            "UPDATE threepid_sessions SET send_attempt = -1 WHERE session_id = ?", (session_id,)))

    async def session(self, session_id: str, client_secret: str) -> ValidationSession | None:
        row = await self.db.run("threepid_session", lambda t: t.select_one(
            f"SELECT {_SESSION_COLUMNS} FROM threepid_sessions WHERE session_id = ? AND client_secret = ?",
            (session_id, client_secret)))
        return None if row is None else ValidationSession(*row)

    async def mark_validated(self, session_id: str, now_ms: int) -> None:
        await self.db.run("validate_threepid_session", lambda t: t.execute(
            "UPDATE threepid_sessions SET validated_at = ? WHERE session_id = ? AND validated_at IS NULL",
            (now_ms, session_id)))

    async def end_session(self, session_id: str) -> None:
        """A validated session used (an address added, a password reset): it cannot be used again."""
        await self.db.run("end_threepid_session", lambda t: t.execute(
            "DELETE FROM threepid_sessions WHERE session_id = ?", (session_id,)))

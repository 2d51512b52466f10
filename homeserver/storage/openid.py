"""OpenID tokens (client-server "OpenID"): kept until they expire, so a restart does not void the tokens that
third parties (an SFU's token service) are about to check."""

from __future__ import annotations

MIGRATIONS = [
    """
    CREATE TABLE open_id_tokens (
        token TEXT NOT NULL PRIMARY KEY,
        user_id TEXT NOT NULL,
        valid_until_ms BIGINT NOT NULL
    )
    """,
    "CREATE INDEX open_id_tokens_valid_until ON open_id_tokens (valid_until_ms)",
]


class OpenIdTokenStore:
    def __init__(self, db):
        self.db = db

    async def add(self, token: str, user_id: str, valid_until_ms: int, now_ms: int) -> None:
        """Store a token (and forget the expired ones)."""
        def txn_fn(txn):
            txn.execute("DELETE FROM open_id_tokens WHERE valid_until_ms < ?", (now_ms,))
            txn.execute("INSERT INTO open_id_tokens (token, user_id, valid_until_ms) VALUES (?, ?, ?)",
                        (token, user_id, valid_until_ms))

        await self.db.run("add_open_id_token", txn_fn)

    async def user_for(self, token: str, now_ms: int) -> str | None:
        return await self.db.run("open_id_token_user", lambda t: t.select_value(
            "SELECT user_id FROM open_id_tokens WHERE token = ? AND valid_until_ms >= ?", (token, now_ms)))

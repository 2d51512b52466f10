"""Suspended and locked accounts (client-server "Account suspension" and "Account locking", v1.18): one row per
account that is either, gone when it is neither. Few rows, read whole at start-up."""

from __future__ import annotations

MIGRATIONS = [
    """
    CREATE TABLE account_moderation (
        user_id TEXT NOT NULL PRIMARY KEY,
        suspended INTEGER NOT NULL,
        locked INTEGER NOT NULL
    )
    """,
]


class AccountModerationStore:
    def __init__(self, db):
        self.db = db

    def load(self) -> list[tuple[str, bool, bool]]:
        """Every moderated account: (user id, suspended, locked); synchronous, for the start-up."""
        rows = self.db.run_sync("load_account_moderation", lambda t: t.select_all(
            "SELECT user_id, suspended, locked FROM account_moderation"))
        return [(user_id, bool(suspended), bool(locked)) for user_id, suspended, locked in rows]

    async def put(self, user_id: str, suspended: bool, locked: bool) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM account_moderation WHERE user_id = ?", (user_id,))
            if suspended or locked:
                txn.execute("INSERT INTO account_moderation (user_id, suspended, locked) VALUES (?, ?, ?)",
                            (user_id, int(suspended), int(locked)))

        await self.db.run("put_account_moderation", txn_fn)

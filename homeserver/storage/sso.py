"""Which account each single sign-on identity logs in to (its own migration domain, ``sso``).

Synapse's ``user_external_ids``: one row per (identity provider, the provider's id of the user), naming the
Matrix user it maps to. Rows go with the user's deactivation.
"""

from __future__ import annotations

from homeserver.storage.database import Store

MIGRATIONS = [
    """
    CREATE TABLE user_external_ids (
        auth_provider TEXT NOT NULL,
        external_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (auth_provider, external_id)
    );
    CREATE INDEX user_external_ids_user ON user_external_ids (user_id)
    """,
]


class SsoStore(Store):
    async def user_of(self, auth_provider: str, external_id: str) -> str | None:
        """The Matrix user the provider's user maps to, None for one never seen."""
        row = await self.db.run("get_user_by_external_id", lambda txn: txn.select_one(
            "SELECT user_id FROM user_external_ids WHERE auth_provider = ? AND external_id = ?",
            (auth_provider, external_id)))
        return row[0] if row else None

    async def record(self, auth_provider: str, external_id: str, user_id: str) -> str:
        """Map the provider's user to ``user_id``, unless another login mapped it first: the user it maps to."""

        def txn_fn(txn):
            txn.execute("INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES (?, ?, ?) "
                        "ON CONFLICT (auth_provider, external_id) DO NOTHING", (auth_provider, external_id, user_id))
            return txn.select_one("SELECT user_id FROM user_external_ids WHERE auth_provider = ? AND external_id = ?",
                                  (auth_provider, external_id))[0]

        return await self.db.run("record_user_external_id", txn_fn)

    async def providers_of(self, user_id: str) -> list[str]:
        """The identity providers mapped to the user."""
        rows = await self.db.run("get_external_ids_by_user", lambda txn: txn.select_all(
            "SELECT DISTINCT auth_provider FROM user_external_ids WHERE user_id = ?", (user_id,)))
        return sorted(r[0] for r in rows)

    async def forget_user(self, user_id: str) -> None:
        """A deactivated user's mappings go (Synapse deletes them too)."""
        await self.db.run("delete_external_ids", lambda txn: txn.execute(
            "DELETE FROM user_external_ids WHERE user_id = ?", (user_id,)))

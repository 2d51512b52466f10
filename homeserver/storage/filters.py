"""Stored sync filters (client-server "Filtering")."""

from __future__ import annotations

import json

from homeserver.storage.database import Store

MIGRATIONS = [
    """
    CREATE TABLE user_filters (
        user_id TEXT NOT NULL,
        filter_id BIGINT NOT NULL,
        filter_json TEXT NOT NULL,
        PRIMARY KEY (user_id, filter_id)
    )
    """,
]


class FilterStore(Store):
    async def add_filter(self, user_id: str, definition: dict) -> int:
        """Store a filter (the same definition twice gets the same id)."""
        raw = json.dumps(definition, sort_keys=True, separators=(",", ":"))

        def txn_fn(txn):
            existing = txn.select_value("SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_json = ?",
                                        (user_id, raw))
            if existing is not None:
                return existing
            next_id = txn.select_value("SELECT MAX(filter_id) FROM user_filters WHERE user_id = ?", (user_id,),
                                       default=-1) + 1
            txn.execute("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)",
                        (user_id, next_id, raw))
            return next_id

        return await self.db.run("add_filter", txn_fn)

    async def get_filter(self, user_id: str, filter_id: int) -> dict | None:
        raw = await self.db.run("get_filter", lambda t: t.select_value(
            "SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?", (user_id, filter_id)))
        return None if raw is None else json.loads(raw)

"""Pagination sessions of the space hierarchy (client-server ``GET /hierarchy``): what is left to walk of one
user's request, under the opaque ``next_batch`` token, until it expires. Kept in the database so that a
restart or a second page served later still continues where the first page stopped."""

from __future__ import annotations

import json

MIGRATIONS = [
    """
    CREATE TABLE space_hierarchy_sessions (
        token TEXT NOT NULL PRIMARY KEY,
        session_json TEXT NOT NULL,
        expires_ms BIGINT NOT NULL
    )
    """,
    "CREATE INDEX space_hierarchy_sessions_expiry ON space_hierarchy_sessions (expires_ms)",
]


class HierarchySessionStore:
    def __init__(self, db):
        self.db = db

    async def add(self, token: str, session: dict, expires_ms: int, now_ms: int) -> None:
        """Store a session (and forget the expired ones)."""
        def txn_fn(txn):
            txn.execute("DELETE FROM space_hierarchy_sessions WHERE expires_ms < ?", (now_ms,))
            txn.execute("INSERT INTO space_hierarchy_sessions (token, session_json, expires_ms) VALUES (?, ?, ?)",
                        (token, json.dumps(session), expires_ms))

        await self.db.run("add_hierarchy_session", txn_fn)

    async def get(self, token: str, now_ms: int) -> dict | None:
        raw = await self.db.run("get_hierarchy_session", lambda t: t.select_value(
            "SELECT session_json FROM space_hierarchy_sessions WHERE token = ? AND expires_ms >= ?", (token, now_ms)))
        return None if raw is None else json.loads(raw)

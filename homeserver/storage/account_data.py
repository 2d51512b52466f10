"""Stored account data (client-server "Client Config"), global and per room.

Global account data is stored with the room id ``""`` (never a valid room id),
so the key has no NULLs and works as a primary key everywhere.
"""

from __future__ import annotations

import json

from homeserver.storage.database import Store
from homeserver.storage.streams import max_position

GLOBAL = ""

MIGRATIONS = [
    """
    CREATE TABLE account_data (
        user_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        data_type TEXT NOT NULL,
        content TEXT NOT NULL,
        stream_id BIGINT NOT NULL,
        PRIMARY KEY (user_id, room_id, data_type)
    );
    CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id)
    """,
]


class AccountDataStore(Store):
    def max_stream_id_sync(self) -> int:
        """The account data stream position at start-up."""
        return self.db.run_sync("account_data_max_stream_id", max_position, "account_data", "stream_id")

    async def put(self, user_id: str, room_id: str | None, data_type: str, content: dict, stream_id: int) -> None:
        row = (user_id, room_id or GLOBAL, data_type, json.dumps(content), stream_id)
        await self.db.run("put_account_data", lambda txn: txn.execute(
            "INSERT INTO account_data (user_id, room_id, data_type, content, stream_id) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET"
            " content = excluded.content, stream_id = excluded.stream_id", row))

    async def get(self, user_id: str, room_id: str | None, data_type: str) -> dict | None:
        raw = await self.db.run("get_account_data", lambda txn: txn.select_value(
            "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND data_type = ?",
            (user_id, room_id or GLOBAL, data_type)))
        return None if raw is None else json.loads(raw)

    async def changes_for_user(self, user_id: str, since: int | None,
                               to: int) -> list[tuple[str | None, str, dict]]:
        """(room id or None for global, type, content) written after ``since`` (all when None), up to ``to``."""
        rows = await self.db.run("account_data_changes", lambda txn: txn.select_all(
            "SELECT room_id, data_type, content FROM account_data"
            " WHERE user_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id",
            (user_id, since if since is not None else -1, to)))
        return [(room_id or None, data_type, json.loads(content)) for room_id, data_type, content in rows]

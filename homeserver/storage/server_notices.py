"""Which room holds each user's server notices (spec v1.19 client-server "Server Notices")."""

from __future__ import annotations

MIGRATIONS = [
    """
    CREATE TABLE server_notice_rooms (
        user_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL
    )
    """,
]


class ServerNoticeStore:
    def __init__(self, db):
        self.db = db

    async def room_of(self, user_id: str) -> str | None:
        return await self.db.run("server_notice_room", lambda t: t.select_value(
            "SELECT room_id FROM server_notice_rooms WHERE user_id = ?", (user_id,)))

    async def set_room(self, user_id: str, room_id: str) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM server_notice_rooms WHERE user_id = ?", (user_id,))
            txn.execute("INSERT INTO server_notice_rooms (user_id, room_id) VALUES (?, ?)", (user_id, room_id))

        await self.db.run("set_server_notice_room", txn_fn)

"""Room aliases and the public room directory."""

from __future__ import annotations

from homeserver.storage.database import Store

MIGRATIONS = [
    """
    CREATE TABLE room_aliases (
        room_alias TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        creator TEXT
    );
    CREATE INDEX room_aliases_room ON room_aliases (room_id)
    """,
]


class DirectoryStore(Store):
    async def create_alias(self, alias: str, room_id: str, creator: str) -> bool:
        def txn_fn(txn):
            if txn.select_one("SELECT 1 FROM room_aliases WHERE room_alias = ?", (alias,)):
                return False
            txn.execute("INSERT INTO room_aliases (room_alias, room_id, creator) VALUES (?, ?, ?)",
                        (alias, room_id, creator))
            return True

        return await self.db.run("create_alias", txn_fn)

    async def get_alias(self, alias: str) -> tuple[str, str] | None:
        row = await self.db.run("get_alias", lambda t: t.select_one(
            "SELECT room_id, creator FROM room_aliases WHERE room_alias = ?", (alias,)))
        return None if row is None else (row[0], row[1])

    async def delete_alias(self, alias: str) -> None:
        await self.db.run("delete_alias", lambda t: t.execute(
            "DELETE FROM room_aliases WHERE room_alias = ?", (alias,)))

    async def aliases_for_room(self, room_id: str) -> list[str]:
        return [r[0] for r in await self.db.run("aliases_for_room", lambda t: t.select_all(
            "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias", (room_id,)))]

    async def move_aliases(self, old_room_id: str, new_room_id: str) -> None:
        """Spec "Room Upgrades": the old room's local aliases now point to its replacement."""
        await self.db.run("move_aliases", lambda t: t.execute(
            "UPDATE room_aliases SET room_id = ? WHERE room_id = ?", (new_room_id, old_room_id)))

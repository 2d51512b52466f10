"""The device list stream: whose device list changed, and who joined or left which room, by position.

Spec v1.19 client-server "Tracking the device list for a user". Both tables
share the positions of one stream ("device_lists" in the sync token).
"""

from __future__ import annotations

from homeserver.storage.database import Store
from homeserver.storage.streams import max_position

MIGRATIONS = [
    """
    CREATE TABLE device_list_changes (
        stream_id BIGINT NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (stream_id, user_id)
    );
    CREATE TABLE device_list_memberships (
        stream_id BIGINT NOT NULL,
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        membership TEXT NOT NULL
    );
    CREATE INDEX device_list_memberships_stream ON device_list_memberships (stream_id)
    """,
    # Server-server "Device Management": each change of a local user's device is one
    # m.device_list_update, its stream_id a position of this stream, chained per user by prev_id.
    """
    CREATE TABLE device_list_device_updates (
        user_id TEXT NOT NULL,
        stream_id BIGINT NOT NULL,
        device_id TEXT NOT NULL,
        PRIMARY KEY (user_id, stream_id)
    )
    """,
]

# Its own migration domain ("device_list_signatures"): signatures a user made of other users' keys (with their
# user-signing key) and their own user-signing key, which only that user sees (Synapse's user signature stream).
SIGNATURE_MIGRATIONS = [
    """
    CREATE TABLE device_list_signature_changes (
        stream_id BIGINT NOT NULL,
        from_user_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (stream_id, from_user_id, user_id)
    );
    CREATE INDEX device_list_signature_changes_from ON device_list_signature_changes (from_user_id, stream_id)
    """,
]


class DeviceListStore(Store):
    def max_position_sync(self) -> int:
        """The stream's highest stored position (start-up only)."""
        return self.db.run_sync("device_lists_max", lambda t: max(
            max_position(t, "device_list_changes", "stream_id"),
            max_position(t, "device_list_memberships", "stream_id"),
            max_position(t, "device_list_device_updates", "stream_id"),
            max_position(t, "device_list_signature_changes", "stream_id")))

    async def add_change(self, positions: list[int], user_id: str,
                         device_ids: list[str]) -> list[tuple[str, int, int | None]]:
        """Record a change of ``user_id``'s device list, one position per changed device (at least one).

        Returns (device_id, stream_id, prev_id) of each device update: prev_id is the user's
        previous device update (None for the first), the chain of ``m.device_list_update``.
        """

        def txn_fn(txn):
            txn.executemany("INSERT INTO device_list_changes (stream_id, user_id) VALUES (?, ?)",
                            [(pos, user_id) for pos in positions])
            prev = txn.select_value("SELECT MAX(stream_id) FROM device_list_device_updates WHERE user_id = ?",
                                    (user_id,))
            updates = []
            for device_id, pos in zip(device_ids, positions):
                txn.execute("INSERT INTO device_list_device_updates (user_id, stream_id, device_id) VALUES (?, ?, ?)",
                            (user_id, pos, device_id))
                updates.append((device_id, pos, prev))
                prev = pos
            return updates

        return await self.db.run("add_device_list_change", txn_fn)

    async def last_device_update(self, user_id: str) -> int:
        """The stream_id of the user's latest device update (0 if none): the version of their device list."""
        return int(await self.db.run("last_device_update", lambda t: t.select_value(
            "SELECT MAX(stream_id) FROM device_list_device_updates WHERE user_id = ?", (user_id,), default=0)))

    async def add_memberships(self, stream_id: int, rows: list[tuple[str, str, str]]) -> None:
        """(room_id, user_id, membership) rows, all at one position (only inserted: ordered)."""
        await self.db.run_ordered("add_device_list_memberships", lambda t: t.executemany(
            "INSERT INTO device_list_memberships (stream_id, room_id, user_id, membership) VALUES (?, ?, ?, ?)",
            [(stream_id, *row) for row in rows]))

    async def changed_users(self, from_pos: int, to_pos: int) -> set[str]:
        rows = await self.db.run("device_list_changed_users", lambda t: t.select_all(
            "SELECT DISTINCT user_id FROM device_list_changes WHERE stream_id > ? AND stream_id <= ?",
            (from_pos, to_pos)))
        return {r[0] for r in rows}

    async def add_signature_change(self, stream_id: int, from_user_id: str, user_ids: list[str]) -> None:
        """``from_user_id`` made new signatures of ``user_ids``' keys (or changed their own user-signing key)."""
        await self.db.run("add_device_list_signature_change", lambda t: t.executemany(
            "INSERT INTO device_list_signature_changes (stream_id, from_user_id, user_id) VALUES (?, ?, ?)",
            [(stream_id, from_user_id, u) for u in sorted(set(user_ids))]))

    async def signature_changes(self, from_pos: int, to_pos: int, from_user_id: str) -> set[str]:
        """The users whose keys ``from_user_id`` signed in (from_pos, to_pos]."""
        rows = await self.db.run("device_list_signature_changes", lambda t: t.select_all(
            "SELECT DISTINCT user_id FROM device_list_signature_changes "
            "WHERE from_user_id = ? AND stream_id > ? AND stream_id <= ?", (from_user_id, from_pos, to_pos)))
        return {r[0] for r in rows}

    async def memberships(self, from_pos: int, to_pos: int, user_id: str,
                          room_ids: list[str]) -> list[tuple[str, str, str]]:
        """(room_id, user_id, membership) changes in (from_pos, to_pos] of ``user_id`` or in ``room_ids``."""
        marks = ",".join("?" for _ in room_ids) or "NULL"
        rows = await self.db.run("device_list_memberships", lambda t: t.select_all(
            "SELECT room_id, user_id, membership FROM device_list_memberships "
            f"WHERE stream_id > ? AND stream_id <= ? AND (user_id = ? OR room_id IN ({marks})) ORDER BY stream_id",
            (from_pos, to_pos, user_id, *room_ids)))
        return [(r[0], r[1], r[2]) for r in rows]

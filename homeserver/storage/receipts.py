"""Stored receipts (client-server "Receipts"): one row per (room, type, user, thread).

An unthreaded receipt is stored with the thread id ``""`` (never a valid
thread id), so the key has no NULLs and works as a primary key everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from homeserver.storage.database import Store
from homeserver.storage.streams import max_position

UNTHREADED = ""
READ_TYPES = ("m.read", "m.read.private")
_BATCH = 500  # rooms per IN (...) clause

MIGRATIONS = [
    """
    CREATE TABLE receipts (
        room_id TEXT NOT NULL,
        receipt_type TEXT NOT NULL,
        user_id TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_stream_ordering BIGINT NOT NULL,
        data TEXT NOT NULL,
        stream_id BIGINT NOT NULL,
        PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
    );
    CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id);
    CREATE INDEX receipts_stream ON receipts (stream_id)
    """,
]


@dataclass(frozen=True)
class Receipt:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str | None  # None: unthreaded
    event_id: str
    event_stream_ordering: int
    data: dict


class ReceiptStore(Store):
    def max_stream_id_sync(self) -> int:
        """The receipts stream position at start-up."""
        return self.db.run_sync("receipts_max_stream_id", max_position, "receipts", "stream_id")

    async def upsert(self, receipt: Receipt, stream_id: int) -> bool:
        """Store a receipt unless the existing one for its key is at the same or a later event.

        Returns whether it was stored (an older receipt never replaces a newer one).
        """
        row = (receipt.room_id, receipt.receipt_type, receipt.user_id, receipt.thread_id or UNTHREADED,
               receipt.event_id, receipt.event_stream_ordering, json.dumps(receipt.data), stream_id)

        def txn_fn(txn):
            txn.execute(
                "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_stream_ordering,"
                " data, stream_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET"
                " event_id = excluded.event_id, event_stream_ordering = excluded.event_stream_ordering,"
                " data = excluded.data, stream_id = excluded.stream_id"
                " WHERE receipts.event_stream_ordering < excluded.event_stream_ordering", row)
            return txn.rowcount > 0

        return await self.db.run("upsert_receipt", txn_fn)

    async def receipts_for_rooms(self, room_ids: list[str], since: int | None, to: int) -> list[Receipt]:
        """The receipts of these rooms written after ``since`` (all when None) and up to ``to``."""
        if not room_ids:
            return []

        def txn_fn(txn):
            rows = []
            for i in range(0, len(room_ids), _BATCH):
                batch = room_ids[i:i + _BATCH]
                marks = ",".join("?" * len(batch))
                rows += txn.select_all(
                    "SELECT room_id, receipt_type, user_id, thread_id, event_id, event_stream_ordering, data"
                    f" FROM receipts WHERE room_id IN ({marks}) AND stream_id > ? AND stream_id <= ?",
                    (*batch, since if since is not None else -1, to))
            return rows

        return [Receipt(room, rtype, user, thread or None, event_id, so, json.loads(data))
                for room, rtype, user, thread, event_id, so, data in await self.db.run("receipts_for_rooms", txn_fn)]

    async def read_positions(self, room_ids: list[str], user_id: str) -> dict[str, dict[str | None, int]]:
        """Per room, per thread (None: unthreaded), the stream ordering of the event of the user's latest
        m.read/m.read.private receipt; every room in one statement."""
        positions: dict[str, dict[str | None, int]] = {room_id: {} for room_id in room_ids}
        if not room_ids:
            return positions
        marks = ",".join("?" for _ in room_ids)
        rows = await self.db.run("read_positions", lambda txn: txn.select_all(
            "SELECT room_id, thread_id, MAX(event_stream_ordering) FROM receipts"
            f" WHERE room_id IN ({marks}) AND user_id = ? AND receipt_type IN (?, ?) GROUP BY room_id, thread_id",
            (*room_ids, user_id, *READ_TYPES)))
        for room_id, thread, pos in rows:
            positions[room_id][thread or None] = int(pos)
        return positions

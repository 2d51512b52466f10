"""Remote events the auth rules rejected (server-server "Checks performed on receipt of a PDU", "Rejection").

The spec: a rejected event is not relayed, not served to clients, and not used as an auth event, but other events
may still name it as a prev event; the state after it is the state before it. So it is remembered here, apart
from the room's events (nothing that reads those sees it): its id, its room, its prev events (from which the
state before it, and so after it, is computed again when a later event names it) and why it was rejected.
"""

from __future__ import annotations

import json

MIGRATIONS = [
    """
    CREATE TABLE rejected_events (
        event_id TEXT NOT NULL PRIMARY KEY,
        room_id TEXT NOT NULL,
        prev_events TEXT NOT NULL,
        reason TEXT NOT NULL,
        received_ts BIGINT NOT NULL
    )
    """,
    "CREATE INDEX rejected_events_room ON rejected_events (room_id)",
]


class RejectedEventStore:
    def __init__(self, db):
        self.db = db

    async def add(self, event_id: str, room_id: str, prev_events: list[str], reason: str, now_ms: int) -> None:
        """Remember a rejection (a second one of the same event changes nothing)."""

        def txn_fn(txn):
            if txn.select_value("SELECT 1 FROM rejected_events WHERE event_id = ?", (event_id,)) is None:
                txn.execute("INSERT INTO rejected_events (event_id, room_id, prev_events, reason, received_ts)"
                            " VALUES (?, ?, ?, ?, ?)", (event_id, room_id, json.dumps(prev_events), reason[:1000],
                                                        now_ms))

        await self.db.run("add_rejected_event", txn_fn)

    async def get(self, event_ids) -> dict[str, tuple[str, list[str]]]:
        """The rejected ones among ``event_ids``: event id -> (room id, its prev events)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}

        def txn_fn(txn):
            found = {}
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                rows = txn.select_all(f"SELECT event_id, room_id, prev_events FROM rejected_events WHERE event_id IN"
                                      f" ({', '.join('?' for _ in part)})", tuple(part))
                found.update({row[0]: (row[1], json.loads(row[2])) for row in rows})
            return found

        return await self.db.run("get_rejected_events", txn_fn)

"""Remote events the auth rules rejected (server-server "Checks performed on receipt of a PDU", "Rejection").

The spec: a rejected event is not relayed, not served to clients, and not used as an auth event, but other events
may still name it as a prev event; the state after it is the state before it. So it is remembered here, apart
from the room's events (nothing that reads those sees it): its id, its room, the state before it (a stored
state group when it is one, else the state itself, by key) and why it was rejected.
"""

from __future__ import annotations

import json

MIGRATIONS = [
    """
    CREATE TABLE rejected_events (
        event_id TEXT NOT NULL PRIMARY KEY,
        room_id TEXT NOT NULL,
        state_group BIGINT,
        state TEXT,
        reason TEXT NOT NULL,
        received_ts BIGINT NOT NULL
    )
    """,
    "CREATE INDEX rejected_events_room ON rejected_events (room_id)",
]


class RejectedEventStore:
    def __init__(self, db):
        self.db = db

    async def add(self, event_id: str, room_id: str, state_group: int | None, state: dict | None, reason: str,
                  now_ms: int) -> None:
        """Remember a rejection with the state before the event: ``state_group`` when a stored group holds it,
        else ``state`` ((type, state_key) -> event id). A second one of the same event changes nothing."""
        state_json = None if state_group is not None or state is None \
            else json.dumps([[*key, event_id] for key, event_id in state.items()])

        def txn_fn(txn):
            if txn.select_value("SELECT 1 FROM rejected_events WHERE event_id = ?", (event_id,)) is None:
                txn.execute("INSERT INTO rejected_events (event_id, room_id, state_group, state, reason, received_ts)"
                            " VALUES (?, ?, ?, ?, ?, ?)", (event_id, room_id, state_group, state_json, reason[:1000],
                                                           now_ms))

        await self.db.run("add_rejected_event", txn_fn)

    async def get(self, event_ids) -> dict[str, tuple[str, int | None, dict | None]]:
        """The rejected ones among ``event_ids``: event id -> (room id, state group, state) as added."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}

        def txn_fn(txn):
            found = {}
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                rows = txn.select_all(f"SELECT event_id, room_id, state_group, state FROM rejected_events"
                                      f" WHERE event_id IN ({', '.join('?' for _ in part)})", tuple(part))
                found.update({row[0]: (row[1], row[2], None if row[3] is None else
                                       {(t, k): v for t, k, v in json.loads(row[3])}) for row in rows})
            return found

        return await self.db.run("get_rejected_events", txn_fn)

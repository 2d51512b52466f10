"""History purges of message retention and of the admin API (SQLite and PostgreSQL).

Only non-state events are deleted, never the room's latest event nor its forward extremities, so the room's
state, auth chains and the prev_events of its next events stay whole (Synapse's ``_purge_history_txn`` also
keeps state events). The tables that point at an event go with it: search, push actions, receipts,
transaction ids, rejections, pending redactions.
"""

from __future__ import annotations

import json

from homeserver.events.identifiers import domain_of

_BATCH = 500  # event ids per IN (...) clause

# Rows deleted with a purged event: DELETE statements, ``{ids}`` the event ids' placeholders, each condition
# led by a column its table's index or primary key starts with; and how many room ids come first.
_DELETES = (
    ("DELETE FROM event_search WHERE event_id IN ({ids})", 0),
    ("DELETE FROM push_actions WHERE user_id IN (SELECT state_key FROM current_state WHERE room_id = ? "
     "AND type = 'm.room.member') AND room_id = ? AND event_id IN ({ids})", 2),
    ("DELETE FROM receipts WHERE room_id = ? AND event_id IN ({ids})", 1),
    ("DELETE FROM event_txn_ids WHERE room_id = ? AND event_id IN ({ids})", 1),
    ("DELETE FROM rejections WHERE event_id IN ({ids})", 0),
    ("DELETE FROM pending_redactions WHERE redacts IN ({ids}) OR event_id IN ({ids})", 0),
    ("DELETE FROM events WHERE event_id IN ({ids})", 0),
)


class RetentionStore:
    def __init__(self, db):
        self.db = db

    async def retention_policies(self) -> list[tuple[str, dict | None]]:
        """Every room with the content of its current ``m.room.retention`` event (None without one)."""
        rows = await self.db.run("retention_policies", lambda t: t.select_all(
            "SELECT r.room_id, e.json FROM rooms r "
            "LEFT JOIN current_state c ON c.room_id = r.room_id AND c.type = 'm.room.retention' "
            "AND c.state_key = '' LEFT JOIN events e ON e.event_id = c.event_id ORDER BY r.room_id"))
        out = []
        for room_id, event_json in rows:
            content = None if event_json is None else json.loads(event_json).get("content")
            out.append((room_id, content if isinstance(content, dict) else None))
        return out

    async def has_event_before(self, room_id: str, ts: int) -> bool:
        row = await self.db.run("retention_has_event_before", lambda t: t.select_one(
            "SELECT 1 FROM events WHERE room_id = ? AND origin_server_ts < ? LIMIT 1", (room_id, ts)))
        return row is not None

    async def purge_history(self, room_id: str, *, before_ts: int | None, before_stream: int | None,
                            keep_sender_server: str | None) -> list[dict]:
        """Delete the room's non-state events sent before ``before_ts`` and/or placed before
        ``before_stream``, except the latest event and the forward extremities (and, with
        ``keep_sender_server``, that server's users' events), in one transaction; their PDUs."""
        bounds = [(clause, value) for clause, value in (("e.origin_server_ts < ?", before_ts),
                                                         ("e.stream_ordering < ?", before_stream))
                  if value is not None]
        query = ("SELECT e.event_id, e.sender, e.json FROM events e WHERE e.room_id = ? AND e.state_key IS NULL "
                 "AND e.stream_ordering < (SELECT MAX(l.stream_ordering) FROM events l WHERE l.room_id = ?) "
                 "AND NOT EXISTS (SELECT 1 FROM forward_extremities f "
                 "WHERE f.room_id = e.room_id AND f.event_id = e.event_id)"
                 + "".join(f" AND {clause}" for clause, _ in bounds))

        def txn_fn(txn):
            rows = txn.select_all(query, (room_id, room_id, *(value for _, value in bounds)))
            found = {event_id: event_json for event_id, sender, event_json in rows
                     if keep_sender_server is None or domain_of(sender) != keep_sender_server}
            # A redaction stays while the event it redacts does (its unsigned redacted_because).
            for target, redaction in txn.select_all(
                    "SELECT event_id, redacted_by FROM events WHERE room_id = ? AND redacted_by IS NOT NULL",
                    (room_id,)):
                if target not in found:
                    found.pop(redaction, None)
            purged = sorted(found)
            for i in range(0, len(purged), _BATCH):
                batch = tuple(purged[i:i + _BATCH])
                marks = ", ".join("?" for _ in batch)
                for statement, room_args in _DELETES:
                    sql = statement.format(ids=marks)
                    txn.execute(sql, (room_id,) * room_args + batch * statement.count("{ids}"))
            return [{**json.loads(found[event_id]), "event_id": event_id} for event_id in purged]

        return await self.db.run("retention_purge_history", txn_fn)

"""Content reports (spec v1.19 client-server "Reporting content"): events, rooms and users reported by local
users, kept for the server's admins (SQLite and PostgreSQL).

One row per report in ``content_reports``; ``kind`` is ``event``, ``room`` or ``user``. Rows are ordered by
``id`` (allocated by the service, increasing). Only an admin's delete removes a row.
"""

from __future__ import annotations

MIGRATIONS = [
    """
    CREATE TABLE content_reports (
        id BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        received_ts BIGINT NOT NULL,
        user_id TEXT NOT NULL,
        room_id TEXT,
        event_id TEXT,
        event_sender TEXT,
        target_user_id TEXT,
        reason TEXT,
        score BIGINT
    );
    CREATE INDEX content_reports_kind_id ON content_reports (kind, id)
    """,
]

COLUMNS = ("id", "kind", "received_ts", "user_id", "room_id", "event_id", "event_sender", "target_user_id",
           "reason", "score")
# The current state naming a reported room in the admin API.
ROOM_LABELS = {"m.room.name": "name", "m.room.canonical_alias": "alias", "m.room.topic": "topic"}


def _like(value: str) -> str:
    """``value`` anywhere in the column (LIKE with ``!`` escaping)."""
    return "%" + value.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


class ReportStore:
    def __init__(self, db):
        self.db = db

    def max_id_sync(self) -> int:
        return self.db.run_sync("reports_max_id", lambda t: t.select_value(
            "SELECT MAX(id) FROM content_reports", default=None) or 0)

    async def add(self, report: dict) -> None:
        await self.db.run("add_content_report", lambda t: t.insert_rows(
            "content_reports", COLUMNS, [tuple(report.get(c) for c in COLUMNS)]))

    async def list(self, kind: str, *, offset: int, limit: int, newest_first: bool, before_id: int | None = None,
                   exact: dict | None = None, contains: dict | None = None,
                   known_rooms_only: bool = False) -> tuple[list[dict], int]:
        """A page of one kind's reports and how many match: ``exact`` columns equal, ``contains`` columns
        containing their value, ``before_id`` an inclusive upper bound on ids (not counted in the total);
        with ``known_rooms_only``, not the reports of rooms since deleted and purged."""
        where, args = ["kind = ?"], [kind]
        if known_rooms_only:
            where.append("room_id IN (SELECT room_id FROM rooms)")
        for column, value in (exact or {}).items():
            where.append(f"{column} = ?")
            args.append(value)
        for column, value in (contains or {}).items():
            where.append(f"{column} LIKE ? ESCAPE '!'")
            args.append(_like(value))
        condition = " AND ".join(where)
        paged = condition + (" AND id <= ?" if before_id is not None else "")
        page_args = [*args, *([before_id] if before_id is not None else []), limit, offset]

        def txn_fn(txn):
            total = txn.select_value(f"SELECT COUNT(*) FROM content_reports WHERE {condition}", args, default=0)
            rows = txn.select_all(f"SELECT {', '.join(COLUMNS)} FROM content_reports WHERE {paged} "
                                  f"ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT ? OFFSET ?", page_args)
            return [dict(zip(COLUMNS, row)) for row in rows], total

        return await self.db.run("list_content_reports", txn_fn)

    async def get(self, kind: str, report_id: int) -> dict | None:
        row = await self.db.run("get_content_report", lambda t: t.select_one(
            f"SELECT {', '.join(COLUMNS)} FROM content_reports WHERE kind = ? AND id = ?", (kind, report_id)))
        return None if row is None else dict(zip(COLUMNS, row))

    async def delete(self, kind: str, report_id: int) -> bool:
        return await self.db.run("delete_content_report", lambda t: t.execute(
            "DELETE FROM content_reports WHERE kind = ? AND id = ?", (kind, report_id)).rowcount > 0)

    async def room_labels(self, room_ids) -> dict[str, dict]:
        """Each room's current name, canonical alias and topic event JSON, by label."""
        room_ids = sorted(set(room_ids))
        if not room_ids:
            return {}
        marks = ", ".join("?" for _ in room_ids)
        types = ", ".join("?" for _ in ROOM_LABELS)
        rows = await self.db.run("content_report_rooms", lambda t: t.select_all(
            f"SELECT c.room_id, c.type, e.json FROM current_state c JOIN events e ON e.event_id = c.event_id "
            f"WHERE c.room_id IN ({marks}) AND c.type IN ({types}) AND c.state_key = ''",
            (*room_ids, *ROOM_LABELS)))
        labels: dict[str, dict] = {}
        for room_id, event_type, event_json in rows:
            labels.setdefault(room_id, {})[ROOM_LABELS[event_type]] = event_json
        return labels

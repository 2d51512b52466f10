"""The audit trail: security events, append-only (SQLite and PostgreSQL).

``audit_log`` rows are only ever inserted: a trigger on each engine refuses UPDATE and DELETE, so not even a
bug of ours rewrites history. Rows are ordered by ``id`` (allocated by the service, increasing).
"""

from __future__ import annotations

import json


def _append_only(txn) -> None:
    """Triggers refusing UPDATE and DELETE on audit_log (one statement each: no splitting on ';')."""
    if txn.engine_name == "postgresql":
        txn.execute("CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$")
        txn.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
        return
    for operation in ("UPDATE", "DELETE"):
        txn.execute(f"CREATE TRIGGER audit_log_no_{operation.lower()} BEFORE {operation} ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")


MIGRATIONS = [
    """
    CREATE TABLE audit_log (
        id BIGINT PRIMARY KEY,
        ts BIGINT NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT,
        target TEXT,
        origin TEXT,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_log_kind_id ON audit_log (kind, id);
    CREATE INDEX audit_log_actor_id ON audit_log (actor, id);
    CREATE INDEX audit_log_target_id ON audit_log (target, id);
    CREATE INDEX audit_log_ts ON audit_log (ts)
    """,
    _append_only,
]


def _row(row) -> dict:
    id_, ts, kind, actor, target, origin, details = row
    return {"id": id_, "ts": ts, "kind": kind, "actor": actor, "target": target, "origin": origin,
            "details": json.loads(details)}


class AuditStore:
    def __init__(self, db):
        self.db = db

    def max_id_sync(self) -> int:
        return self.db.run_sync("audit_max_id", lambda t: t.select_value("SELECT MAX(id) FROM audit_log",
                                                                         default=None) or 0)

    async def append(self, id_: int, ts: int, kind: str, actor: str | None, target: str | None,
                     origin: str | None, details: dict) -> None:
        """Only inserts, under an id of its own: ordered (one pipelined round trip on PostgreSQL)."""
        await self.db.run_ordered("audit_append", lambda t: t.execute(
            "INSERT INTO audit_log (id, ts, kind, actor, target, origin, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (id_, ts, kind, actor, target, origin, json.dumps(details, sort_keys=True))))

    async def query(self, q) -> list[dict]:
        """Rows matching ``q`` (a services.audit.AuditQuery), newest first, at most ``q.limit``."""
        where, args = [], []
        for column, value in (("kind", q.kind), ("actor", q.actor), ("target", q.target), ("origin", q.origin)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        for clause, value in (("ts >= ?", q.since_ts), ("ts <= ?", q.until_ts), ("id < ?", q.before_id)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = ("SELECT id, ts, kind, actor, target, origin, details FROM audit_log"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?")
        rows = await self.db.run("audit_query", lambda t: t.select_all(sql, (*args, q.limit)))
        return [_row(r) for r in rows]

"""Full-text index of room events for server-side search (client-server "Server Side Search").

``event_search`` holds the searchable text of each event (one key per
event: ``content.body``, ``content.name`` or ``content.topic``). On SQLite
with FTS5 a derived ``event_search_fts`` table (rowid = stream ordering) is
created at start-up and ranks with bm25; without FTS5 the words are matched
with LIKE, and on PostgreSQL with ILIKE (every result then ranks the same).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from homeserver.storage.database import Store

logger = logging.getLogger(__name__)

MIGRATIONS = [
    """
    CREATE TABLE event_search (
        stream_ordering BIGINT PRIMARY KEY,
        event_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        search_key TEXT NOT NULL,
        value TEXT NOT NULL
    );
    CREATE INDEX event_search_event ON event_search (event_id);
    CREATE INDEX event_search_room ON event_search (room_id, stream_ordering)
    """,
]

FTS_TABLE = "event_search_fts"


@dataclass(frozen=True)
class SearchHit:
    stream_ordering: int
    event_id: str
    room_id: str
    rank: float


@dataclass(frozen=True)
class SearchQuery:
    """Rows matching every word in the given rooms and keys, below ``before``; ``by_rank`` else newest first."""

    words: list[str]
    room_ids: list[str]
    keys: list[str]
    by_rank: bool
    before: int | None
    offset: int
    limit: int


def _escape_like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SearchStore(Store):
    def __init__(self, db):
        super().__init__(db)
        self.fts = False

    def prepare_sync(self) -> None:
        """At start-up: on SQLite, create (and fill) the FTS5 index when the library has FTS5."""
        if self.db.engine_name != "sqlite":
            return
        import sqlite3

        def txn_fn(txn):
            exists = txn.select_value("SELECT COUNT(*) FROM sqlite_master WHERE name = ?", (FTS_TABLE,))
            if not exists:
                txn.execute(f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(value)")
                txn.execute(f"INSERT INTO {FTS_TABLE} (rowid, value) SELECT stream_ordering, value FROM event_search")

        try:
            self.db.run_sync("prepare_search_index", txn_fn)
            self.fts = True
        except sqlite3.OperationalError as e:  # "no such module: fts5"
            logger.warning("SQLite has no FTS5 (%s): search falls back to LIKE", e)

    async def index(self, rows: list[tuple[int, str, str, str, str]]) -> None:
        """Index (stream_ordering, event_id, room_id, key, text) rows."""
        if not rows:
            return

        def txn_fn(txn):
            txn.executemany("INSERT INTO event_search (stream_ordering, event_id, room_id, search_key, value)"
                            " VALUES (?, ?, ?, ?, ?)", rows)
            if self.fts:
                txn.executemany(f"INSERT INTO {FTS_TABLE} (rowid, value) VALUES (?, ?)",
                                [(r[0], r[4]) for r in rows])

        await self.db.run_ordered("index_events", txn_fn)  # new rows only: nothing to contradict

    async def remove(self, room_id: str, event_id: str) -> None:
        """Forget a (redacted) event."""

        def txn_fn(txn):
            if self.fts:
                txn.execute(f"DELETE FROM {FTS_TABLE} WHERE rowid IN (SELECT stream_ordering FROM event_search"
                            " WHERE event_id = ? AND room_id = ?)", (event_id, room_id))
            txn.execute("DELETE FROM event_search WHERE event_id = ? AND room_id = ?", (event_id, room_id))

        await self.db.run("unindex_event", txn_fn)

    async def search(self, q: SearchQuery) -> tuple[list[SearchHit], int]:
        """One page of hits and the count of every matching row (whatever the page)."""
        if not q.words or not q.room_ids or not q.keys:
            return [], 0
        if self.fts:
            source = (f"{FTS_TABLE} f JOIN event_search s ON s.stream_ordering = f.rowid"
                      f" WHERE {FTS_TABLE} MATCH ?")
            args: list = [" ".join(f'"{w}"*' for w in q.words)]
            rank = "-bm25(" + FTS_TABLE + ")"
        else:
            op = "LOWER(s.value) LIKE ?" if self.db.engine_name == "sqlite" else "s.value ILIKE ?"
            source = "event_search s WHERE " + " AND ".join(f"{op} ESCAPE '\\'" for _ in q.words)
            args = [_escape_like(w) for w in q.words]
            rank = "1.0"
        source += (f" AND s.room_id IN ({','.join('?' * len(q.room_ids))})"
                   f" AND s.search_key IN ({','.join('?' * len(q.keys))})")
        args += q.room_ids + q.keys
        page, page_args = source, list(args)
        if q.before is not None:
            page += " AND s.stream_ordering < ?"
            page_args.append(q.before)
        order = "score DESC, s.stream_ordering DESC" if q.by_rank else "s.stream_ordering DESC"

        def txn_fn(txn):
            rows = txn.select_all(f"SELECT s.stream_ordering, s.event_id, s.room_id, {rank} AS score FROM {page}"
                                  f" ORDER BY {order} LIMIT ? OFFSET ?", page_args + [q.limit, q.offset])
            count = txn.select_value(f"SELECT COUNT(*) FROM {source}", args, default=0)
            return [SearchHit(r[0], r[1], r[2], float(r[3])) for r in rows], int(count)

        return await self.db.run("search_events", txn_fn)

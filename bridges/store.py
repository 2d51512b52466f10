"""The bridge's persistent mapping store: remote ids <-> Matrix rooms, events and ghosts.

SQLite by default, PostgreSQL when ``database`` is a ``postgresql://`` URL. The SQL is written
once with ``?`` placeholders; the PostgreSQL engine rewrites them. Calls run in one worker thread
(the store is small and its statements short), so the event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass
from typing import Any, Sequence

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS portals (
        remote_id TEXT PRIMARY KEY, room_id TEXT NOT NULL UNIQUE, title TEXT NOT NULL DEFAULT '',
        relay INTEGER NOT NULL DEFAULT 1)""",
    """CREATE TABLE IF NOT EXISTS messages (
        room_id TEXT NOT NULL, event_id TEXT NOT NULL, remote_id TEXT NOT NULL, kind TEXT NOT NULL,
        PRIMARY KEY (room_id, event_id))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_remote ON messages (kind, remote_id)",
    """CREATE TABLE IF NOT EXISTS ghosts (
        remote_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',
        avatar TEXT NOT NULL DEFAULT '')""",
    "CREATE TABLE IF NOT EXISTS memberships (room_id TEXT NOT NULL, user_id TEXT NOT NULL, "
    "PRIMARY KEY (room_id, user_id))",
    "CREATE TABLE IF NOT EXISTS management_rooms (room_id TEXT PRIMARY KEY, user_id TEXT NOT NULL)",
    # Appservice transactions are written here before they are acknowledged (the inbox), then
    # handled one event at a time, in order; ``done`` survives a restart.
    "CREATE TABLE IF NOT EXISTS transactions (txn_id TEXT PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS inbox (
        seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL,
        done INTEGER NOT NULL DEFAULT 0)""",
    "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@dataclass(frozen=True)
class Portal:
    remote_id: str
    room_id: str
    title: str
    relay: bool


class _Engine:
    """One connection used from one thread at a time."""

    def __init__(self, url: str):
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=False)
        else:
            import sqlite3

            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:") else url
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")

    def run(self, statements: Sequence[tuple[str, Sequence[Any]]], fetch: bool) -> list[tuple]:
        """Run ``statements`` in one transaction; the rows of the last one when ``fetch``."""
        cur = self.conn.cursor()
        rows: list[tuple] = []
        try:
            if not self.postgres:
                cur.execute("BEGIN")
            for sql, args in statements:
                cur.execute(sql.replace("?", "%s") if self.postgres else sql, tuple(args))
            if fetch:
                rows = [tuple(r) for r in cur.fetchall()]
            self.conn.commit() if self.postgres else cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection cannot roll back: it is replaced
                self.conn.rollback()
            raise
        return rows

    def broken(self) -> bool:
        return self.postgres and (self.conn.closed or getattr(self.conn, "broken", False))


class Store:
    """Every query the bridge makes; one method per question, no SQL outside this class."""

    def __init__(self, url: str):
        self._url = url
        self._engine: _Engine | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        self._engine = await asyncio.to_thread(_Engine, self._url)
        schema = [(s.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY") if self._engine.postgres else s, ())
                  for s in SCHEMA]
        await self._run(schema)

    async def close(self) -> None:
        """After the statement under way, if any (a cancelled caller's thread may still be running it)."""
        if self._engine is not None:
            def close() -> None:
                with self._lock:
                    self._engine.conn.close()

            await asyncio.to_thread(close)

    async def _run(self, statements: list[tuple[str, Sequence[Any]]], fetch: bool = False) -> list[tuple]:
        def call() -> list[tuple]:
            with self._lock:
                try:
                    return self._engine.run(statements, fetch)
                except Exception:
                    if not self._engine.broken():
                        raise
                    self._engine = _Engine(self._url)  # PostgreSQL restarted: one new connection, one retry
                    return self._engine.run(statements, fetch)

        return await asyncio.to_thread(call)

    async def _one(self, sql: str, *args: Any) -> tuple | None:
        rows = await self._run([(sql, args)], fetch=True)
        return rows[0] if rows else None

    # -- portals ------------------------------------------------------------------------------
    async def portal_by_remote(self, remote_id: str) -> Portal | None:
        row = await self._one("SELECT remote_id, room_id, title, relay FROM portals WHERE remote_id = ?", remote_id)
        return Portal(row[0], row[1], row[2], bool(row[3])) if row else None

    async def portal_by_room(self, room_id: str) -> Portal | None:
        row = await self._one("SELECT remote_id, room_id, title, relay FROM portals WHERE room_id = ?", room_id)
        return Portal(row[0], row[1], row[2], bool(row[3])) if row else None

    async def portals(self) -> list[Portal]:
        rows = await self._run([("SELECT remote_id, room_id, title, relay FROM portals ORDER BY remote_id", ())],
                               fetch=True)
        return [Portal(r[0], r[1], r[2], bool(r[3])) for r in rows]

    async def add_portal(self, portal: Portal) -> None:
        await self._run([("INSERT INTO portals (remote_id, room_id, title, relay) VALUES (?, ?, ?, ?)",
                          (portal.remote_id, portal.room_id, portal.title, int(portal.relay)))])

    async def update_portal(self, remote_id: str, *, title: str | None = None, relay: bool | None = None) -> None:
        if title is not None:
            await self._run([("UPDATE portals SET title = ? WHERE remote_id = ?", (title, remote_id))])
        if relay is not None:
            await self._run([("UPDATE portals SET relay = ? WHERE remote_id = ?", (int(relay), remote_id))])

    async def remove_portal(self, room_id: str) -> None:
        await self._run([("DELETE FROM portals WHERE room_id = ?", (room_id,)),
                         ("DELETE FROM memberships WHERE room_id = ?", (room_id,))])

    # -- messages (and every other event mapped to a remote id: kind says which) -------------
    async def add_message(self, room_id: str, event_id: str, remote_id: str, kind: str = "message") -> None:
        await self._run([("INSERT INTO messages (room_id, event_id, remote_id, kind) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT DO NOTHING", (room_id, event_id, remote_id, kind))])

    async def event_for(self, remote_id: str, kind: str = "message") -> tuple[str, str] | None:
        """(room_id, event_id) of a bridged remote item."""
        row = await self._one("SELECT room_id, event_id FROM messages WHERE kind = ? AND remote_id = ?",
                              kind, remote_id)
        return (row[0], row[1]) if row else None

    async def remote_for(self, room_id: str, event_id: str) -> tuple[str, str] | None:
        """(kind, remote_id) of a bridged Matrix event."""
        row = await self._one("SELECT kind, remote_id FROM messages WHERE room_id = ? AND event_id = ?",
                              room_id, event_id)
        return (row[0], row[1]) if row else None

    async def forget_remote(self, remote_id: str, kind: str) -> None:
        await self._run([("DELETE FROM messages WHERE kind = ? AND remote_id = ?", (kind, remote_id))])

    # -- ghosts and memberships ---------------------------------------------------------------
    async def ghost(self, remote_id: str) -> tuple[str, str, str] | None:
        """(user_id, name, avatar fingerprint) of a ghost already set up."""
        row = await self._one("SELECT user_id, name, avatar FROM ghosts WHERE remote_id = ?", remote_id)
        return (row[0], row[1], row[2]) if row else None

    async def save_ghost(self, remote_id: str, user_id: str, name: str, avatar: str) -> None:
        await self._run([("INSERT INTO ghosts (remote_id, user_id, name, avatar) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT (remote_id) DO UPDATE SET name = excluded.name, avatar = excluded.avatar",
                          (remote_id, user_id, name, avatar))])

    async def is_member(self, room_id: str, user_id: str) -> bool:
        return await self._one("SELECT 1 FROM memberships WHERE room_id = ? AND user_id = ?",
                               room_id, user_id) is not None

    async def set_member(self, room_id: str, user_id: str, member: bool) -> None:
        if member:
            sql = "INSERT INTO memberships (room_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
        else:
            sql = "DELETE FROM memberships WHERE room_id = ? AND user_id = ?"
        await self._run([(sql, (room_id, user_id))])

    async def management_room(self, room_id: str) -> str | None:
        row = await self._one("SELECT user_id FROM management_rooms WHERE room_id = ?", room_id)
        return row[0] if row else None

    async def add_management_room(self, room_id: str, user_id: str) -> None:
        await self._run([("INSERT INTO management_rooms (room_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                          (room_id, user_id))])

    # -- the appservice inbox -----------------------------------------------------------------
    async def accept_transaction(self, txn_id: str, events: list[dict]) -> bool:
        """Write a transaction's events to the inbox; False if this transaction was seen already."""
        if await self._one("SELECT 1 FROM transactions WHERE txn_id = ?", txn_id):
            return False
        statements = [("INSERT INTO transactions (txn_id) VALUES (?) ON CONFLICT DO NOTHING", (txn_id,))]
        statements += [("INSERT INTO inbox (event_id, event) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (event["event_id"], json.dumps(event))) for event in events]
        await self._run(statements)
        return True

    async def pending_events(self, limit: int = 100) -> list[tuple[int, dict]]:
        rows = await self._run([("SELECT seq, event FROM inbox WHERE done = 0 ORDER BY seq LIMIT ?", (limit,))],
                               fetch=True)
        return [(r[0], json.loads(r[1])) for r in rows]

    async def event_done(self, seq: int) -> None:
        await self._run([("UPDATE inbox SET done = 1, event = '{}' WHERE seq = ?", (seq,))])

    # -- cursors ------------------------------------------------------------------------------
    async def cursor(self, name: str) -> str | None:
        row = await self._one("SELECT value FROM cursors WHERE name = ?", name)
        return row[0] if row else None

    async def set_cursor(self, name: str, value: str) -> None:
        await self._run([("INSERT INTO cursors (name, value) VALUES (?, ?) "
                          "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))])

"""The database pool: named transactions run off the reactor thread.

Every storage module writes its SQL with ``?`` placeholders and runs it
through ``Database.run(name, fn, ...)`` where ``fn(txn, ...)`` is synchronous.
The engine (SQLite now) translates the dialect; nothing above storage sees SQL.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

logger = logging.getLogger(__name__)


class Txn:
    """A cursor inside one transaction, counting its round trips."""

    def __init__(self, cursor, translate: Callable[[str], str]):
        self._cursor = cursor
        self._translate = translate
        self.round_trips = 0
        self.after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, args: Sequence[Any] = ()) -> "Txn":
        self.round_trips += 1
        self._cursor.execute(self._translate(sql), tuple(args))
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self.round_trips += 1
            self._cursor.executemany(self._translate(sql), rows)

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self) -> list:
        return self._cursor.fetchall()

    def select_one(self, sql: str, args: Sequence[Any] = ()):
        return self.execute(sql, args).fetchone()

    def select_all(self, sql: str, args: Sequence[Any] = ()) -> list:
        return self.execute(sql, args).fetchall()

    def select_value(self, sql: str, args: Sequence[Any] = (), default=None):
        row = self.select_one(sql, args)
        return default if row is None or row[0] is None else row[0]

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class SqliteEngine:
    """SQLite in WAL mode, one connection on one dedicated thread (writes are serial anyway)."""

    name = "sqlite"

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []

    def threadpool_size(self) -> int:
        return 1

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
            self._connections.append(conn)
        return conn

    def begin(self, conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def commit(self, conn) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn) -> None:
        conn.execute("ROLLBACK")

    @staticmethod
    def translate(sql: str) -> str:
        return sql

    def close(self) -> None:
        for conn in self._connections:
            conn.close()
        self._connections.clear()


class Database:
    """Runs named transactions on the engine's thread pool."""

    def __init__(self, engine, reactor):
        self.engine = engine
        self._reactor = reactor
        size = engine.threadpool_size()
        self._pool = ThreadPool(minthreads=1, maxthreads=size, name="db")
        self._pool.start()
        self.txn_count = 0
        self.round_trips = 0
        self._closed = False

    @property
    def engine_name(self) -> str:
        return self.engine.name

    async def run(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run ``fn(txn, *args)`` in one transaction; commit, then run its after-commit hooks."""
        txn, result = await threads.deferToThreadPool(self._reactor, self._pool, self._run_sync, name, fn, args, kwargs)
        for hook in txn.after_commit:
            hook()
        return result

    def run_sync(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run a transaction on the calling thread (start-up, migrations and CLI tools only)."""
        return self._run_sync(name, fn, args, kwargs)[1]

    def _run_sync(self, name, fn, args, kwargs):
        conn = self.engine.connection()
        start = time.monotonic()
        for attempt in range(5):
            cursor = conn.cursor()
            txn = Txn(cursor, self.engine.translate)
            try:
                self.engine.begin(conn)
                result = fn(txn, *args, **kwargs)
                self.engine.commit(conn)
                break
            except Exception as e:
                try:
                    self.engine.rollback(conn)
                except Exception:
                    pass
                if attempt < 4 and _is_retryable(e):
                    logger.warning("Transaction %s retried after %s", name, e)
                    continue
                raise
            finally:
                cursor.close()
        self.txn_count += 1
        self.round_trips += txn.round_trips
        elapsed = (time.monotonic() - start) * 1000
        if elapsed > 500:
            logger.warning("Slow transaction %s: %.0fms", name, elapsed)
        return txn, result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.stop()
        self.engine.close()


def _is_retryable(e: Exception) -> bool:
    return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)


def open_engine(db_config):
    """Build the engine named by the ``database`` configuration."""
    if db_config.engine == "sqlite":
        return SqliteEngine(db_config.sqlite_path)
    raise ValueError(f"database: engine {db_config.engine!r} is not available")

"""The database pool: named transactions run off the reactor thread.

Every storage module writes its SQL with ``?`` placeholders and runs it
through ``Database.run(name, fn, ...)`` where ``fn(txn, ...)`` is synchronous.
The engine (SQLite or PostgreSQL) translates the dialect; nothing above
storage sees SQL.

PostgreSQL transactions run SERIALIZABLE: the store code is written as if
transactions ran one after another (as they do on SQLite), and PostgreSQL
guarantees exactly that, reporting any conflict as a serialization failure,
which is retried here. Two exceptions. A transaction that turns out to be a single SELECT runs outside any
transaction, in autocommit (one round trip instead of BEGIN, SELECT, COMMIT; Synapse's ``db_autocommit``): the
first run of a transaction name starts in autocommit, and at the first statement that is not the first SELECT the
work is thrown away and run again in a transaction, which that name then always gets (see ``Txn``). And is ``Database.run_ordered``: the writes of room events, which their
callers already order (one room's writes under its lock, one writer per stream), run READ COMMITTED, as
Synapse's do (its default is REPEATABLE READ). Under SERIALIZABLE, PostgreSQL's predicate locks cover whole
index pages, so two rooms' events written at once aborted each other (31 to 328 retries in one benchmark run
of 8 concurrent senders), each retry costing a second transaction and its COMMIT. These also run as one
pipeline (``PostgresEngine.pipeline``): a transaction that only writes costs one round trip, not one per
statement plus BEGIN and COMMIT. ``Database.run_grouped`` lets several rooms' event writes share one such
transaction (group commit across rooms).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import re
import select
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from twisted.internet import defer, threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from homeserver.errors import MatrixError

if TYPE_CHECKING:
    import sqlite3

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
GROUPED_IN_FLIGHT = 2  # run_grouped: transactions of one name under way at once
GROUPED_PARTS = 50  # run_grouped: parts in one transaction at most
CONNECT_TIMEOUT_S = 5  # opening a PostgreSQL connection: a request waits no longer for an unreachable server
SAFE_LOCALES = ("C", "POSIX", "C.UTF-8", "C.utf8")


class DatabaseSetupError(Exception):
    """The database cannot be used (unreachable, or unsafe encoding/collation): the server must not start."""


COPY_FROM_ROWS = 100


class NeedsTransaction(BaseException):
    """Raised by a :class:`Txn` in autocommit at its second statement, or a first that is not a SELECT: the
    work must run again in a transaction. A BaseException, so that no ``except Exception`` in a store swallows
    it."""


_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


def _is_select(sql: str) -> bool:
    """A SELECT, or a WITH (RECURSIVE) query that writes nothing."""
    head = sql.lstrip()[:6].upper()
    return head == "SELECT" or (head[:4] == "WITH" and _WRITES.search(sql) is None)


class Txn:
    """A cursor inside one transaction, counting its round trips (statements).

    With ``autocommit`` it runs outside any transaction, for work that is one SELECT: anything more raises
    :class:`NeedsTransaction` before it reaches the database. With ``pipeline`` (psycopg's), its statements are
    sent without waiting, and a result is read after a sync: every result before it is then read, in order, so
    the cursor's last one is its own. (psycopg only waits for a result when the cursor has none: one of an
    earlier statement, should the server have sent it before this one was sent, was taken for this one's,
    "the last operation didn't produce records (command status: INSERT 0 1)".)
    """

    def __init__(self, cursor, engine, autocommit: bool = False, pipeline=None):
        self._cursor = cursor
        self._engine = engine
        self._autocommit = autocommit
        self._pipeline = pipeline
        self._unsynced = False  # pipelined: statements sent whose results were not waited for yet
        self.statements = 0
        self.round_trips = 0
        self.after_commit: list[Callable[[], None]] = []

    def _check_autocommit(self, sql: str | None) -> None:
        if self._autocommit and (self.statements > 0 or sql is None or not _is_select(sql)):
            raise NeedsTransaction()

    def _sent(self) -> None:
        """One statement sent: a round trip, unless pipelined (then one for all those before a result is read)."""
        self.statements += 1
        if self._pipeline is not None:
            self._unsynced = True
        else:
            self.round_trips += 1

    def _results(self) -> None:
        if self._unsynced:
            self._unsynced = False
            self.round_trips += 1
            self._pipeline.sync()

    @property
    def engine_name(self) -> str:
        """``sqlite`` or ``postgresql``, for the rare migration that must differ (triggers)."""
        return self._engine.name

    def commit_lazily(self) -> None:
        """Let this transaction's COMMIT return before its writes reach the disk (PostgreSQL's
        ``synchronous_commit`` off, for this transaction only; as soon visible to others, but a crash of the
        database server may lose it): for state that is soon superseded anyway (presence). In a pipeline it costs
        no round trip; on SQLite (``synchronous=NORMAL`` already) nothing."""
        if self._engine.lazy_commit is not None:
            self.execute(self._engine.lazy_commit)

    def one_of(self, column: str, values: Sequence[Any]) -> tuple[str, list]:
        """SQL for ``column`` being one of ``values``, and its arguments: on PostgreSQL one array argument
        (``= ANY(?)``: the statement keeps one text whatever the number of values, which psycopg then parses
        once, not at every run, as it does for a long statement of many placeholders), else ``IN (?, ...)``."""
        if self._engine.name == "postgresql":
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> "Txn":
        self._check_autocommit(sql)
        self._sent()
        self._cursor.execute(self._engine.translate(sql), self._engine.adapt(args))
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [self._engine.adapt(r) for r in rows]
        if rows:
            self._check_autocommit(None)
            self._sent()
            self._cursor.executemany(self._engine.translate(sql), rows)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk-insert rows (PostgreSQL COPY, or one executemany on SQLite); for ``hexagone port-db``."""
        if rows:
            self._check_autocommit(None)
            self._sent()
            self._engine.copy_rows(self._cursor, table, columns, rows)

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """INSERT the rows: with COPY from :data:`COPY_FROM_ROWS` rows on (on PostgreSQL, a few times faster
        for thousands of rows; for a few rows, its extra round trip would cost more than it saves), except in a
        pipeline (which cannot hold a COPY, and sends the rows without waiting anyway)."""
        if len(rows) >= COPY_FROM_ROWS and self._pipeline is None:
            self.copy_rows(table, columns, rows)
        else:
            self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                             rows)

    def fetchone(self):
        self._results()
        return self._cursor.fetchone()

    def fetchall(self) -> list:
        self._results()
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
        self._results()
        return self._cursor.rowcount


class SqliteEngine:
    """SQLite in WAL mode, one connection on one dedicated thread (writes are serial anyway).

    ``sqlite3`` is imported here only: a server on PostgreSQL does not load it.
    """

    name = "sqlite"
    lazy_commit = None  # Txn.commit_lazily
    autocommit_reads = False  # a transaction is a local call, not a round trip
    transaction_round_trips = 0
    pipelines_ordered = False

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []

    def threadpool_size(self) -> int:
        return 1

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import sqlite3

            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
            self._connections.append(conn)
        yield conn

    def begin(self, conn, ordered: bool = False) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def start_autocommit(self, conn) -> None:
        raise NotImplementedError

    def commit(self, conn) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn) -> None:
        conn.execute("ROLLBACK")

    @staticmethod
    def translate(sql: str) -> str:
        return sql

    @staticmethod
    def adapt(args: Sequence[Any]) -> tuple:
        return tuple(args)

    @staticmethod
    def copy_rows(cursor, table: str, columns: Sequence[str], rows) -> None:
        marks = ", ".join("?" * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    @staticmethod
    def retryable(e: Exception, conn, committing: bool) -> bool:
        import sqlite3

        return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)

    @staticmethod
    def unstorable(e: Exception) -> bool:
        return False

    def close(self) -> None:
        for conn in self._connections:
            conn.close()
        self._connections.clear()


def _spoke_unasked(conn) -> bool:
    """Whether an idle connection has something to read (a select, no round trip): the server only writes
    to one when it ends it (a terminated backend's FATAL message, or end of file). Caught here, a lost
    connection costs nothing; found inside a pipelined transaction, whose errors arrive with its COMMIT's,
    it could not be told from one lost while committing, which is never retried."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class ConnectionPool:
    """The idle PostgreSQL connections of the database threads: a thread takes one for a transaction and
    gives it back after it.

    There are never more connections than database threads, so no thread ever waits for one: when none is
    idle, one is opened, and while the database server is down that fails at once (the request gets its
    error now rather than after a timeout). A connection given back broken is closed together with every
    idle one (they were most likely cut by the same restart), so the next transactions open fresh ones:
    the pool recovers by itself as soon as the database answers again.
    """

    def __init__(self, connect: Callable[[], Any], min_size: int):
        from psycopg.pq import TransactionStatus

        self._idle_status = TransactionStatus.IDLE
        self._connect = connect
        self._lock = threading.Lock()
        self._idle: list = [connect() for _ in range(min_size)]
        self._closed = False

    @contextlib.contextmanager
    def connection(self):
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and _spoke_unasked(conn):
            self._drop_with_idle(conn)
            conn = None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            self._give_back(conn)

    def _give_back(self, conn) -> None:
        healthy = not conn.closed and conn.info.transaction_status == self._idle_status
        with self._lock:
            if healthy and not self._closed:
                self._idle.append(conn)
                return
            if healthy:
                conn.close()  # the pool closed meanwhile
                return
        self._drop_with_idle(conn)

    def _drop_with_idle(self, conn) -> None:
        """Close a lost connection and every idle one, most likely cut by the same restart."""
        with self._lock:
            stale, self._idle = self._idle, []
        for c in [conn, *stale]:
            c.close()
        logger.warning("Lost a database connection: %d idle connections dropped, new ones will be opened",
                       len(stale))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PostgresEngine:
    """PostgreSQL through psycopg 3 and a :class:`ConnectionPool` of ``cp_min``..``cp_max`` connections
    (connections opened with a ``CONNECT_TIMEOUT_S`` timeout)."""

    name = "postgresql"
    lazy_commit = "SET LOCAL synchronous_commit = off"  # Txn.commit_lazily
    autocommit_reads = True
    transaction_round_trips = 2  # BEGIN and COMMIT
    pipelines_ordered = True  # run_ordered: BEGIN, the statements and COMMIT sent at once (see :meth:`pipeline`)

    def __init__(self, dsn: str, cp_min: int = 1, cp_max: int = 10):
        import psycopg

        self._psycopg = psycopg
        self._dsn = dsn
        self.cp_max = cp_max
        database = check_postgres_database(dsn)
        self._pool = ConnectionPool(self._open, min(cp_min, cp_max))
        logger.info("Using PostgreSQL database %s with %d to %d connections, %d transactions at once", database,
                    cp_min, cp_max, self.threadpool_size())

    def _open(self):
        """A connection without JIT compilation: it is for long analytical queries, and a short query whose
        worst case is costly (one that stops at its LIMIT, e.g. the user directory search) spent seconds
        compiling for a few milliseconds of work."""
        conn = self._psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        conn.execute("SET jit = off")
        conn.autocommit = False
        conn.isolation_level = self._psycopg.IsolationLevel.SERIALIZABLE
        return conn

    def threadpool_size(self) -> int:
        """Transactions run at once: ``cp_max``, but no more than the CPUs this process may use plus one. Python
        runs one thread at a time, so threads beyond that do not add work done: they overlap waits on the
        server, which one thread per CPU (PostgreSQL's) and one for the wait already cover, and they fight for
        the interpreter lock. Measured on 2 CPUs (joins workload, 600 joins): 194 joins/s with 10 threads,
        211 with 4, 232 with 3, 221 with 2; sends and syncs unchanged."""
        return max(1, min(self.cp_max, len(os.sched_getaffinity(0)) + 1))

    def connection(self):
        return self._pool.connection()

    def begin(self, conn, ordered: bool = False) -> None:
        """psycopg opens the transaction with the first statement, at the isolation level set here (a
        client-side setting: no round trip)."""
        levels = self._psycopg.IsolationLevel
        level = levels.READ_COMMITTED if ordered else levels.SERIALIZABLE
        if conn.autocommit:
            conn.autocommit = False
        if conn.isolation_level != level:
            conn.isolation_level = level

    def start_autocommit(self, conn) -> None:
        """Each statement its own transaction (a client-side setting too)."""
        if not conn.autocommit:
            conn.autocommit = True

    def commit(self, conn) -> None:
        conn.commit()

    @contextlib.contextmanager
    def pipeline(self, conn, cursor) -> Iterator[Any]:
        """A READ COMMITTED transaction in pipeline mode: its statements are sent without waiting for their
        results, which are read only where the work asks for one, and when the block ends, after
        :meth:`queue_commit`; a transaction that only writes is one round trip. BEGIN and COMMIT are sent as
        statements, in autocommit mode: psycopg would wait for the result of its own BEGIN."""
        if not conn.autocommit:
            conn.autocommit = True
        with conn.pipeline() as pipeline:
            cursor.execute(b"BEGIN ISOLATION LEVEL READ COMMITTED")
            try:
                yield pipeline
            except BaseException:
                # The failed statement's successors are read here, aborted, so that leaving the pipeline raises
                # nothing more (psycopg would log that second error: "error ignored terminating pipeline").
                with contextlib.suppress(Exception):
                    pipeline.sync()
                raise

    @staticmethod
    def queue_commit(cursor) -> None:
        cursor.execute(b"COMMIT")

    def rollback(self, conn) -> None:
        if not conn.closed:
            conn.rollback()  # also after a pipeline, whose transaction psycopg sees open (or failed)

    @staticmethod
    def translate(sql: str) -> str:
        return translate_for_postgres(sql)

    @staticmethod
    def adapt(args: Sequence[Any]) -> tuple:
        """Booleans are stored as INTEGER 0/1 (as SQLite does), never as PostgreSQL booleans."""
        return tuple(int(a) if isinstance(a, bool) else a for a in args)

    def copy_rows(self, cursor, table: str, columns: Sequence[str], rows) -> None:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(self.adapt(row))

    def retryable(self, e: Exception, conn, committing: bool) -> bool:
        """Serialization failures and deadlocks; a lost connection (the pool then drops it) unless the
        COMMIT itself was under way, when the transaction may or may not have committed."""
        errors = self._psycopg.errors
        if isinstance(e, (errors.SerializationFailure, errors.DeadlockDetected)):
            return True
        return isinstance(e, self._psycopg.OperationalError) and conn.closed and not committing

    def unstorable(self, e: Exception) -> bool:
        """A value PostgreSQL cannot hold: a NUL character in text, or ``\\u0000`` in JSON."""
        return isinstance(e, self._psycopg.errors.UntranslatableCharacter) or (
            isinstance(e, self._psycopg.DataError) and "NUL" in str(e))

    def close(self) -> None:
        self._pool.close()


def check_postgres_database(dsn: str) -> str:
    """Connect once and refuse a database whose encoding is not UTF8 or whose collation/ctype is not C.

    Matrix identifiers are case-sensitive and compared byte by byte; other collations
    order (and may even compare) them differently. Returns the database name.
    """
    import psycopg

    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        raise DatabaseSetupError(f"Cannot connect to PostgreSQL: {str(e).strip()}") from None
    with conn:
        cur = conn.execute("SELECT d.*, pg_encoding_to_char(d.encoding) AS encoding_name FROM pg_database d"
                           " WHERE d.datname = current_database()")
        info = dict(zip([c.name for c in cur.description], cur.fetchone()))
    name, encoding = info["datname"], info["encoding_name"]
    collation, ctype = info["datcollate"], info["datctype"]
    provider = info.get("datlocprovider", "c")
    if provider == "i":
        collation = f"ICU {info.get('daticulocale') or info.get('datlocale')}"
    elif provider == "b":
        collation = ctype = info.get("datlocale")
    if encoding != "UTF8" or collation not in SAFE_LOCALES or ctype not in SAFE_LOCALES:
        raise DatabaseSetupError(
            f"PostgreSQL database {name!r} has encoding {encoding}, collation {collation!r} and ctype "
            f"{ctype!r}; Hexagone needs encoding UTF8 with collation and ctype C, because Matrix "
            f"identifiers are case-sensitive and must sort byte by byte. Create the database with:\n"
            f"  CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';")
    return name


_DDL = re.compile(r"^\s*(CREATE|ALTER)\s+TABLE\b", re.IGNORECASE)
_DDL_TYPES = {"BLOB": "BYTEA", "REAL": "DOUBLE PRECISION"}
_DDL_TYPE_WORDS = re.compile(r"\b(BLOB|REAL)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def translate_for_postgres(sql: str) -> str:
    """``?`` -> ``%s`` outside literals and comments, ``%`` -> ``%%`` everywhere (psycopg scans all of it);
    in CREATE/ALTER TABLE, SQLite's BLOB and REAL become BYTEA and DOUBLE PRECISION."""
    ddl = bool(_DDL.match(sql))
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = sql.find(c, i + 1)
            while end != -1 and sql.startswith(c, end + 1):  # '' or "" inside the quotes
                end = sql.find(c, end + 2)
            end = n if end == -1 else end + 1
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("--", i) or sql.startswith("/*", i):
            end = sql.find("\n", i) if c == "-" else sql.find("*/", i + 2)
            end = n if end == -1 else end + (1 if c == "-" else 2)
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        else:
            j = i
            while j < n and sql[j] not in "'\"" and not sql.startswith("--", j) and not sql.startswith("/*", j):
                j += 1
            plain = sql[i:j].replace("%", "%%").replace("?", "%s")
            if ddl:
                plain = _DDL_TYPE_WORDS.sub(lambda m: _DDL_TYPES[m.group(1).upper()], plain)
            out.append(plain)
            i = j
    return "".join(out)


class Database:
    """Runs named transactions on a thread pool as large as the engine's connection pool."""

    def __init__(self, engine, reactor, on_transaction: Callable[[str, float], None] | None = None):
        self.engine = engine
        self._on_transaction = on_transaction  # (name, seconds) after each committed transaction (metrics)
        self._reactor = reactor
        size = engine.threadpool_size()
        self._pool = ThreadPool(minthreads=1, maxthreads=size, name="db")
        self._pool.start()
        self.txn_count = 0
        self.round_trips = 0  # statements (a pipeline's: its waits), the BEGIN and COMMIT of PostgreSQL transactions
        self.retries = 0
        self._closed = False
        self._transactional: set[str] = set()  # names of work seen to be more than one SELECT
        self._groups: dict[str, _Group] = {}  # run_grouped's work waiting, by name

    @property
    def engine_name(self) -> str:
        return self.engine.name

    async def run(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run ``fn(txn, *args)`` in one transaction; commit, then run its after-commit hooks."""
        return await self._run(name, fn, args, kwargs, False)

    async def run_ordered(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """:meth:`run` for a transaction that no concurrent transaction can contradict, because its caller
        orders every write it could conflict with (a room's events are written under the room's lock, by the
        one writer of the events stream) and it reads only rows no concurrent writer changes (state groups,
        the room's own rows), or because it only inserts rows under keys of their own (search index, push
        actions, a new user, an audit record), or because it is one statement that settles a conflict itself
        (an upsert keeping the later row). On PostgreSQL it runs READ COMMITTED, in one pipeline, and so never
        fails to serialize; on SQLite, where transactions do run one at a time, it is :meth:`run`."""
        return await self._run(name, fn, args, kwargs, True)

    async def run_grouped(self, name: str, fn: Callable[..., Any], *args) -> Any:
        """:meth:`run_ordered` for work that may share its transaction with other work of the same name (group
        commit: several rooms' events written by one transaction, one COMMIT): while
        :data:`GROUPED_IN_FLIGHT` transactions of that name are under way, the work waits, and the next
        transaction runs all the work waiting, in its order. Should that transaction fail, each part runs
        again in a transaction of its own, so that a part fails only for itself."""
        group = self._groups.setdefault(name, _Group())
        done: defer.Deferred = defer.Deferred()
        group.waiting.append((fn, args, done))
        if group.running < GROUPED_IN_FLIGHT:
            self._start_group(name, group)
        return await done

    def _start_group(self, name: str, group: "_Group") -> None:
        parts, group.waiting = group.waiting[:GROUPED_PARTS], group.waiting[GROUPED_PARTS:]
        group.running += 1
        defer.ensureDeferred(self._run_group(name, group, parts))

    async def _run_group(self, name: str, group: "_Group", parts: list) -> None:
        results: list = []
        if len(parts) > 1:
            try:
                results = await self._run(name, _run_parts, ([(fn, args) for fn, args, _ in parts],), {}, True)
            except Exception:
                results = []
        if not results:
            for fn, args, _ in parts:
                try:
                    results.append(await self._run(name, fn, args, {}, True))
                except Exception:
                    results.append(Failure())
        group.running -= 1
        if group.waiting and group.running < GROUPED_IN_FLIGHT:
            self._start_group(name, group)
        for (_, _, done), result in zip(parts, results):
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(result)

    async def _run(self, name, fn, args, kwargs, ordered: bool) -> Any:
        txn, result = await threads.deferToThreadPool(self._reactor, self._pool, self._run_sync, name, fn, args,
                                                      kwargs, ordered)
        for hook in txn.after_commit:
            hook()
        return result

    def run_sync(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Run a transaction on the calling thread (start-up, migrations and CLI tools only)."""
        return self._run_sync(name, fn, args, kwargs)[1]

    def _run_sync(self, name, fn, args, kwargs, ordered: bool = False):
        start = time.monotonic()
        attempt = 0
        autocommit = self.engine.autocommit_reads and not ordered and name not in self._transactional
        pipelined = ordered and self.engine.pipelines_ordered
        while True:
            attempt += 1
            committing = False
            with self.engine.connection() as conn:
                cursor = conn.cursor()
                try:
                    if autocommit:
                        try:
                            txn = Txn(cursor, self.engine, autocommit=True)
                            self.engine.start_autocommit(conn)
                            result = fn(txn, *args, **kwargs)
                            break
                        except NeedsTransaction:
                            self._transactional.add(name)
                            autocommit = False
                            self.round_trips += txn.round_trips  # the SELECT run before it, wasted
                    if pipelined:
                        with self.engine.pipeline(conn, cursor) as pipeline:  # errors are raised as it ends
                            txn = Txn(cursor, self.engine, pipeline=pipeline)
                            result = fn(txn, *args, **kwargs)
                            committing = True
                            self.engine.queue_commit(cursor)
                    else:
                        txn = Txn(cursor, self.engine)
                        self.engine.begin(conn, ordered)
                        result = fn(txn, *args, **kwargs)
                        committing = True
                        self.engine.commit(conn)
                    break
                except Exception as e:
                    _rollback_quietly(self.engine, conn)
                    if self.engine.unstorable(e):
                        raise MatrixError(400, "M_INVALID_PARAM", "Text with a NUL character cannot be stored") from e
                    if attempt >= MAX_ATTEMPTS or not self.engine.retryable(e, conn, committing):
                        raise
                    self.retries += 1
                    logger.info("Transaction %s retried (attempt %d) after %s", name, attempt, str(e).strip())
                finally:
                    cursor.close()
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** attempt)))
        self.txn_count += 1
        if pipelined:
            self.round_trips += txn.round_trips + 1  # BEGIN, what was not waited for yet, COMMIT
        else:
            self.round_trips += txn.round_trips + (0 if autocommit else self.engine.transaction_round_trips)
        elapsed = (time.monotonic() - start) * 1000
        logger.debug("Transaction %s: %d statements, %d attempts%s, %.2f ms", name, txn.statements, attempt,
                     ", autocommit" if autocommit else "", elapsed)
        if self._on_transaction is not None:
            self._on_transaction(name, elapsed / 1000)
        if elapsed > 500:
            logger.warning("Slow transaction %s: %.0fms (%d attempts)", name, elapsed, attempt)
        return txn, result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.stop()
        self.engine.close()


class _Group:
    """The work of one name :meth:`Database.run_grouped` holds: waiting, and the transactions under way."""

    def __init__(self):
        self.waiting: list[tuple[Callable[..., Any], tuple, defer.Deferred]] = []
        self.running = 0


def _run_parts(txn, parts: list[tuple[Callable[..., Any], tuple]]) -> list:
    return [fn(txn, *args) for fn, args in parts]


def _rollback_quietly(engine, conn) -> None:
    try:
        engine.rollback(conn)
    except Exception as e:  # the connection may be gone; the pool discards broken ones
        logger.debug("Rollback failed: %s", e)


def open_engine(db_config):
    """Build the engine named by the ``database`` configuration."""
    if db_config.engine == "sqlite":
        return SqliteEngine(db_config.sqlite_path)
    if db_config.engine == "postgresql":
        return PostgresEngine(db_config.pg_dsn, db_config.cp_min, db_config.cp_max)
    raise ValueError(f"database: engine {db_config.engine!r} is not available")


class Store:
    """The base of each domain's store: its SQL, run as named transactions on ``db``."""

    def __init__(self, db: Database):
        self.db = db

"""How ``homeserver/storage/database.py`` runs work on PostgreSQL: a single SELECT in autocommit (one round trip),
anything more in a SERIALIZABLE transaction (the work run again from the start when it turns out to be more than
one SELECT, and that name then always in a transaction), room-event writes (``run_ordered``) READ COMMITTED in one pipeline, and ``run_grouped`` work sharing a transaction.
SQLite runs everything in a transaction, with the same results.

On the database the suite runs on (SQLite, or PostgreSQL per HEXAGONE_TEST_DATABASE).
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure

from homeserver.config import parse_config
from homeserver.errors import MatrixError
from homeserver.storage.database import GROUPED_IN_FLIGHT, Database, open_engine
from tests.integration.harness import database_config_for_test
from tests.integration.inprocess import ThreadedMemoryReactor


@pytest.fixture
def db(tmp_path):
    config = parse_config({"server_name": "modes.example", "database": database_config_for_test(str(tmp_path))},
                          str(tmp_path / "homeserver.yaml"))
    database = Database(open_engine(config.database), reactor=None)
    database.run_sync("create", lambda t: t.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"))
    yield database
    database.close()


def _trips(db, name, fn):
    before = db.round_trips
    result = db.run_sync(name, fn)
    return result, db.round_trips - before


def _isolation(t):
    if t.engine_name == "sqlite":
        t.execute("SELECT 1")
        return None
    t.execute("SELECT 1")
    return t.select_value("SELECT current_setting('transaction_isolation')")


def test_one_select_is_one_round_trip_and_more_is_a_transaction(db):
    db.run_sync("fill", lambda t: t.execute("INSERT INTO kv (k, v) VALUES ('a', 1)"))
    value, trips = _trips(db, "read", lambda t: t.select_value("SELECT v FROM kv WHERE k = 'a'"))
    assert value == 1 and trips == 1
    two = "SELECT v FROM kv WHERE k = 'a'"
    result, trips = _trips(db, "read twice", lambda t: (t.select_value(two), t.select_value(two)))
    postgres = db.engine_name == "postgresql"
    # PostgreSQL: the first SELECT in autocommit, then both again in a transaction (BEGIN, COMMIT).
    assert result == (1, 1) and trips == (1 + 2 + 2 if postgres else 2)
    result, trips = _trips(db, "read twice", lambda t: (t.select_value(two), t.select_value(two)))
    assert result == (1, 1) and trips == (2 + 2 if postgres else 2)  # the name is known now


def test_work_run_again_in_a_transaction_writes_once_and_atomically(db):
    def read_then_write(t):
        seen = t.select_value("SELECT COUNT(*) FROM kv")
        try:  # a store's own broad except does not hide the switch to a transaction
            t.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (f"k{seen}", seen))
        except Exception:
            pytest.fail("the switch to a transaction was caught as an error")
        return seen

    assert db.run_sync("read then write", read_then_write) == 0
    assert db.run_sync("read then write", read_then_write) == 1
    assert db.run_sync("all", lambda t: t.select_all("SELECT k, v FROM kv ORDER BY k")) == [("k0", 0), ("k1", 1)]

    def write_then_fail(t):
        t.execute("INSERT INTO kv (k, v) VALUES ('lost', 0)")
        raise RuntimeError("after the write")

    with pytest.raises(RuntimeError):
        db.run_sync("write then fail", write_then_fail)  # a first statement that writes: never in autocommit
    assert db.run_sync("lost", lambda t: t.select_value("SELECT COUNT(*) FROM kv WHERE k = 'lost'")) == 0


def test_room_event_writes_run_read_committed_the_rest_serializable(db):
    if db.engine_name == "sqlite":
        assert db._run_sync("ordered", _isolation, (), {}, True)[1] is None
        return
    assert db.run_sync("isolation", _isolation) == "serializable"
    assert db._run_sync("isolation ordered", _isolation, (), {}, True)[1] == "read committed"
    assert db.run_sync("isolation", _isolation) == "serializable"  # the connection's level is set back


@pytest.fixture
def threaded_db(tmp_path):
    """A database whose threads hand results back to a fake reactor (``inprocess.ThreadedMemoryReactor``)."""
    config = parse_config({"server_name": "modes.example", "database": database_config_for_test(str(tmp_path))},
                          str(tmp_path / "homeserver.yaml"))
    reactor = ThreadedMemoryReactor()
    database = Database(open_engine(config.database), reactor=reactor)
    database.run_sync("create", lambda t: t.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"))
    yield database, reactor
    database.close()


def _put(t, key):
    t.execute("INSERT INTO kv (k, v) VALUES (?, 1)", (key,))
    return key


def _grouped(db, reactor, keys) -> list:
    """Each key's run_grouped outcome (its key, or its error), all started before the reactor turns."""
    outcomes = [ensureDeferred(db.run_grouped("put", _put, key)) for key in keys]
    reactor.run_until(lambda: all(d.called for d in outcomes))
    results = []
    for d in outcomes:
        d.addBoth(results.append)
    return results


def test_grouped_work_waiting_shares_one_transaction_and_a_failing_part_fails_alone(threaded_db):
    db, reactor = threaded_db
    first = [f"first {i}" for i in range(GROUPED_IN_FLIGHT)]  # these start at once, each alone
    before = db.txn_count
    assert _grouped(db, reactor, first + ["a", "b", "c"]) == first + ["a", "b", "c"]
    assert db.txn_count - before == GROUPED_IN_FLIGHT + 1  # the three waiting: one transaction

    # A part the database refuses (a key taken) among the waiting: the others are written, each alone.
    again = [f"again {i}" for i in range(GROUPED_IN_FLIGHT)]
    before = db.txn_count
    results = _grouped(db, reactor, again + ["d", "a", "e"])
    assert results[:GROUPED_IN_FLIGHT] + [results[-3], results[-1]] == again + ["d", "e"]
    assert isinstance(results[-2], Failure) and not isinstance(results[-2].value, MatrixError)
    assert db.txn_count - before == GROUPED_IN_FLIGHT + 2  # the failed group is not counted, d and e are
    keys = db.run_sync("keys", lambda t: [r[0] for r in t.select_all("SELECT k FROM kv ORDER BY k")])
    assert keys == sorted(first + again + ["a", "b", "c", "d", "e"])


def test_a_pipelined_transaction_is_one_round_trip_and_reads_on_demand(threaded_db):
    """PostgreSQL: room-event writes (run_ordered) are one pipeline; reading a result waits for what was sent."""
    db, _ = threaded_db

    def writes(t):
        t.execute("INSERT INTO kv (k, v) VALUES ('p', 1)")
        t.executemany("INSERT INTO kv (k, v) VALUES (?, ?)", [("q", 2), ("r", 3)])
        t.execute("UPDATE kv SET v = v + 1 WHERE k = 'p'")

    def read_then_write(t):
        total = t.select_value("SELECT SUM(v) FROM kv")
        t.execute("INSERT INTO kv (k, v) VALUES ('s', ?)", (total,))
        return total

    postgres = db.engine_name == "postgresql"
    before = db.round_trips
    db._run_sync("writes", writes, (), {}, True)
    assert db.round_trips - before == (1 if postgres else 3)
    before = db.round_trips
    assert db._run_sync("read then write", read_then_write, (), {}, True)[1] == 7
    assert db.round_trips - before == 2  # PostgreSQL: the SELECT, then the INSERT and COMMIT
    assert db.run_sync("s", lambda t: t.select_value("SELECT v FROM kv WHERE k = 's'")) == 7

    def fails(t):
        t.execute("INSERT INTO kv (k, v) VALUES ('t', 1)")
        t.execute("INSERT INTO kv (k, v) VALUES ('p', 1)")  # taken: the whole transaction is rolled back

    with pytest.raises(Exception) as raised:
        db._run_sync("fails", fails, (), {}, True)
    assert not isinstance(raised.value, MatrixError)
    assert db.run_sync("t", lambda t: t.select_value("SELECT COUNT(*) FROM kv WHERE k = 't'")) == 0
    assert db._run_sync("isolation ordered", _isolation, (), {}, True)[1] == (
        "read committed" if postgres else None)  # the connection is usable again


def test_a_pipelined_transaction_on_a_connection_the_server_ended_runs_on_a_new_one(db):
    """A connection terminated while idle in the pool (a restart, a failover) is found before a pipelined
    transaction is sent on it: its error would only come with the COMMIT's, and a connection lost while
    committing is never retried (the transaction may have committed)."""
    if db.engine_name == "sqlite":
        pytest.skip("SQLite has no connection a server could end")
    import psycopg

    pids = {db.run_sync("pid", lambda t: t.select_value("SELECT pg_backend_pid()"))}
    with psycopg.connect(db.engine._dsn, autocommit=True) as admin:
        for pid in pids:  # waits until the backend has exited, its FATAL message sent
            assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)
    db._run_sync("writes", _put, ("after the kill",), {}, True)
    assert db.run_sync("k", lambda t: t.select_value("SELECT v FROM kv WHERE k = 'after the kill'")) == 1
    assert db.retries == 0  # found in the pool, not by a failed transaction


def test_a_read_in_a_pipelined_transaction_gets_its_own_result_when_earlier_ones_came_first(db, caplog):
    """PostgreSQL sends a statement's results before it is asked (a pipeline's results are otherwise sent at a
    sync) once its output buffer is full: here, an INSERT ... RETURNING of 30 KB. Arrived before the SELECT
    after it was sent, they were taken for the SELECT's (psycopg waits for a result only when the cursor has
    none), and the SELECT got the INSERT's rows. And a failed pipelined transaction logs no second error."""
    import time

    def big_insert_then_read(t):
        t.execute("WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100)"
                  " INSERT INTO kv (k, v) SELECT 'big ' || n || ?, n FROM g RETURNING k", ("x" * 300,))
        time.sleep(0.05)  # the INSERT's rows are here before the SELECT is sent
        return t.select_value("SELECT COUNT(*) FROM kv WHERE k LIKE 'big %'")

    assert db._run_sync("big insert then read", big_insert_then_read, (), {}, True)[1] == 100

    def fails_then_reads(t):
        t.execute("INSERT INTO kv (k, v) VALUES ('dup', 1)")
        t.execute("INSERT INTO kv (k, v) VALUES ('dup', 1)")
        return t.select_value("SELECT 1")

    with pytest.raises(Exception) as raised:
        db._run_sync("fails then reads", fails_then_reads, (), {}, True)
    assert "duplicate key" in str(raised.value) or "UNIQUE constraint" in str(raised.value)
    assert not [r for r in caplog.records if "terminating" in r.getMessage()]


def test_the_user_directory_profile_upsert_and_a_changed_name_reindexing(tmp_path):
    """``UserDirectoryStore.set_profile``: a first name, or the same name again, is one upsert adding the name's
    words; a changed name re-indexes the user (the old name's words go), a null name included."""
    from homeserver.server import STORAGE_DOMAINS
    from homeserver.storage.schema import apply_migrations
    from homeserver.storage.user_directory import UserDirectoryStore

    config = parse_config({"server_name": "modes.example", "database": database_config_for_test(str(tmp_path))},
                          str(tmp_path / "homeserver.yaml"))
    reactor = ThreadedMemoryReactor()
    db = Database(open_engine(config.database), reactor=reactor)
    try:
        apply_migrations(db, STORAGE_DOMAINS)
        store = UserDirectoryStore(db)

        def run(name, avatar=None) -> tuple[set[str], tuple]:
            d = ensureDeferred(store.set_profile("@ada:remote.example", name, avatar))
            reactor.run_until(lambda: d.called)
            d.addErrback(lambda f: f.raiseException())
            words = db.run_sync("words", lambda t: {r[0] for r in t.select_all(
                "SELECT word FROM user_directory_words WHERE user_id = '@ada:remote.example'")})
            row = db.run_sync("row", lambda t: t.select_one(
                "SELECT display_name, avatar_url FROM user_directory_profiles WHERE user_id = '@ada:remote.example'"))
            return words, tuple(row)

        ids = {"ada", "remote", "example"}
        assert run("Ada Lovelace") == (ids | {"lovelace"}, ("Ada Lovelace", None))
        assert run("Ada Lovelace", "mxc://a/b") == (ids | {"lovelace"}, ("Ada Lovelace", "mxc://a/b"))
        assert run("Countess Byron") == (ids | {"countess", "byron"}, ("Countess Byron", None))
        assert run(None) == (ids, (None, None))
        assert run(None, "mxc://c/d") == (ids, (None, "mxc://c/d"))
    finally:
        db.close()

"""How ``homeserver/storage/database.py`` runs work on PostgreSQL: a single SELECT in autocommit (one round trip),
anything more in a SERIALIZABLE transaction (the work run again from the start when it turns out to be more than
one SELECT, and that name then always in a transaction), room-event writes (``run_ordered``) READ COMMITTED.
SQLite runs everything in a transaction, with the same results.

On the database the suite runs on (SQLite, or PostgreSQL per HEXAGONE_TEST_DATABASE).
"""

from __future__ import annotations

import pytest

from homeserver.config import parse_config
from homeserver.storage.database import Database, open_engine
from tests.integration.harness import database_config_for_test


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

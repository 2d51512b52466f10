"""Txn.insert_rows (homeserver/storage/database.py): a few rows as one INSERT per row, many with COPY on
PostgreSQL; both store exactly the same values, and a bad row fails the whole batch.

On the database the suite runs on (SQLite, or PostgreSQL per HEXAGONE_TEST_DATABASE).
"""

from __future__ import annotations

import pytest

from homeserver.config import parse_config
from homeserver.storage.database import COPY_FROM_ROWS, Database, open_engine
from tests.integration.harness import database_config_for_test

COLUMNS = ("id", "name", "flag", "note", "payload")


@pytest.fixture
def db(tmp_path):
    config = parse_config({"server_name": "bulk.example", "database": database_config_for_test(str(tmp_path))},
                          str(tmp_path / "homeserver.yaml"))
    database = Database(open_engine(config.database), reactor=None)
    database.run_sync("create", lambda t: t.execute(
        "CREATE TABLE bulk (id BIGINT PRIMARY KEY, name TEXT NOT NULL, flag INTEGER, note TEXT, payload BYTEA)"))
    yield database
    database.close()


def _rows(count: int, first: int = 0) -> list[tuple]:
    # What COPY's text format must escape: tabs, newlines, backslashes, and NULL next to "\N" as text.
    return [(i, f"ñame {i}\tcol\nline \\N \\", i % 2 == 0, None if i % 3 else "\\N", bytes([i % 256, 0, 10]))
            for i in range(first, first + count)]


def _stored(db) -> list[tuple]:
    return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in
            db.run_sync("read", lambda t: t.select_all(f"SELECT {', '.join(COLUMNS)} FROM bulk ORDER BY id"))]


@pytest.mark.parametrize("count", [1, COPY_FROM_ROWS - 1, COPY_FROM_ROWS, 3 * COPY_FROM_ROWS])
def test_a_few_rows_or_many_are_stored_alike(db, count):
    rows = _rows(count)
    db.run_sync("insert", lambda t: t.insert_rows("bulk", COLUMNS, rows))
    assert _stored(db) == [(i, name, int(flag), note, payload) for i, name, flag, note, payload in rows]


@pytest.mark.parametrize("count", [2, 2 * COPY_FROM_ROWS])
def test_a_duplicate_key_fails_the_whole_batch(db, count):
    db.run_sync("insert", lambda t: t.insert_rows("bulk", COLUMNS, _rows(1)))
    with pytest.raises(Exception):
        db.run_sync("insert", lambda t: t.insert_rows("bulk", COLUMNS, _rows(count, first=1) + _rows(1)))
    assert [r[0] for r in _stored(db)] == [0]

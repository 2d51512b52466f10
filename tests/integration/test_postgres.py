"""The server on PostgreSQL: a real server on a fresh database, restarts, and the start-up checks.

Runs whatever ``HEXAGONE_TEST_DATABASE`` says (PostgreSQL at the local default otherwise);
skipped when no PostgreSQL server answers.
"""

from __future__ import annotations

import psycopg
import pytest

from homeserver.storage.database import translate_for_postgres
from tests.integration import pg
from tests.integration.harness import hexagone_cli, q

pytestmark = pytest.mark.skipif(not pg.available(), reason="no PostgreSQL server answers")


def query(dbname: str, sql: str, args=()) -> list:
    with psycopg.connect(pg.database_url(dbname)) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def pg_server(homeserver_factory):
    """A server on its own new PostgreSQL database: (server, database name)."""
    name = pg.create_database()
    return homeserver_factory(database=pg.database_section(name)), name


def test_server_runs_on_postgresql_and_keeps_history_across_restart(pg_server):
    server, dbname = pg_server
    alice = server.register()
    bob = server.register()
    room = alice.create_room(name="On PostgreSQL", topic="C collation", preset="public_chat")
    bob.join(room)
    sent = [alice.send(room, f"message {i} 100% ?") for i in range(30)]
    alice.put_state(room, "m.room.topic", {"topic": "it's 'quoted' and 50% done?"})
    event, since = bob.timeline_until(room, lambda e: e["event_id"] == sent[-1])
    assert event["content"]["body"] == "message 29 100% ?"

    stored = query(dbname, "SELECT COUNT(*) FROM events WHERE room_id = %s AND type = 'm.room.message'", (room,))
    assert stored == [(30,)]

    server.stop()
    server.start()
    again = server.login(bob.user_id)
    initial = again.sync(filter={"room": {"timeline": {"limit": 50}}})
    timeline = initial["rooms"]["join"][room]["timeline"]["events"]
    assert [e["event_id"] for e in timeline if e["type"] == "m.room.message"] == sent
    status, topic = again.state(room, "m.room.topic")
    assert status == 200 and topic == {"topic": "it's 'quoted' and 50% done?"}
    history = again.messages(room, dir="b", limit=100)["chunk"]
    assert [e["event_id"] for e in history if e["type"] == "m.room.message"] == sent[::-1]

    # the stream carries on after the restart: a new message arrives after the old token
    new_id = alice.send(room, "after restart")  # alice's token survived the restart too
    event, _ = bob.timeline_until(room, lambda e: e["type"] == "m.room.message", since=since)
    assert event["event_id"] == new_id


def test_identifiers_compare_and_sort_byte_by_byte(pg_server):
    """C collation: aliases differing only in case are distinct, and sort as SQLite (and Python) sort them."""
    server, _ = pg_server
    alice = server.register()
    room = alice.create_room()
    suffix = f"{alice.user_id.split(':')[0][1:]}:test.local"
    aliases = [f"#{name}{suffix}" for name in ("beta", "Beta", "alpha", "Zeta", "_x", "été")]
    for alias in aliases:
        alice.ok("PUT", f"/directory/room/{q(alias)}", {"room_id": room})
    status, resp = alice.request("PUT", f"/directory/room/{q(aliases[1])}", {"room_id": room})
    assert status == 409 and resp["errcode"] == "M_UNKNOWN"
    listed = alice.ok("GET", f"/rooms/{q(room)}/aliases")["aliases"]
    assert listed == sorted(aliases)
    assert listed.index(aliases[3]) < listed.index(aliases[2])  # "Z" before "a"


def test_lost_connections_are_replaced_transparently(pg_server):
    """Connections killed under the server (a PostgreSQL restart, a failover) cost no request."""
    server, dbname = pg_server
    alice = server.register()
    room = alice.create_room()
    with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
        killed = conn.execute(  # each waited for until it has exited (its FATAL message sent)
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchall()
    assert killed and all(ok for (ok,) in killed)
    sent = [alice.send(room, f"after the kill {i}") for i in range(5)]
    history = alice.messages(room, dir="b", limit=10)["chunk"]
    assert [e["event_id"] for e in history if e["type"] == "m.room.message"] == sent[::-1]


def _refused_start(homeserver_factory, database: dict) -> str:
    server = homeserver_factory(start=False)
    server.reconfigure(database=database)
    r = hexagone_cli("run", "--config", server.config_path, cwd=server.dir, timeout=60)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr


def test_non_c_collation_is_refused_at_start(homeserver_factory):
    try:
        name = pg.create_database("ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    except psycopg.Error as e:
        pytest.skip(f"this PostgreSQL cannot make an ICU database: {e}")
    err = _refused_start(homeserver_factory, pg.database_section(name))
    assert f"PostgreSQL database '{name}'" in err
    assert "encoding UTF8" in err and "collation 'ICU en-US'" in err
    assert "LC_COLLATE 'C'" in err  # says how to make a usable one
    assert query(name, "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]  # nothing written


def test_non_utf8_encoding_is_refused_at_start(homeserver_factory):
    name = pg.create_database("ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
    err = _refused_start(homeserver_factory, pg.database_section(name))
    assert f"PostgreSQL database '{name}' has encoding LATIN1, collation 'C' and ctype 'C'" in err


def test_unreachable_database_is_a_clear_error(homeserver_factory):
    section = pg.database_section("hexagone_test_missing")
    section["args"]["dbname"] = "hexagone_no_such_database"
    err = _refused_start(homeserver_factory, section)
    assert "Cannot connect to PostgreSQL" in err and "hexagone_no_such_database" in err


@pytest.mark.parametrize("sql, expected", [
    ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
    ("SELECT a FROM t WHERE b LIKE '%?%' AND c = ?", "SELECT a FROM t WHERE b LIKE '%%?%%' AND c = %s"),
    ("SELECT 'it''s ?', \"odd?col\" FROM t WHERE x = ?", "SELECT 'it''s ?', \"odd?col\" FROM t WHERE x = %s"),
    ("SELECT a % 2 FROM t -- why?\nWHERE b = ?", "SELECT a %% 2 FROM t -- why?\nWHERE b = %s"),
    ("SELECT /* ? */ a FROM t WHERE b = ?", "SELECT /* ? */ a FROM t WHERE b = %s"),
    ("CREATE TABLE t (a BLOB, b REAL, c TEXT DEFAULT 'BLOB')",
     "CREATE TABLE t (a BYTEA, b DOUBLE PRECISION, c TEXT DEFAULT 'BLOB')"),
    ("SELECT real_name, blob FROM t", "SELECT real_name, blob FROM t"),
])
def test_placeholder_translation(sql, expected):
    assert translate_for_postgres(sql) == expected

"""``hexagone port-db``: a SQLite server's data moved to PostgreSQL, and the server carrying on there.

A server on SQLite is filled over HTTP, stopped, ported, and started again on
PostgreSQL: the same clients see the same rooms, history, state and devices. An
interrupted port continues when rerun; mismatching row counts fail the port.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import psycopg
import pytest
import yaml

from homeserver.storage.porting import tables_from_migrations
from tests.integration import pg
from tests.integration.harness import REPO_ROOT, hexagone_cli, q

needs_postgres = pytest.mark.skipif(not pg.available(), reason="no PostgreSQL server answers")

MESSAGES = 120
BATCH = 50


def port_db(server, url: str, *extra: str) -> subprocess.CompletedProcess:
    return hexagone_cli("port-db", "--config", server.config_path, "--to", url, *extra, cwd=server.dir, timeout=300)


def target_rows(dbname: str, sql: str, args=()) -> list:
    with psycopg.connect(pg.database_url(dbname)) as conn:
        return conn.execute(sql, args).fetchall()


def _populate(server) -> dict:
    """Users, devices, rooms, messages, state and account data; returns what the clients saw."""
    alice, bob, carol = server.register(), server.register(), server.register()
    phone = server.login(alice.user_id, initial_device_display_name="Alice's phone")
    alice.ok("PUT", f"/devices/{q(alice.device_id)}", {"display_name": "Alice's laptop"})
    alice.ok("PUT", f"/user/{q(alice.user_id)}/account_data/org.example.settings", {"theme": "dark"})
    filter_id = alice.ok("POST", f"/user/{q(alice.user_id)}/filter", {"room": {"timeline": {"limit": 5}}})["filter_id"]
    room = alice.create_room(preset="public_chat", name="Ported", topic="before the move")
    alias = f"#ported{alice.user_id.split(':')[0][1:]}:test.local"
    alice.ok("PUT", f"/directory/room/{q(alias)}", {"room_id": room})
    bob.join(room)
    sent = [(alice if i % 3 else bob).send(room, f"history {i}") for i in range(MESSAGES)]
    alice.put_state(room, "m.room.topic", {"topic": "after many messages"})
    private = alice.create_room(preset="private_chat", name="Private")
    alice.invite(private, carol)
    phone.send(private, "from the phone")
    return {"alice": alice, "bob": bob, "carol": carol, "room": room, "private": private, "alias": alias,
            "sent": sent, "filter_id": filter_id, "devices": alice.ok("GET", "/devices")["devices"]}


def test_tables_listed_from_migrations():
    domains = {
        "a": ["CREATE TABLE one (x TEXT); CREATE INDEX one_x ON one (x); CREATE TABLE two (y TEXT)",
              "ALTER TABLE two RENAME TO deux; create table if not exists three (z BIGINT)"],
        "b": ["CREATE TABLE four (w TEXT); INSERT INTO four (w) VALUES ('CREATE TABLE no')",
              "DROP TABLE one; ALTER TABLE four ADD COLUMN v TEXT"],
    }
    assert tables_from_migrations(domains) == ["deux", "three", "four"]


@pytest.fixture(scope="module")
def sqlite_server(homeserver_factory):
    """A stopped server whose SQLite database holds _populate's data: (server, what was seen)."""
    server = homeserver_factory(start=False)
    server.reconfigure(database={"name": "sqlite3", "args": {"database": os.path.join(server.dir, "homeserver.db")}})
    server.start()
    seen = _populate(server)
    server.stop()
    return server, seen


def _message_ids(user, room: str) -> list[str]:
    chunk = user.messages(room, dir="b", limit=MESSAGES + 50)["chunk"]
    return [e["event_id"] for e in chunk if e["type"] == "m.room.message"][::-1]


@needs_postgres
def test_port_then_run_on_postgresql(sqlite_server):
    server, seen = sqlite_server
    name = pg.create_database()
    r = port_db(server, pg.database_url(name), "--batch-size", str(BATCH))
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line.split()[1:] for line in r.stdout.split("Port complete")[0].splitlines()
             if line.strip()}
    assert lines["table"] == ["sqlite", "postgresql"]
    assert lines["users"] == ["3", "3", "ok"] and lines["events"][2] == "ok"
    assert int(lines["events"][0]) > MESSAGES
    assert "events: 0/" in r.stderr and "(100%)" in r.stderr  # a progress bar for the long table
    assert target_rows(name, "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'port_db_progress'") == [(0,)]
    section = yaml.safe_load(r.stdout.split("then start the server:", 1)[1])["database"]
    assert section["name"] == "psycopg2" and section["args"]["dbname"] == name

    server.reconfigure(database=section)  # what the operator does next
    server.start()
    alice = server.login(seen["alice"].user_id, seen["alice"].password)
    assert set(alice.ok("GET", "/joined_rooms")["joined_rooms"]) == {seen["room"], seen["private"]}
    assert _message_ids(alice, seen["room"]) == seen["sent"]
    assert alice.state(seen["room"], "m.room.topic") == (200, {"topic": "after many messages"})
    assert server.request("GET", f"/directory/room/{q(seen['alias'])}")[1]["room_id"] == seen["room"]
    devices = {d["device_id"]: d.get("display_name") for d in alice.ok("GET", "/devices")["devices"]}
    assert {d["device_id"]: d.get("display_name") for d in seen["devices"]}.items() <= devices.items()
    assert alice.ok("GET", f"/user/{q(alice.user_id)}/account_data/org.example.settings") == {"theme": "dark"}
    assert alice.ok("GET", f"/user/{q(alice.user_id)}/filter/{seen['filter_id']}") == \
        {"room": {"timeline": {"limit": 5}}}

    bob = seen["bob"]  # his access token came along
    invites = seen["carol"].sync()["rooms"]["invite"]
    assert seen["private"] in invites
    since = bob.sync()["next_batch"]
    new_id = alice.send(seen["room"], "first message on PostgreSQL")
    event, _ = bob.timeline_until(seen["room"], lambda e: e["type"] == "m.room.message", since=since)
    assert event["event_id"] == new_id
    server.stop()
    server.reconfigure(database={"name": "sqlite3", "args": {"database": os.path.join(server.dir, "homeserver.db")}})


def _start_port(server, url: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "homeserver.cli", "port-db", "--config", server.config_path,
                             "--to", url, "--batch-size", "1"], cwd=server.dir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_midway(proc: subprocess.Popen, name: str, table: str, mid_table: bool) -> dict:
    """SIGKILL the port once ``table`` is part-copied (``mid_table``) or done; returns the progress then."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            rows = target_rows(name, "SELECT table_name, copied, done FROM port_db_progress WHERE table_name = %s",
                               (table,))
        except psycopg.errors.UndefinedTable:
            rows = []
        if rows and (rows[0][1] > 0 if mid_table else rows[0][2]):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            progress = target_rows(name, "SELECT table_name, copied, done FROM port_db_progress")
            return {t: (copied, bool(done)) for t, copied, done in progress}
        time.sleep(0.002)
    proc.kill()
    pytest.fail("the port finished (or hung) before it could be interrupted")


@needs_postgres
def test_interrupted_port_resumes(sqlite_server):
    server, _ = sqlite_server
    name = pg.create_database()
    url = pg.database_url(name)
    progress = _kill_midway(_start_port(server, url), name, "events", mid_table=True)
    copied, finished = progress["events"]
    source = sqlite3.connect(os.path.join(server.dir, "homeserver.db"))
    source_ids = [r[0] for r in source.execute("SELECT event_id FROM events ORDER BY stream_ordering")]
    assert 0 < copied < len(source_ids) and not finished  # killed inside the events table
    done = {table for table, (_, finished) in progress.items() if finished}
    assert {"users", "devices", "access_tokens", "rooms"} <= done

    r = port_db(server, url, "--batch-size", str(BATCH))
    assert r.returncode == 0, r.stderr
    assert "Resuming an interrupted port." in r.stderr
    assert all(f"{table}: {progress[table][0]} rows copied earlier" in r.stderr for table in done)
    assert "MISMATCH" not in r.stdout
    assert [r[0] for r in target_rows(name, "SELECT event_id FROM events ORDER BY stream_ordering")] == source_ids
    assert target_rows(name, "SELECT json FROM events ORDER BY stream_ordering") == \
        list(source.execute("SELECT json FROM events ORDER BY stream_ordering"))
    source.close()


@needs_postgres
def test_mismatching_counts_fail_the_port(sqlite_server):
    server, _ = sqlite_server
    name = pg.create_database()
    progress = _kill_midway(_start_port(server, pg.database_url(name)), name, "users", mid_table=False)
    assert progress["users"] == (3, True)
    with psycopg.connect(pg.database_url(name)) as conn:  # a row the source does not have
        conn.execute("INSERT INTO users (user_id, creation_ts) VALUES ('@intruder:test.local', 0)")
    r = port_db(server, pg.database_url(name))
    assert r.returncode == 1
    assert [line.split() for line in r.stdout.splitlines() if line.startswith("users ")] == \
        [["users", "3", "4", "MISMATCH"]]
    assert "Row counts differ" in r.stderr
    assert target_rows(name, "SELECT COUNT(*) FROM port_db_progress")[0][0] > 0  # kept for a rerun


@needs_postgres
def test_port_refuses_a_live_database(sqlite_server):
    server, _ = sqlite_server
    name = pg.create_database()
    assert port_db(server, pg.database_url(name)).returncode == 0
    again = port_db(server, pg.database_url(name))
    assert again.returncode == 1
    assert "already holds a Hexagone database" in again.stderr


@needs_postgres
def test_port_refuses_bad_targets_and_sources(sqlite_server, homeserver_factory):
    server, _ = sqlite_server
    r = port_db(server, "mysql://root@127.0.0.1/db")
    assert r.returncode == 1 and "--to must be a postgresql:// URL" in r.stderr

    latin = pg.create_database("ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
    r = port_db(server, pg.database_url(latin))
    assert r.returncode == 1 and "has encoding LATIN1" in r.stderr and "Traceback" not in r.stderr

    on_pg = homeserver_factory(start=False, database=pg.database_section(pg.create_database()))
    r = port_db(on_pg, pg.database_url(pg.create_database()))
    assert r.returncode == 1 and "copies a SQLite database" in r.stderr

    fresh = homeserver_factory(start=False)
    fresh.reconfigure(database={"name": "sqlite3", "args": {"database": os.path.join(fresh.dir, "none.db")}})
    r = port_db(fresh, pg.database_url(pg.create_database()))
    assert r.returncode == 1 and "No SQLite database at" in r.stderr

    sqlite3.connect(os.path.join(fresh.dir, "none.db")).execute("CREATE TABLE other (x TEXT)")
    r = port_db(fresh, pg.database_url(pg.create_database()))
    assert r.returncode == 1 and "not a Hexagone database" in r.stderr

    with sqlite3.connect(os.path.join(server.dir, "homeserver.db")) as db:  # as if made by an older version
        db.execute("UPDATE schema_versions SET version = version - 1 WHERE domain = 'events'")
    try:
        r = port_db(server, pg.database_url(pg.create_database()))
        assert r.returncode == 1 and "events (at " in r.stderr and "Start the server on it once" in r.stderr
    finally:
        with sqlite3.connect(os.path.join(server.dir, "homeserver.db")) as db:
            db.execute("UPDATE schema_versions SET version = version + 1 WHERE domain = 'events'")

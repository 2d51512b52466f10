"""The database goes away under load: PostgreSQL restarted, the disk full.

While the database cannot be written, requests are answered at once with an
error (5xx, ``M_UNKNOWN``), never left hanging, and the server stays up; once
the database is back, the same process serves again without a restart and
nothing acknowledged is lost or half-written.

The PostgreSQL restart runs in the PostgreSQL pass of the suite only, on a
private cluster of its own (never the shared server); the full disk (a tiny
tmpfs holding a SQLite database) in the SQLite pass only.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import tempfile
import time

import pytest

from tests.integration import pg
from tests.integration.faults import Answer, Senders, check_room_intact
from tests.integration.harness import free_port, q

ON_POSTGRES = os.environ.get("HEXAGONE_TEST_DATABASE", "").startswith("postgresql://")
ANSWER_WITHIN_S = 15.0  # the longest an error answer may take while the database is gone
RECOVERY_DEADLINE_S = 30.0


def assert_clean_failures(failures: list[Answer]) -> None:
    """Every request that failed got an HTTP answer in time: a 5xx with an M_UNKNOWN JSON body."""
    for f in failures:
        assert f.status is not None and f.status >= 500, f
        assert isinstance(f.body, dict) and f.body.get("errcode") == "M_UNKNOWN", f
        assert f.seconds < ANSWER_WITHIN_S, f


def wait_until(condition, deadline_s: float, what: str) -> float:
    """Poll ``condition()`` until it is true; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < deadline_s, f"{what} not within {deadline_s}s"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def private_postgres():
    if not ON_POSTGRES:
        pytest.skip("runs once, in the PostgreSQL pass of the suite (HEXAGONE_TEST_DATABASE), "
                    "on a private cluster of its own")
    reason = pg.PrivateCluster.available()
    if reason:
        pytest.skip(f"no private PostgreSQL cluster: {reason}")
    cluster = pg.PrivateCluster(free_port())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def test_postgres_restart_under_load(homeserver_factory, private_postgres):
    server = homeserver_factory(database=private_postgres.create_database())
    alice, bob = server.register(), server.register()
    room_id = alice.create_room(preset="public_chat", power_level_content_override={"state_default": 0})
    bob.join(room_id)
    with Senders([alice, bob], room_id, timeout_s=ANSWER_WITHIN_S + 15) as load:
        load.wait_acked(20)
        private_postgres.stop()
        down = time.monotonic()
        wait_until(lambda: len(load.failures()) >= 8, RECOVERY_DEADLINE_S, "requests failing")
        status, body = bob.request("GET", "/sync", params={"timeout": 0}, timeout=ANSWER_WITHIN_S + 15)
        assert server.process.poll() is None, "the server died with its database"
        private_postgres.start()
        outage_s = time.monotonic() - down
        acked = len(load.acked)
        recovery_s = wait_until(lambda: len(load.acked) >= acked + 10, RECOVERY_DEADLINE_S, "sends succeeding")
    assert_clean_failures(load.failures() + [Answer(status, body, 0)])
    counts = check_room_intact(load, bob)
    private_postgres.stop()
    server.stop()  # SIGTERM with the database gone: a clean exit all the same, in time
    print(f"PostgreSQL stopped for {outage_s:.1f}s under load: {len(load.failures())} requests failed cleanly; "
          f"sends succeed again {recovery_s:.2f}s after it is back (startup included); {counts}")


@pytest.fixture
def tiny_disk():
    """A mounted 8 MB tmpfs (root only), unmounted afterwards."""
    if ON_POSTGRES:
        pytest.skip("runs once, in the SQLite pass of the suite (a SQLite database on a tiny file system)")
    path = tempfile.mkdtemp(prefix="hexagone-full-")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", path], capture_output=True, text=True)
    if result.returncode != 0:
        os.rmdir(path)
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)
        os.rmdir(path)


def fill(path: str) -> str:
    """Fill the file system holding ``path`` with one file; returns its name."""
    filler = os.path.join(path, "filler")
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(chunk[:size])
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


def test_disk_full(homeserver_factory, tiny_disk):
    """A SQLite database on a full disk: writes refused with an error, reads served, the server up; once space
    is freed, writes work again in the same process and the database passes PRAGMA integrity_check."""
    db_path = os.path.join(tiny_disk, "homeserver.db")
    server = homeserver_factory(database={"name": "sqlite3", "args": {"database": db_path}})
    alice, bob = server.register(), server.register()
    room_id = alice.create_room(preset="public_chat", power_level_content_override={"state_default": 0})
    bob.join(room_id)
    with Senders([alice, bob], room_id, timeout_s=ANSWER_WITHIN_S + 15) as load:
        load.wait_acked(10)
        filler = fill(tiny_disk)
        wait_until(lambda: len(load.failures()) >= 20, RECOVERY_DEADLINE_S, "writes refused")
        assert server.process.poll() is None, "the server died of a full disk"
        status, _ = bob.request("GET", f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 5})
        refused = len(load.failures())
        os.remove(filler)
        acked = len(load.acked)
        recovery_s = wait_until(lambda: len(load.acked) >= acked + 10, RECOVERY_DEADLINE_S, "writes succeeding")
    assert status == 200, "reads fail on a full disk"
    assert_clean_failures(load.failures())
    counts = check_room_intact(load, bob)
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    server.stop()
    print(f"disk full: {refused} writes refused cleanly; writes succeed again {recovery_s:.2f}s after space is freed; "
          f"{counts}")

"""Fresh PostgreSQL databases for tests.

``HEXAGONE_TEST_DATABASE`` (a ``postgresql://`` URL of a database we may
connect to, e.g. ``postgresql://postgres@127.0.0.1:5432/test``) makes every
test server use PostgreSQL; the PostgreSQL-only tests use it too, or the local
default below, and skip when neither answers. Each call creates its own
``hexagone_test_<random>`` database (UTF8, C collation); all are dropped when
the test process exits, so runs never see each other's data.
"""

from __future__ import annotations

import atexit
import os
import secrets
import urllib.parse

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"

_created: list[str] = []


def admin_url() -> str:
    url = os.environ.get("HEXAGONE_TEST_DATABASE", "")
    return url if url.startswith("postgresql://") else DEFAULT_URL


def available() -> bool:
    """Whether the PostgreSQL server of ``admin_url()`` answers."""
    import psycopg

    try:
        with psycopg.connect(admin_url(), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def database_url(name: str) -> str:
    """``admin_url()`` pointing at database ``name``."""
    parts = urllib.parse.urlsplit(admin_url())
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql)


def create_database(options: str = "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'") -> str:
    """A new empty database (dropped at exit); returns its name."""
    name = f"hexagone_test_{secrets.token_hex(6)}"
    _admin(f"CREATE DATABASE {name} TEMPLATE template0 {options}")
    _created.append(name)
    return name


def drop_database(name: str) -> None:
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if name in _created:
        _created.remove(name)


def database_section(name: str) -> dict:
    """The Synapse-shaped ``database`` section of homeserver.yaml for database ``name``."""
    parts = urllib.parse.urlsplit(admin_url())
    # cp_max 4: a module may hold a dozen servers, and two workers together must stay under the shared
    # server's max_connections (100 here)
    args = {"dbname": name, "host": parts.hostname or "127.0.0.1", "port": parts.port or 5432,
            "cp_min": 1, "cp_max": 4}
    if parts.username:
        args["user"] = urllib.parse.unquote(parts.username)
    if parts.password:
        args["password"] = urllib.parse.unquote(parts.password)
    return {"name": "psycopg2", "args": args}


def create_test_database() -> dict:
    """A fresh database for one test server, as its ``database`` section (harness.database_config_for_test)."""
    return database_section(create_database())


@atexit.register
def drop_all() -> None:
    """Drop every database this process created and has not dropped yet."""
    for name in list(_created):
        try:
            drop_database(name)
        except Exception:  # the server may already be gone; nothing else to clean
            pass


PG_BIN = "/usr/lib/postgresql/15/bin"


class PrivateCluster:
    """A PostgreSQL server of our own (``initdb`` into a fresh directory, a free port, its own socket
    directory), run as the ``postgres`` OS user, for the tests that stop and start the database server:
    the machine's shared server is never touched. :meth:`close` stops it and removes its files."""

    def __init__(self, port: int):
        import shutil
        import tempfile

        self.port = port
        self.dir = tempfile.mkdtemp(prefix="hexagone-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self._rmtree = lambda: shutil.rmtree(self.dir, ignore_errors=True)
        if os.geteuid() == 0:  # initdb refuses to run as root
            import pwd

            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self._pg("initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--locale=C", "-A", "trust")

    @staticmethod
    def available() -> str | None:
        """Why a private cluster cannot be made here, or None if it can."""
        if not os.path.exists(os.path.join(PG_BIN, "initdb")):
            return f"no PostgreSQL server binaries in {PG_BIN}"
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no postgres OS user for initdb"
        return None

    def _pg(self, tool: str, *args: str) -> None:
        import subprocess

        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, os.path.join(PG_BIN, tool), *args], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        self._pg("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        """A fast shutdown: open sessions are cut, the server exits at once."""
        self._pg("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self) -> dict:
        """A new database on this cluster, as a ``database`` section of homeserver.yaml."""
        import psycopg

        name = f"hexagone_test_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        return {"name": "psycopg2", "args": {"dbname": name, "host": "127.0.0.1", "port": self.port,
                                             "user": "postgres", "cp_min": 1, "cp_max": 10}}

    def close(self) -> None:
        try:
            if os.path.exists(os.path.join(self.data, "postmaster.pid")):
                self.stop()
        finally:
            self._rmtree()

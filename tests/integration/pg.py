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
    args = {"dbname": name, "host": parts.hostname or "127.0.0.1", "port": parts.port or 5432,
            "cp_min": 1, "cp_max": 10}
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

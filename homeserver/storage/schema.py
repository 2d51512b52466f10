"""Versioned schema with forward migrations, one list per storage domain.

Each storage module declares ``MIGRATIONS``: a list of SQL scripts; entry N
brings that domain from version N to N+1. Scripts use portable SQL (TEXT,
BIGINT, INTEGER) so the same files serve SQLite and PostgreSQL. An entry may
also be a function ``fn(txn)``, for a change of rows that SQL cannot compute
on both engines (a hash, say).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def apply_migrations(db, domains: dict[str, list], apply: bool = True) -> None:
    """Bring every domain's tables up to date (synchronously, at start-up). ``apply`` False (a worker): only
    check that they are, since the main process migrates the database it shares with its workers."""

    def txn_fn(txn):
        txn.execute("CREATE TABLE IF NOT EXISTS schema_versions (domain TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        current = dict(txn.select_all("SELECT domain, version FROM schema_versions"))
        for domain, migrations in domains.items():
            version = current.get(domain, 0)
            if version > len(migrations):
                raise RuntimeError(f"database schema for {domain!r} is at version {version}, newer than this "
                                   f"server ({len(migrations)}): refusing to start")
            if version < len(migrations) and not apply:
                raise RuntimeError(f"database schema for {domain!r} is at version {version}, older than this "
                                   f"server ({len(migrations)}): start the main process first, it migrates")
            for index in range(version, len(migrations)):
                migration = migrations[index]
                if callable(migration):
                    migration(txn)
                else:
                    for statement in _statements(migration):
                        txn.execute(statement)
                logger.info("Applied migration %s/%d", domain, index + 1)
            if version != len(migrations):
                txn.execute("DELETE FROM schema_versions WHERE domain = ?", (domain,))
                txn.execute("INSERT INTO schema_versions (domain, version) VALUES (?, ?)", (domain, len(migrations)))

    db.run_sync("apply_migrations", txn_fn)

"""Server-side room key backups: versions and the session keys stored in each.

Spec v1.19 client-server "Server-side key backups". Versions are per-user
integers (served as strings); a deleted version is kept as a tombstone so its
number is never reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from homeserver.storage.database import Store
from homeserver.storage.e2e_keys import canonical

MIGRATIONS = [
    """
    CREATE TABLE room_key_backup_versions (
        user_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        algorithm TEXT NOT NULL,
        auth_data TEXT NOT NULL,
        etag BIGINT NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, version)
    );
    CREATE TABLE room_key_backup_keys (
        user_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        room_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        first_message_index BIGINT NOT NULL,
        forwarded_count BIGINT NOT NULL,
        is_verified INTEGER NOT NULL,
        session_data TEXT NOT NULL,
        PRIMARY KEY (user_id, version, room_id, session_id)
    )
    """,
]


@dataclass(frozen=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: dict
    etag: int


@dataclass(frozen=True)
class UploadOutcome:
    """What an upload found: the user's current version (None if none), whether the target exists, the result."""

    current: int | None
    exists: bool
    etag: int = 0
    count: int = 0


SessionKey = dict  # {"first_message_index", "forwarded_count", "is_verified", "session_data"}


def _version_row(row) -> BackupVersion | None:
    return None if row is None else BackupVersion(int(row[0]), row[1], json.loads(row[2]), int(row[3]))


def _get_version_txn(txn, user_id: str, version: int | None) -> BackupVersion | None:
    if version is None:
        return _version_row(txn.select_one(
            "SELECT version, algorithm, auth_data, etag FROM room_key_backup_versions "
            "WHERE user_id = ? AND deleted = 0 ORDER BY version DESC LIMIT 1", (user_id,)))
    return _version_row(txn.select_one(
        "SELECT version, algorithm, auth_data, etag FROM room_key_backup_versions "
        "WHERE user_id = ? AND version = ? AND deleted = 0", (user_id, version)))


def _count_txn(txn, user_id: str, version: int) -> int:
    return int(txn.select_value("SELECT COUNT(*) FROM room_key_backup_keys WHERE user_id = ? AND version = ?",
                                (user_id, version), default=0))


def _scope(room_id: str | None, session_id: str | None) -> tuple[str, list]:
    sql, args = "", []
    if room_id is not None:
        sql, args = " AND room_id = ?", [room_id]
        if session_id is not None:
            sql, args = sql + " AND session_id = ?", args + [session_id]
    return sql, args


class KeyBackupStore(Store):
    # -- versions ----------------------------------------------------------------------
    async def create_version(self, user_id: str, algorithm: str, auth_data: dict) -> int:
        def txn_fn(txn):
            version = txn.select_value("SELECT MAX(version) FROM room_key_backup_versions WHERE user_id = ?",
                                       (user_id,), default=0) + 1
            txn.execute("INSERT INTO room_key_backup_versions (user_id, version, algorithm, auth_data, etag, deleted) "
                        "VALUES (?, ?, ?, ?, 0, 0)", (user_id, version, algorithm, canonical(auth_data)))
            return version

        return await self.db.run("create_backup_version", txn_fn)

    async def get_version(self, user_id: str, version: int | None) -> tuple[BackupVersion, int] | None:
        """(version, key count) of ``version``, or of the latest version when None."""

        def txn_fn(txn):
            found = _get_version_txn(txn, user_id, version)
            return None if found is None else (found, _count_txn(txn, user_id, found.version))

        return await self.db.run("get_backup_version", txn_fn)

    async def update_auth_data(self, user_id: str, version: int, auth_data: dict) -> None:
        await self.db.run("update_backup_version", lambda t: t.execute(
            "UPDATE room_key_backup_versions SET auth_data = ? WHERE user_id = ? AND version = ? AND deleted = 0",
            (canonical(auth_data), user_id, version)))

    async def delete_version(self, user_id: str, version: int) -> bool:
        def txn_fn(txn):
            txn.execute("UPDATE room_key_backup_versions SET deleted = 1 WHERE user_id = ? AND version = ? "
                        "AND deleted = 0", (user_id, version))
            if txn.rowcount == 0:
                return False
            txn.execute("DELETE FROM room_key_backup_keys WHERE user_id = ? AND version = ?", (user_id, version))
            return True

        return await self.db.run("delete_backup_version", txn_fn)

    # -- keys --------------------------------------------------------------------------
    async def upload_keys(self, user_id: str, version: int, keys: list[tuple[str, str, SessionKey]],
                          should_replace: Callable[[SessionKey, SessionKey], bool]) -> UploadOutcome:
        """Merge session keys into ``version`` if it is the current one; the etag moves if anything changed."""

        def txn_fn(txn):
            current = _get_version_txn(txn, user_id, None)
            if current is None or current.version != version:
                exists = _get_version_txn(txn, user_id, version) is not None
                return UploadOutcome(None if current is None else current.version, exists)
            changed = False
            for room_id, session_id, key in keys:
                old = txn.select_one("SELECT first_message_index, forwarded_count, is_verified, session_data "
                                     "FROM room_key_backup_keys WHERE user_id = ? AND version = ? AND room_id = ? "
                                     "AND session_id = ?", (user_id, version, room_id, session_id))
                if old is not None and not should_replace(_session_key(old), key):
                    continue
                txn.execute("DELETE FROM room_key_backup_keys WHERE user_id = ? AND version = ? AND room_id = ? "
                            "AND session_id = ?", (user_id, version, room_id, session_id))
                txn.execute("INSERT INTO room_key_backup_keys (user_id, version, room_id, session_id, "
                            "first_message_index, forwarded_count, is_verified, session_data) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (user_id, version, room_id, session_id, key["first_message_index"],
                             key["forwarded_count"], int(key["is_verified"]), canonical(key["session_data"])))
                changed = True
            etag = current.etag + 1 if changed else current.etag
            if changed:
                txn.execute("UPDATE room_key_backup_versions SET etag = ? WHERE user_id = ? AND version = ?",
                            (etag, user_id, version))
            return UploadOutcome(current.version, True, etag, _count_txn(txn, user_id, version))

        return await self.db.run("upload_backup_keys", txn_fn)

    async def get_keys(self, user_id: str, version: int, room_id: str | None = None,
                       session_id: str | None = None) -> dict[str, dict[str, SessionKey]]:
        """room_id -> session_id -> key, narrowed to a room or one session."""
        where, args = _scope(room_id, session_id)
        rows = await self.db.run("get_backup_keys", lambda t: t.select_all(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data "
            f"FROM room_key_backup_keys WHERE user_id = ? AND version = ?{where}", [user_id, version, *args]))
        found: dict[str, dict[str, SessionKey]] = {}
        for row in rows:
            found.setdefault(row[0], {})[row[1]] = _session_key(row[2:])
        return found

    async def delete_keys(self, user_id: str, version: int, room_id: str | None = None,
                          session_id: str | None = None) -> tuple[int, int] | None:
        """Delete keys of an existing version; (etag, count) after, None if the version does not exist."""
        where, args = _scope(room_id, session_id)

        def txn_fn(txn):
            found = _get_version_txn(txn, user_id, version)
            if found is None:
                return None
            txn.execute(f"DELETE FROM room_key_backup_keys WHERE user_id = ? AND version = ?{where}",
                        [user_id, version, *args])
            txn.execute("UPDATE room_key_backup_versions SET etag = ? WHERE user_id = ? AND version = ?",
                        (found.etag + 1, user_id, version))
            return found.etag + 1, _count_txn(txn, user_id, version)

        return await self.db.run("delete_backup_keys", txn_fn)


def _session_key(row) -> SessionKey:
    return {"first_message_index": int(row[0]), "forwarded_count": int(row[1]), "is_verified": bool(row[2]),
            "session_data": json.loads(row[3])}

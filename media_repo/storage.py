"""The media tables (SQLite and PostgreSQL): local uploads, the cache of remote media, thumbnails, scan verdicts.

A ``local_media`` row with ``uploaded_ts`` NULL is an ID handed out by ``/_matrix/media/v1/create`` whose
content has not arrived; a row with content is written only after its file is in place (acknowledged =
committed, and never a row pointing at a half file). ``authenticated`` marks media uploaded or fetched while
``enable_authenticated_media`` was on: the legacy endpoints do not serve it (spec v1.11 freeze).
"""

from __future__ import annotations

from dataclasses import dataclass

MIGRATIONS = [
    """
    CREATE TABLE local_media (
        media_id TEXT NOT NULL PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_ts BIGINT NOT NULL,
        expires_ts BIGINT,
        uploaded_ts BIGINT,
        media_type TEXT,
        upload_name TEXT,
        media_length BIGINT,
        sha256 TEXT,
        last_access_ts BIGINT,
        quarantined_by TEXT,
        authenticated INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX local_media_user_created ON local_media (user_id, created_ts)",
    """
    CREATE TABLE remote_media (
        server_name TEXT NOT NULL,
        media_id TEXT NOT NULL,
        media_type TEXT NOT NULL,
        upload_name TEXT,
        media_length BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        fetched_ts BIGINT NOT NULL,
        last_access_ts BIGINT NOT NULL,
        quarantined_by TEXT,
        authenticated INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (server_name, media_id)
    )
    """,
    """
    CREATE TABLE media_thumbnails (
        server_name TEXT NOT NULL,
        media_id TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        method TEXT NOT NULL,
        media_type TEXT NOT NULL,
        media_length BIGINT NOT NULL,
        PRIMARY KEY (server_name, media_id, width, height, method, media_type)
    )
    """,
    """
    CREATE TABLE media_scan_verdicts (
        sha256 TEXT NOT NULL PRIMARY KEY,
        clean INTEGER NOT NULL,
        signature TEXT,
        scanned_ts BIGINT NOT NULL
    )
    """,
]

LOCAL = ""  # the server_name of local media in media_thumbnails

_LOCAL_COLUMNS = ("media_id, user_id, created_ts, expires_ts, uploaded_ts, media_type, upload_name, media_length, "
                  "sha256, last_access_ts, quarantined_by, authenticated")
_REMOTE_COLUMNS = ("server_name, media_id, media_type, upload_name, media_length, sha256, fetched_ts, "
                   "quarantined_by, authenticated")


@dataclass(frozen=True)
class LocalMedia:
    media_id: str
    user_id: str
    created_ts: int
    expires_ts: int | None
    uploaded_ts: int | None
    media_type: str | None
    upload_name: str | None
    media_length: int | None
    sha256: str | None
    last_access_ts: int | None
    quarantined_by: str | None
    authenticated: bool

    @property
    def uploaded(self) -> bool:
        return self.uploaded_ts is not None


@dataclass(frozen=True)
class RemoteMedia:
    server_name: str
    media_id: str
    media_type: str
    upload_name: str | None
    media_length: int
    sha256: str
    fetched_ts: int
    quarantined_by: str | None
    authenticated: bool


@dataclass(frozen=True)
class Thumbnail:
    width: int
    height: int
    method: str
    media_type: str
    media_length: int


def _local(row) -> LocalMedia | None:
    return None if row is None else LocalMedia(*row[:-1], bool(row[-1]))


def _remote(row) -> RemoteMedia | None:
    return None if row is None else RemoteMedia(*row[:-1], bool(row[-1]))


class MediaStore:
    def __init__(self, db):
        self.db = db

    # -- local media ---------------------------------------------------------------------------------------

    async def create_local(self, media_id: str, user_id: str, now: int, expires_ts: int | None,
                           authenticated: bool, max_pending: int | None = None) -> bool:
        """Reserve a media ID (``/create``); False if the user already holds ``max_pending`` unexpired ones."""
        def txn_fn(txn):
            if max_pending is not None:
                pending = txn.select_value(
                    "SELECT COUNT(*) FROM local_media WHERE user_id = ? AND uploaded_ts IS NULL AND expires_ts > ?",
                    (user_id, now))
                if pending >= max_pending:
                    return False
            txn.execute("INSERT INTO local_media (media_id, user_id, created_ts, expires_ts, authenticated) "
                        "VALUES (?, ?, ?, ?, ?)", (media_id, user_id, now, expires_ts, int(authenticated)))
            return True

        return await self.db.run("create_local_media", txn_fn)

    async def store_local(self, media_id: str, user_id: str, now: int, media_type: str, upload_name: str | None,
                          length: int, sha256: str, authenticated: bool) -> None:
        """The content of a new upload, once its file is in place."""
        await self.db.run("store_local_media", lambda txn: txn.execute(
            f"INSERT INTO local_media ({_LOCAL_COLUMNS}) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, NULL, ?)",
            (media_id, user_id, now, now, media_type, upload_name, length, sha256, now, int(authenticated))))

    async def fill_local(self, media_id: str, now: int, media_type: str, upload_name: str | None, length: int,
                         sha256: str) -> bool:
        """The content of a reserved ID; False if another upload filled it first."""
        def txn_fn(txn):
            txn.execute("UPDATE local_media SET uploaded_ts = ?, media_type = ?, upload_name = ?, media_length = ?, "
                        "sha256 = ?, last_access_ts = ?, expires_ts = NULL WHERE media_id = ? AND uploaded_ts IS NULL",
                        (now, media_type, upload_name, length, sha256, now, media_id))
            return txn.rowcount == 1

        return await self.db.run("fill_local_media", txn_fn)

    async def get_local(self, media_id: str) -> LocalMedia | None:
        return _local(await self.db.run("get_local_media", lambda txn: txn.select_one(
            f"SELECT {_LOCAL_COLUMNS} FROM local_media WHERE media_id = ?", (media_id,))))

    async def uploaded_since(self, user_id: str, since_ts: int) -> int:
        """Bytes ``user_id`` uploaded from ``since_ts`` on (``media_upload_limits``)."""
        return await self.db.run("uploaded_since", lambda txn: txn.select_value(
            "SELECT SUM(media_length) FROM local_media WHERE user_id = ? AND uploaded_ts >= ?",
            (user_id, since_ts), default=0))

    async def user_media(self, user_id: str, start: int, limit: int, order_by: str, descending: bool
                         ) -> tuple[list[LocalMedia], int]:
        """A page of a user's uploads (Synapse admin API "List media uploaded by a user"), and their count."""
        column = {"media_id": "media_id", "upload_name": "upload_name", "created_ts": "created_ts",
                  "media_length": "media_length", "media_type": "media_type", "quarantined_by": "quarantined_by",
                  "last_access_ts": "last_access_ts"}.get(order_by, "created_ts")
        direction = "DESC" if descending else "ASC"

        def txn_fn(txn):
            total = txn.select_value("SELECT COUNT(*) FROM local_media WHERE user_id = ?", (user_id,), default=0)
            rows = txn.select_all(f"SELECT {_LOCAL_COLUMNS} FROM local_media WHERE user_id = ? "
                                  f"ORDER BY {column} {direction}, media_id ASC LIMIT ? OFFSET ?",
                                  (user_id, limit, start))
            return [_local(r) for r in rows], total

        return await self.db.run("user_media", txn_fn)

    async def usage_by_user(self, *, offset: int, limit: int, order_by: str, descending: bool,
                            search_term: str | None) -> tuple[list[tuple[str, str | None, int, int]], int]:
        """(user_id, displayname, media_count, media_length) per uploader, a page of them and how many uploaders
        (Synapse admin API "Users' media usage statistics"); ``search_term`` is part of the user id or name."""
        column = {"user_id": "m.user_id", "displayname": "p.displayname", "media_count": "media_count",
                  "media_length": "media_length"}[order_by]
        where, args = "", []
        if search_term:
            pattern = "%" + search_term.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
            where, args = "WHERE m.user_id LIKE ? ESCAPE '!' OR p.displayname LIKE ? ESCAPE '!'", [pattern, pattern]
        source = f"local_media m LEFT JOIN profiles p ON p.user_id = m.user_id {where}"

        def txn_fn(txn):
            total = txn.select_value(f"SELECT COUNT(DISTINCT m.user_id) FROM {source}", args, default=0)
            rows = txn.select_all(
                f"SELECT m.user_id, p.displayname, COUNT(*) AS media_count, "
                f"COALESCE(SUM(m.media_length), 0) AS media_length FROM {source} GROUP BY m.user_id, p.displayname "
                f"ORDER BY {column} {'DESC' if descending else 'ASC'}, m.user_id ASC LIMIT ? OFFSET ?",
                (*args, limit, offset))
            return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows], total  # PostgreSQL sums as numeric

        return await self.db.run("media_usage_by_user", txn_fn)

    async def local_before(self, before_ts: int, size_gt: int = 0, keep_profiles_of: str | None = None
                           ) -> list[str]:
        """Local media last accessed (or uploaded) before ``before_ts`` and larger than ``size_gt`` bytes; with
        ``keep_profiles_of`` (our server name), not the media a user profile uses as its avatar."""
        sql = ("SELECT media_id FROM local_media WHERE uploaded_ts IS NOT NULL "
               "AND COALESCE(last_access_ts, created_ts) < ? AND media_length > ? AND quarantined_by IS NULL")
        args: tuple = (before_ts, size_gt)
        if keep_profiles_of is not None:
            sql += (" AND 'mxc://' || ? || '/' || media_id NOT IN "
                    "(SELECT avatar_url FROM profiles WHERE avatar_url IS NOT NULL)")
            args += (keep_profiles_of,)
        rows = await self.db.run("local_media_before", lambda txn: txn.select_all(sql, args))
        return [r[0] for r in rows]

    async def expired_reservations(self, now: int) -> list[str]:
        rows = await self.db.run("expired_media_reservations", lambda txn: txn.select_all(
            "SELECT media_id FROM local_media WHERE uploaded_ts IS NULL AND expires_ts <= ?", (now,)))
        return [r[0] for r in rows]

    async def delete_local(self, media_ids: list[str]) -> None:
        def txn_fn(txn):
            txn.executemany("DELETE FROM local_media WHERE media_id = ?", [(m,) for m in media_ids])
            txn.executemany("DELETE FROM media_thumbnails WHERE server_name = ? AND media_id = ?",
                            [(LOCAL, m) for m in media_ids])

        await self.db.run("delete_local_media", txn_fn)

    # -- remote media --------------------------------------------------------------------------------------

    async def get_remote(self, server_name: str, media_id: str) -> RemoteMedia | None:
        return _remote(await self.db.run("get_remote_media", lambda txn: txn.select_one(
            f"SELECT {_REMOTE_COLUMNS} FROM remote_media WHERE server_name = ? AND media_id = ?",
            (server_name, media_id))))

    async def store_remote(self, media: RemoteMedia) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM remote_media WHERE server_name = ? AND media_id = ?",
                        (media.server_name, media.media_id))
            txn.execute(f"INSERT INTO remote_media ({_REMOTE_COLUMNS}, last_access_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (media.server_name, media.media_id, media.media_type, media.upload_name, media.media_length,
                         media.sha256, media.fetched_ts, media.quarantined_by, int(media.authenticated),
                         media.fetched_ts))

        await self.db.run("store_remote_media", txn_fn)

    async def remote_before(self, before_ts: int) -> list[tuple[str, str]]:
        """Cached remote media last accessed before ``before_ts`` (not quarantined: kept as evidence)."""
        rows = await self.db.run("remote_media_before", lambda txn: txn.select_all(
            "SELECT server_name, media_id FROM remote_media WHERE last_access_ts < ? AND quarantined_by IS NULL",
            (before_ts,)))
        return [(r[0], r[1]) for r in rows]

    async def delete_remote(self, keys: list[tuple[str, str]]) -> None:
        def txn_fn(txn):
            txn.executemany("DELETE FROM remote_media WHERE server_name = ? AND media_id = ?", keys)
            txn.executemany("DELETE FROM media_thumbnails WHERE server_name = ? AND media_id = ?", keys)

        await self.db.run("delete_remote_media", txn_fn)

    # -- both ----------------------------------------------------------------------------------------------

    async def touch(self, server_name: str | None, media_ids: list[str], now: int) -> None:
        """Record an access (``media_retention`` counts from the last one)."""
        if server_name is None:
            sql, rows = "UPDATE local_media SET last_access_ts = ? WHERE media_id = ?", [(now, m) for m in media_ids]
        else:
            sql = "UPDATE remote_media SET last_access_ts = ? WHERE server_name = ? AND media_id = ?"
            rows = [(now, server_name, m) for m in media_ids]
        await self.db.run("touch_media", lambda txn: txn.executemany(sql, rows))

    async def quarantine(self, items: list[tuple[str | None, str]], by: str | None) -> int:
        """Set (or clear, ``by`` None) the quarantine of media, local ones with server None; how many changed."""
        def txn_fn(txn):
            changed = 0
            for server_name, media_id in items:
                if server_name is None:
                    txn.execute("UPDATE local_media SET quarantined_by = ? WHERE media_id = ?", (by, media_id))
                else:
                    txn.execute("UPDATE remote_media SET quarantined_by = ? WHERE server_name = ? AND media_id = ?",
                                (by, server_name, media_id))
                changed += max(txn.rowcount, 0)
            return changed

        return await self.db.run("quarantine_media", txn_fn)

    async def thumbnails(self, server_name: str | None, media_id: str) -> list[Thumbnail]:
        rows = await self.db.run("get_thumbnails", lambda txn: txn.select_all(
            "SELECT width, height, method, media_type, media_length FROM media_thumbnails "
            "WHERE server_name = ? AND media_id = ?", (server_name or LOCAL, media_id)))
        return [Thumbnail(*r) for r in rows]

    async def add_thumbnail(self, server_name: str | None, media_id: str, thumb: Thumbnail) -> None:
        def txn_fn(txn):
            key = (server_name or LOCAL, media_id, thumb.width, thumb.height, thumb.method, thumb.media_type)
            txn.execute("DELETE FROM media_thumbnails WHERE server_name = ? AND media_id = ? AND width = ? "
                        "AND height = ? AND method = ? AND media_type = ?", key)
            txn.execute("INSERT INTO media_thumbnails (server_name, media_id, width, height, method, media_type, "
                        "media_length) VALUES (?, ?, ?, ?, ?, ?, ?)", (*key, thumb.media_length))

        await self.db.run("add_thumbnail", txn_fn)

    # -- scan verdicts (content_scanner), remembered by content hash ---------------------------------------

    async def scan_verdict(self, sha256: str) -> tuple[bool, str | None] | None:
        row = await self.db.run("get_scan_verdict", lambda txn: txn.select_one(
            "SELECT clean, signature FROM media_scan_verdicts WHERE sha256 = ?", (sha256,)))
        return None if row is None else (bool(row[0]), row[1])

    async def remember_verdict(self, sha256: str, clean: bool, signature: str | None, now: int) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM media_scan_verdicts WHERE sha256 = ?", (sha256,))
            txn.execute("INSERT INTO media_scan_verdicts (sha256, clean, signature, scanned_ts) VALUES (?, ?, ?, ?)",
                        (sha256, int(clean), signature, now))

        await self.db.run("remember_scan_verdict", txn_fn)

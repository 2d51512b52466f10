"""What the admin API reads and keeps beside the accounts and rooms (SQLite and PostgreSQL).

Its own tables: shadow-banned and erased users, per-user rate-limit overrides, blocked rooms and the results of
room deletions. Its reads span other domains' tables (users, profiles, devices, current state, rooms, the
federation queue) the way Synapse's admin API shows them: one query per page, never one per row.
"""

from __future__ import annotations

import json

from homeserver.storage.accounts import token_hash
from homeserver.storage.search import FTS_TABLE

MIGRATIONS = [
    """
    CREATE TABLE shadow_banned_users (
        user_id TEXT PRIMARY KEY
    );
    CREATE TABLE erased_users (
        user_id TEXT PRIMARY KEY
    );
    CREATE TABLE ratelimit_overrides (
        user_id TEXT PRIMARY KEY,
        messages_per_second BIGINT NOT NULL,
        burst_count BIGINT NOT NULL
    );
    CREATE TABLE blocked_rooms (
        room_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL
    );
    CREATE TABLE room_deletions (
        delete_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT NOT NULL
    );
    CREATE INDEX room_deletions_room ON room_deletions (room_id)
    """,
]

# order_by values of GET /_synapse/admin/v2/users and their column (ties broken by name).
USER_ORDER = {
    "name": "u.user_id", "is_guest": "u.is_guest", "admin": "u.admin", "deactivated": "u.deactivated",
    "shadow_banned": "shadow_banned", "displayname": "p.displayname", "avatar_url": "p.avatar_url",
    "creation_ts": "u.creation_ts", "user_type": "u.user_id", "last_seen_ts": "last_seen_ts",
}

_USER_COLUMNS = (
    "u.user_id, u.is_guest, u.admin, u.deactivated, p.displayname, p.avatar_url, u.creation_ts, "
    "(SELECT 1 FROM shadow_banned_users s WHERE s.user_id = u.user_id) AS shadow_banned, "
    "(SELECT 1 FROM erased_users x WHERE x.user_id = u.user_id) AS erased, "
    "(SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts"
)
_USER_FROM = "FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"

# Purged with a room: (table, column holding the room id).
_ROOM_TABLES = (
    ("event_search", "room_id"), ("receipts", "room_id"), ("user_directory_public_rooms", "room_id"),
    ("server_notice_rooms", "room_id"),
    ("event_txn_ids", "room_id"), ("forward_extremities", "room_id"), ("current_state", "room_id"),
    ("rejections", "room_id"), ("rejected_events", "room_id"), ("room_forgotten", "room_id"),
    ("partial_joins", "room_id"),
    ("pending_redactions", "room_id"), ("room_aliases", "room_id"), ("events", "room_id"), ("rooms", "room_id"),
)


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own % and _ taken literally (ESCAPE '!')."""
    return "%" + text.replace("!", "!!").replace("%", "!%").replace("_", "!_").lower() + "%"


def _user_json(row) -> dict:
    user_id, is_guest, admin, deactivated, displayname, avatar_url, creation_ts, shadow, erased, seen = row
    return {"name": user_id, "is_guest": bool(is_guest), "admin": bool(admin), "user_type": None,
            "deactivated": bool(deactivated), "erased": bool(erased), "shadow_banned": bool(shadow),
            "displayname": displayname, "avatar_url": avatar_url, "creation_ts": creation_ts,
            "last_seen_ts": seen, "locked": False}


class AdminStore:
    def __init__(self, db):
        self.db = db

    # -- users ---------------------------------------------------------------------------------
    async def list_users(self, f, offset: int, limit: int) -> tuple[list[dict], int]:
        """A page of local users matching ``f`` (a services.admin.UserFilter) and how many match in all."""
        where, args = [], []
        if f.name is not None:
            where.append("(LOWER(u.user_id) LIKE ? ESCAPE '!' OR LOWER(p.displayname) LIKE ? ESCAPE '!')")
            args += ["@" + _like(f.name) + ":%", _like(f.name)]  # in the localpart, or the display name
        elif f.user_id is not None:
            where.append("LOWER(u.user_id) LIKE ? ESCAPE '!'")
            args.append(_like(f.user_id))
        if not f.guests:
            where.append("u.is_guest = 0")
        if f.admins is not None:
            where.append("u.admin = ?")
            args.append(int(f.admins))
        if not f.deactivated:
            where.append("u.deactivated = 0")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        direction = "DESC" if f.backwards else "ASC"
        order = USER_ORDER[f.order_by]
        order_sql = f"{order} {direction}" + (f", u.user_id {direction}" if order != "u.user_id" else "")

        def txn_fn(txn):
            total = txn.select_value(f"SELECT COUNT(*) {_USER_FROM}{clause}", args, default=0)
            rows = txn.select_all(f"SELECT {_USER_COLUMNS} {_USER_FROM}{clause} ORDER BY {order_sql} "
                                  "LIMIT ? OFFSET ?", (*args, limit, offset))
            return [_user_json(r) for r in rows], total

        return await self.db.run("admin_list_users", txn_fn)

    async def get_user(self, user_id: str) -> dict | None:
        row = await self.db.run("admin_get_user", lambda t: t.select_one(
            f"SELECT {_USER_COLUMNS} {_USER_FROM} WHERE u.user_id = ?", (user_id,)))
        return None if row is None else _user_json(row)

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self.db.run("admin_set_admin", lambda t: t.execute(
            "UPDATE users SET admin = ? WHERE user_id = ?", (int(admin), user_id)))

    async def reactivate(self, user_id: str) -> None:
        def txn_fn(txn):
            txn.execute("UPDATE users SET deactivated = 0 WHERE user_id = ?", (user_id,))
            txn.execute("DELETE FROM erased_users WHERE user_id = ?", (user_id,))

        await self.db.run("admin_reactivate", txn_fn)

    async def erased_among(self, user_ids) -> frozenset[str]:
        """Which of these users were erased (deactivated with ``erase``: their messages are shown redacted to
        whoever was not in the room when they were sent)."""
        wanted = sorted(set(user_ids))
        if not wanted:
            return frozenset()

        def txn_fn(txn):
            found: set[str] = set()
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                found |= {r[0] for r in txn.select_all(
                    f"SELECT user_id FROM erased_users WHERE user_id IN ({', '.join('?' * len(part))})", part)}
            return frozenset(found)

        return await self.db.run("admin_erased_among", txn_fn)

    async def set_flag(self, table: str, user_id: str, on: bool) -> None:
        """Add or remove ``user_id`` in ``shadow_banned_users`` or ``erased_users``."""
        assert table in ("shadow_banned_users", "erased_users")

        def txn_fn(txn):
            txn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
            if on:
                txn.execute(f"INSERT INTO {table} (user_id) VALUES (?)", (user_id,))

        await self.db.run("admin_set_flag", txn_fn)

    async def erased(self, user_ids) -> set[str]:
        """The erased users among ``user_ids``."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return set()
        return {r[0] for r in await self.db.run("admin_erased", lambda t: t.select_all(
            f"SELECT user_id FROM erased_users WHERE user_id IN ({', '.join('?' for _ in ids)})", tuple(ids)))}

    def shadow_banned_sync(self) -> set[str]:
        """Every shadow-banned user, read once at start (the service keeps them in memory)."""
        return {r[0] for r in self.db.run_sync("admin_shadow_banned", lambda t: t.select_all(
            "SELECT user_id FROM shadow_banned_users"))}

    async def add_token(self, user_id: str, token: str, now_ms: int) -> None:
        """An access token on no device (the admin API's login as a user)."""
        await self.db.run("admin_add_token", lambda t: t.execute(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, creation_ts) VALUES (?, ?, NULL, ?)",
            (token_hash(token), user_id, now_ms)))

    async def sessions(self, user_id: str) -> list[tuple[str, str | None, int | None]]:
        """(device id, last IP, last seen) of each device of the user."""
        return await self.db.run("admin_sessions", lambda t: t.select_all(
            "SELECT device_id, last_seen_ip, last_seen_ts FROM devices WHERE user_id = ? ORDER BY device_id",
            (user_id,)))

    # -- rate-limit overrides ----------------------------------------------------------------------
    def ratelimit_overrides_sync(self) -> dict[str, tuple[int, int]]:
        """Every override, read once at start (the service keeps them in memory)."""
        rows = self.db.run_sync("admin_ratelimit_overrides", lambda t: t.select_all(
            "SELECT user_id, messages_per_second, burst_count FROM ratelimit_overrides"))
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    async def set_ratelimit_override(self, user_id: str, override: tuple[int, int] | None) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM ratelimit_overrides WHERE user_id = ?", (user_id,))
            if override is not None:
                txn.execute("INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count) "
                            "VALUES (?, ?, ?)", (user_id, *override))

        await self.db.run("admin_set_ratelimit_override", txn_fn)

    # -- rooms -------------------------------------------------------------------------------------
    async def rooms_summary(self, server_name: str, room_id: str | None = None) -> list[dict]:
        """Per room (or the one room): version, creator, public, the JSON of its main state events (by
        type, empty state key), its joined members, local joined members and state event counts."""
        one = " WHERE r.room_id = ?" if room_id else ""
        args = (room_id,) if room_id else ()
        local = "%:" + server_name.replace("!", "!!").replace("%", "!%").replace("_", "!_")

        def txn_fn(txn):
            rooms = {r[0]: {"room_id": r[0], "version": r[1], "creator": r[2], "public": bool(r[3]), "state": {},
                            "joined_members": 0, "joined_local_members": 0, "state_events": 0}
                     for r in txn.select_all(f"SELECT r.room_id, r.room_version, r.creator, r.is_public FROM rooms r"
                                             f"{one}", args)}
            cs_one = " AND cs.room_id = ?" if room_id else ""
            for rid, etype, raw in txn.select_all(
                    "SELECT cs.room_id, cs.type, e.json FROM current_state cs JOIN events e ON e.event_id = "
                    "cs.event_id WHERE cs.state_key = '' AND cs.type IN ('m.room.name', 'm.room.canonical_alias', "
                    "'m.room.topic', 'm.room.avatar', 'm.room.encryption', 'm.room.create', 'm.room.join_rules', "
                    f"'m.room.guest_access', 'm.room.history_visibility'){cs_one}", args):
                if rid in rooms:
                    rooms[rid]["state"][etype] = json.loads(raw).get("content") or {}
            for rid, total, joined, local_joined in txn.select_all(
                    "SELECT room_id, COUNT(*), "
                    "SUM(CASE WHEN type = 'm.room.member' AND membership = 'join' THEN 1 ELSE 0 END), "
                    "SUM(CASE WHEN type = 'm.room.member' AND membership = 'join' AND state_key LIKE ? ESCAPE '!' "
                    "THEN 1 ELSE 0 END) FROM current_state cs WHERE 1 = 1" + cs_one + " GROUP BY room_id",
                    (local, *args)):
                if rid in rooms:
                    rooms[rid].update(state_events=int(total), joined_members=int(joined or 0),
                                      joined_local_members=int(local_joined or 0))
            return list(rooms.values())

        return await self.db.run("admin_rooms_summary", txn_fn)

    async def block_room(self, room_id: str, user_id: str | None) -> None:
        """Block (``user_id`` the admin) or unblock (None) a room."""
        def txn_fn(txn):
            txn.execute("DELETE FROM blocked_rooms WHERE room_id = ?", (room_id,))
            if user_id is not None:
                txn.execute("INSERT INTO blocked_rooms (room_id, user_id) VALUES (?, ?)", (room_id, user_id))

        await self.db.run("admin_block_room", txn_fn)

    async def room_blocked_by(self, room_id: str) -> str | None:
        return await self.db.run("admin_room_blocked_by", lambda t: t.select_value(
            "SELECT user_id FROM blocked_rooms WHERE room_id = ?", (room_id,)))

    async def forward_extremities(self, room_id: str) -> list[dict]:
        rows = await self.db.run("admin_forward_extremities", lambda t: t.select_all(
            "SELECT f.event_id, e.state_group, e.depth, e.origin_server_ts FROM forward_extremities f "
            "JOIN events e ON e.event_id = f.event_id WHERE f.room_id = ? ORDER BY e.depth DESC", (room_id,)))
        return [{"event_id": r[0], "state_group": r[1], "depth": r[2], "received_ts": r[3]} for r in rows]

    async def local_aliases(self, room_id: str) -> list[str]:
        rows = await self.db.run("admin_local_aliases", lambda t: t.select_all(
            "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias", (room_id,)))
        return [r[0] for r in rows]

    async def purge_room(self, room_id: str) -> None:
        """Delete the room's events, state and aliases in one transaction, with what other domains keep about
        them: search index, receipts, push actions and per-room account data (both found through the room's
        members, their key's lead), a server notices room's entry."""
        def txn_fn(txn):
            if txn.engine_name == "sqlite" and txn.select_value(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = ?", (FTS_TABLE,)):
                txn.execute(f"DELETE FROM {FTS_TABLE} WHERE rowid IN "
                            "(SELECT stream_ordering FROM event_search WHERE room_id = ?)", (room_id,))
            for table in ("push_actions", "account_data"):  # the room's tags and other per-room account data
                txn.execute(f"DELETE FROM {table} WHERE user_id IN (SELECT state_key FROM current_state "
                            "WHERE room_id = ? AND type = 'm.room.member') AND room_id = ?", (room_id, room_id))
            txn.execute("DELETE FROM state_group_entries WHERE state_group IN "
                        "(SELECT id FROM state_groups WHERE room_id = ?)", (room_id,))
            txn.execute("DELETE FROM state_groups WHERE room_id = ?", (room_id,))
            for table, column in _ROOM_TABLES:
                txn.execute(f"DELETE FROM {table} WHERE {column} = ?", (room_id,))

        await self.db.run("admin_purge_room", txn_fn)

    async def record_deletion(self, delete_id: str, room_id: str, status: str, result: dict) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM room_deletions WHERE delete_id = ?", (delete_id,))
            txn.execute("INSERT INTO room_deletions (delete_id, room_id, status, result) VALUES (?, ?, ?, ?)",
                        (delete_id, room_id, status, json.dumps(result)))

        await self.db.run("admin_record_deletion", txn_fn)

    async def deletions(self, *, room_id: str | None = None, delete_id: str | None = None) -> list[dict]:
        column, value = ("room_id", room_id) if room_id is not None else ("delete_id", delete_id)
        rows = await self.db.run("admin_deletions", lambda t: t.select_all(
            f"SELECT delete_id, room_id, status, result FROM room_deletions WHERE {column} = ? "
            "ORDER BY delete_id", (value,)))
        return [{"delete_id": r[0], "room_id": r[1], "status": r[2], "shutdown_room": json.loads(r[3])}
                for r in rows]

    # -- federation destinations ---------------------------------------------------------------------
    async def reset_destination(self, destination: str) -> None:
        await self.db.run("admin_reset_destination", lambda t: t.execute(
            "UPDATE federation_destinations SET retry_last_ts = 0, retry_interval_ms = 0 WHERE destination = ?",
            (destination,)))

    async def destinations(self, destination: str | None = None) -> list[dict]:
        """Every destination the sender has known (or the one), with its backoff and queue length."""
        one = " WHERE d.destination = ?" if destination else ""
        rows = await self.db.run("admin_destinations", lambda t: t.select_all(
            "SELECT d.destination, d.retry_last_ts, d.retry_interval_ms, "
            "(SELECT COUNT(*) FROM federation_outbox o WHERE o.destination = d.destination) "
            f"FROM federation_destinations d{one} ORDER BY d.destination", (destination,) if destination else ()))
        return [{"destination": r[0], "retry_last_ts": int(r[1]), "retry_interval": int(r[2]),
                 "failure_ts": int(r[1]) if r[2] else None, "last_successful_stream_ordering": None,
                 "queued": int(r[3])} for r in rows]

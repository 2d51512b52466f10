"""Users' pushers and how far each one's notifications were sent.

Spec v1.19 client-server "Push Notifications", "Pushers": a pusher is keyed by (app_id, pushkey,
user_id), belongs to the device that set it, and ``position`` is the stream ordering of the last
push action handed to its gateway (acknowledged, or given up on), so that a restart resumes after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from homeserver.storage.database import Store

@dataclass(frozen=True)
class Pusher:
    """One pusher as POST /pushers/set gave it, with how far its notifications were sent."""

    user_id: str
    app_id: str
    pushkey: str
    data: dict  # the client's ``data`` (``url``, ``format``)
    kind: str
    lang: str
    pushkey_ts: int
    app_display_name: str
    device_display_name: str
    position: int
    device_id: str | None = None
    profile_tag: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.app_id, self.pushkey, self.user_id


MIGRATIONS = [
    """
    CREATE TABLE pushers (
        user_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        pushkey TEXT NOT NULL,
        device_id TEXT,
        kind TEXT NOT NULL,
        app_display_name TEXT NOT NULL,
        device_display_name TEXT NOT NULL,
        profile_tag TEXT,
        lang TEXT NOT NULL,
        data_json TEXT NOT NULL,
        pushkey_ts BIGINT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (app_id, pushkey, user_id)
    );
    CREATE INDEX pushers_user ON pushers (user_id)
    """,
]


_COLUMNS = ("user_id, app_id, pushkey, device_id, kind, app_display_name, device_display_name, profile_tag, lang,"
            " data_json, pushkey_ts, position")


def _pusher(row) -> Pusher:
    fields = dict(zip(_COLUMNS.replace("data_json", "data").split(", "), row))
    return Pusher(**dict(fields, data=json.loads(fields["data"])))


class PusherStore(Store):
    async def list_pushers(self, user_id: str | None = None) -> list[Pusher]:
        """The user's pushers (everyone's when None)."""
        where, args = ("WHERE user_id = ?", (user_id,)) if user_id is not None else ("", ())
        rows = await self.db.run("list_pushers", lambda t: t.select_all(
            f"SELECT {_COLUMNS} FROM pushers {where} ORDER BY user_id, app_id, pushkey", args))
        return [_pusher(r) for r in rows]

    async def get_pusher(self, key: tuple[str, str, str]) -> Pusher | None:
        row = await self.db.run("get_pusher", lambda t: t.select_one(
            f"SELECT {_COLUMNS} FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id = ?", key))
        return None if row is None else _pusher(row)

    async def set_pusher(self, pusher: Pusher, *, append: bool) -> list[tuple[str, str, str]]:
        """Add or replace a pusher (keeping the position of the one replaced); without ``append``, the
        pushers of other users with the same app_id and pushkey go. Returns the keys removed."""

        def txn_fn(txn):
            removed = []
            if not append:
                removed = [tuple(r) for r in txn.select_all(
                    "SELECT app_id, pushkey, user_id FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?",
                    (pusher.app_id, pusher.pushkey, pusher.user_id))]
                txn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?",
                            (pusher.app_id, pusher.pushkey, pusher.user_id))
            old = txn.select_value("SELECT position FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id = ?",
                                   pusher.key)
            txn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id = ?", pusher.key)
            txn.execute(f"INSERT INTO pushers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (pusher.user_id, pusher.app_id, pusher.pushkey, pusher.device_id, pusher.kind,
                         pusher.app_display_name, pusher.device_display_name, pusher.profile_tag, pusher.lang,
                         json.dumps(pusher.data), pusher.pushkey_ts, pusher.position if old is None else old))
            return removed

        return await self.db.run("set_pusher", txn_fn)

    async def delete_pusher(self, key: tuple[str, str, str]) -> bool:
        def txn_fn(txn):
            txn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id = ?", key)
            return txn.rowcount > 0

        return await self.db.run("delete_pusher", txn_fn)

    async def delete_device_pushers(self, user_id: str, device_ids: list[str]) -> list[tuple[str, str, str]]:
        """Remove the pushers set by these devices; returns their keys."""

        def txn_fn(txn):
            removed = []
            for device_id in device_ids:
                removed += [tuple(r) for r in txn.select_all(
                    "SELECT app_id, pushkey, user_id FROM pushers WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id))]
                txn.execute("DELETE FROM pushers WHERE user_id = ? AND device_id = ?", (user_id, device_id))
            return removed

        return await self.db.run("delete_device_pushers", txn_fn)

    async def set_positions(self, rows: list[tuple[tuple[str, str, str], int]]) -> None:
        """Record how far pushers sent (a position never goes back)."""
        await self.db.run("set_pusher_positions", lambda t: t.executemany(
            "UPDATE pushers SET position = ? WHERE app_id = ? AND pushkey = ? AND user_id = ? AND position < ?",
            [(position, *key, position) for key, position in rows]))

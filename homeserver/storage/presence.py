"""Users' presence (client-server "Presence"): the latest state of each user, stamped with its stream id."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Store
from homeserver.storage.streams import max_position

MIGRATIONS = [
    """
    CREATE TABLE presence (
        user_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        status_msg TEXT,
        last_active_ts BIGINT NOT NULL,
        currently_active INTEGER NOT NULL,
        stream_id BIGINT NOT NULL
    );
    CREATE INDEX presence_stream ON presence (stream_id)
    """,
]

_COLUMNS = "user_id, state, status_msg, last_active_ts, currently_active"
_CHUNK = 500


@dataclass
class PresenceRow:
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    currently_active: bool


def _row(r) -> PresenceRow:
    return PresenceRow(r[0], r[1], r[2], r[3], bool(r[4]))


class PresenceStore(Store):
    def max_stream_id_sync(self) -> int:
        return self.db.run_sync("max_presence_stream", max_position, "presence", "stream_id")

    async def get(self, user_ids) -> dict[str, PresenceRow]:
        ids = list(dict.fromkeys(user_ids))

        def txn_fn(txn):
            found = {}
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i:i + _CHUNK]
                for r in txn.select_all(f"SELECT {_COLUMNS} FROM presence WHERE user_id IN"
                                        f" ({','.join('?' * len(chunk))})", chunk):
                    found[r[0]] = _row(r)
            return found

        return await self.db.run("get_presence", txn_fn) if ids else {}

    async def not_offline(self) -> list[PresenceRow]:
        """Every user whose stored state is not offline (their timeouts restart with the server)."""
        rows = await self.db.run("presence_not_offline", lambda t: t.select_all(
            f"SELECT {_COLUMNS} FROM presence WHERE state <> 'offline'"))
        return [_row(r) for r in rows]

    async def changed_between(self, since: int, to: int) -> list[PresenceRow]:
        rows = await self.db.run("presence_changes", lambda t: t.select_all(
            f"SELECT {_COLUMNS} FROM presence WHERE stream_id > ? AND stream_id <= ?", (since, to)))
        return [_row(r) for r in rows]

    async def put(self, row: PresenceRow, stream_id: int) -> None:
        """Store the user's state at ``stream_id``, unless a later one (higher position) is stored already:
        two changes of one user may commit in either order. One upsert in one round trip (a pipeline), its
        COMMIT not waiting for the disk: a state lost in a crash of the database server is one the timeouts
        would soon replace anyway."""
        def txn_fn(txn):
            txn.commit_lazily()
            txn.execute(f"INSERT INTO presence ({_COLUMNS}, stream_id) VALUES (?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (user_id) DO UPDATE SET state = excluded.state,"
                        " status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,"
                        " currently_active = excluded.currently_active, stream_id = excluded.stream_id"
                        " WHERE presence.stream_id < excluded.stream_id",
                        (row.user_id, row.state, row.status_msg, row.last_active_ts, int(row.currently_active),
                         stream_id))

        await self.db.run_ordered("put_presence", txn_fn)

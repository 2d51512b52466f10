"""What each application service has been sent (application service API, "Pushing events").

Room events are not copied: an appservice's row holds the stream ordering up to which the room
events it is interested in were acknowledged, and the sender reads the events after it from the
event stream, so nothing committed is missed across a restart. Ephemeral events (MSC2409) exist
nowhere else, so they are queued here, per appservice, until acknowledged.

A transaction is fixed before it is first sent: its id and the positions it covers are written
(``pending_*``), so a retry (after a failure or a restart) resends the same id with the same
content, and the appservice can drop a duplicate. Its acknowledgement advances the positions and
deletes its ephemeral entries in one database transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MIGRATIONS = [
    """
    CREATE TABLE appservice_positions (
        as_id TEXT NOT NULL PRIMARY KEY,
        events_upto BIGINT NOT NULL,
        last_txn_id BIGINT NOT NULL,
        device_lists_upto BIGINT NOT NULL,
        pending_txn_id BIGINT,
        pending_events_upto BIGINT,
        pending_ephemeral_upto BIGINT,
        pending_device_lists_upto BIGINT
    );
    CREATE TABLE appservice_ephemeral (
        as_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (as_id, position)
    )
    """,
]


@dataclass(frozen=True)
class Positions:
    """What a transaction covers: room events, queued ephemeral events, device list changes (MSC3202)."""

    events: int  # stream ordering
    ephemeral: int  # appservice_ephemeral position
    device_lists: int  # device list stream position


@dataclass(frozen=True)
class AppServicePosition:
    acknowledged: Positions  # everything up to these was acknowledged (the ephemeral part: deleted)
    last_txn_id: int
    pending_txn_id: int | None  # a transaction fixed and not yet acknowledged
    pending: Positions | None


class AppServiceStore:
    def __init__(self, db):
        self.db = db

    def max_ephemeral_position_sync(self) -> int:
        return self.db.run_sync("appservice_ephemeral_max", lambda t: t.select_value(
            "SELECT MAX(position) FROM appservice_ephemeral", default=0) or 0)

    async def position(self, as_id: str, start_at: Positions) -> AppServicePosition:
        """The appservice's row, created at ``start_at`` (today's streams) the first time it is seen."""
        def txn_fn(txn):
            row = txn.select_one(
                "SELECT events_upto, device_lists_upto, last_txn_id, pending_txn_id, pending_events_upto,"
                " pending_ephemeral_upto, pending_device_lists_upto FROM appservice_positions WHERE as_id = ?",
                (as_id,))
            if row is None:
                txn.execute("INSERT INTO appservice_positions (as_id, events_upto, device_lists_upto, last_txn_id)"
                            " VALUES (?, ?, ?, 0)", (as_id, start_at.events, start_at.device_lists))
                row = (start_at.events, start_at.device_lists, 0, None, None, None, None)
            events, device_lists, last_txn_id, pending_txn_id, *pending = row
            return AppServicePosition(Positions(events, 0, device_lists), last_txn_id, pending_txn_id,
                                      None if pending_txn_id is None else Positions(*pending))
        return await self.db.run("appservice_position", txn_fn)

    async def fix_transaction(self, as_id: str, txn_id: int, upto: Positions) -> None:
        await self.db.run("appservice_fix_txn", lambda t: t.execute(
            "UPDATE appservice_positions SET pending_txn_id = ?, pending_events_upto = ?,"
            " pending_ephemeral_upto = ?, pending_device_lists_upto = ? WHERE as_id = ?",
            (txn_id, upto.events, upto.ephemeral, upto.device_lists, as_id)))

    async def acknowledge(self, as_id: str, txn_id: int, upto: Positions) -> None:
        def txn_fn(txn):
            txn.execute("UPDATE appservice_positions SET events_upto = ?, device_lists_upto = ?, last_txn_id = ?,"
                        " pending_txn_id = NULL, pending_events_upto = NULL, pending_ephemeral_upto = NULL,"
                        " pending_device_lists_upto = NULL WHERE as_id = ?",
                        (upto.events, upto.device_lists, txn_id, as_id))
            txn.execute("DELETE FROM appservice_ephemeral WHERE as_id = ? AND position <= ?", (as_id, upto.ephemeral))
        await self.db.run("appservice_ack_txn", txn_fn)

    async def enqueue_ephemeral(self, rows: list[tuple[str, int, str, dict]]) -> None:
        """Rows of (as_id, position, kind, body): kind is ``ephemeral`` or ``to_device``."""
        encoded = [(a, p, k, json.dumps(b, ensure_ascii=False, separators=(",", ":"))) for a, p, k, b in rows]
        await self.db.run("appservice_enqueue", lambda t: t.executemany(
            "INSERT INTO appservice_ephemeral (as_id, position, kind, body) VALUES (?, ?, ?, ?)", encoded))

    async def ephemeral(self, as_id: str, after: int, upto: int | None, limit: int) -> list[tuple[int, str, dict]]:
        """Queued entries with after < position (<= upto), oldest first: (position, kind, body)."""
        sql = "SELECT position, kind, body FROM appservice_ephemeral WHERE as_id = ? AND position > ?"
        args: tuple = (as_id, after)
        if upto is not None:
            sql += " AND position <= ?"
            args += (upto,)
        rows = await self.db.run("appservice_ephemeral", lambda t: t.select_all(
            sql + " ORDER BY position LIMIT ?", args + (limit,)))
        return [(p, k, json.loads(b)) for p, k, b in rows]

"""Delayed events (MSC4140): events a user scheduled, kept until they are sent or cancelled.

A row lives from the request that scheduled it until the event is sent (or cancelled), so what was
scheduled before a restart is sent after it. ``send_ts`` is when it is due; a restart moves it to
``now + delay_ms``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MIGRATIONS = [
    """
    CREATE TABLE delayed_events (
        delay_id TEXT NOT NULL PRIMARY KEY,
        user_id TEXT NOT NULL,
        device_id TEXT,
        room_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        state_key TEXT,
        content TEXT NOT NULL,
        delay_ms BIGINT NOT NULL,
        send_ts BIGINT NOT NULL
    )
    """,
    "CREATE INDEX delayed_events_user ON delayed_events (user_id, send_ts)",
    "CREATE INDEX delayed_events_send_ts ON delayed_events (send_ts)",
    "CREATE INDEX delayed_events_state ON delayed_events (room_id, event_type, state_key)",
]

_COLUMNS = "delay_id, user_id, device_id, room_id, event_type, state_key, content, delay_ms, send_ts"


@dataclass(frozen=True)
class DelayedEvent:
    delay_id: str
    user_id: str
    device_id: str | None
    room_id: str
    type: str
    state_key: str | None
    content: dict
    delay_ms: int
    send_ts: int


class TooManyDelayedEvents(Exception):
    """The user has its limit of scheduled events; ``retry_after_ms``: until the first of them is due."""

    def __init__(self, retry_after_ms: int):
        super().__init__("too many delayed events")
        self.retry_after_ms = retry_after_ms


def _row(row) -> DelayedEvent:
    return DelayedEvent(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7], row[8])


class DelayedEventStore:
    def __init__(self, db):
        self.db = db

    async def add(self, event: DelayedEvent, limit: int, now_ms: int) -> None:
        """Store a delayed event unless its user already has ``limit`` of them (TooManyDelayedEvents)."""
        def txn_fn(txn):
            count = txn.select_value("SELECT COUNT(*) FROM delayed_events WHERE user_id = ?", (event.user_id,))
            if count >= limit:
                first = txn.select_value("SELECT MIN(send_ts) FROM delayed_events WHERE user_id = ?",
                                         (event.user_id,))
                raise TooManyDelayedEvents(max(first - now_ms, 0))
            txn.execute(f"INSERT INTO delayed_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (event.delay_id, event.user_id, event.device_id, event.room_id, event.type,
                         event.state_key, json.dumps(event.content), event.delay_ms, event.send_ts))

        await self.db.run("add_delayed_event", txn_fn)

    async def get(self, delay_id: str) -> DelayedEvent | None:
        row = await self.db.run("get_delayed_event", lambda t: t.select_one(
            f"SELECT {_COLUMNS} FROM delayed_events WHERE delay_id = ?", (delay_id,)))
        return None if row is None else _row(row)

    async def for_user(self, user_id: str) -> list[DelayedEvent]:
        rows = await self.db.run("delayed_events_for_user", lambda t: t.select_all(
            f"SELECT {_COLUMNS} FROM delayed_events WHERE user_id = ? ORDER BY send_ts, delay_id", (user_id,)))
        return [_row(r) for r in rows]

    async def restart(self, delay_id: str, now_ms: int) -> bool:
        """Make the event due ``delay_ms`` from now; False if there is no such event."""
        return await self._changes("restart_delayed_event",
                                   "UPDATE delayed_events SET send_ts = ? + delay_ms WHERE delay_id = ?",
                                   (now_ms, delay_id))

    async def delete(self, delay_id: str) -> bool:
        return await self._changes("delete_delayed_event", "DELETE FROM delayed_events WHERE delay_id = ?",
                                   (delay_id,))

    async def _changes(self, name: str, sql: str, args: tuple) -> bool:
        """Run one statement; whether it changed a row."""
        def txn_fn(txn):
            txn.execute(sql, args)
            return txn.rowcount > 0

        return await self.db.run(name, txn_fn)

    async def due(self, now_ms: int) -> list[DelayedEvent]:
        rows = await self.db.run("due_delayed_events", lambda t: t.select_all(
            f"SELECT {_COLUMNS} FROM delayed_events WHERE send_ts <= ? ORDER BY send_ts, delay_id", (now_ms,)))
        return [_row(r) for r in rows]

    async def next_send_ts(self, excluding: frozenset[str] = frozenset()) -> int | None:
        """When the first delayed event is due, not counting those ``excluding`` names (being sent)."""
        marks = ", ".join("?" * len(excluding))
        where = f" WHERE delay_id NOT IN ({marks})" if excluding else ""
        return await self.db.run("next_delayed_event", lambda t: t.select_value(
            f"SELECT MIN(send_ts) FROM delayed_events{where}", tuple(excluding)))

    async def rooms_with_state(self) -> set[str]:
        """The rooms with a delayed state event pending."""
        rows = await self.db.run("delayed_state_rooms", lambda t: t.select_all(
            "SELECT DISTINCT room_id FROM delayed_events WHERE state_key IS NOT NULL"))
        return {r[0] for r in rows}

    async def cancel_state(self, room_id: str, event_type: str, state_key: str, except_user: str) -> None:
        """Drop the delayed events of other users than ``except_user`` that would set this state."""
        await self.db.run("cancel_delayed_state_events", lambda t: t.execute(
            "DELETE FROM delayed_events WHERE room_id = ? AND event_type = ? AND state_key = ? AND user_id <> ?",
            (room_id, event_type, state_key, except_user)))

"""Users' push rules and the push actions computed for each event (notification counts).

Spec v1.19 client-server "Push Rules", "Receiving notifications", "Listing
Notifications". A user's rules of one kind are stored with a priority
(highest first); a server-default rule only stores what the user changed.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from typing import NamedTuple

from homeserver.storage.database import COPY_FROM_ROWS, Store

MIGRATIONS = [
    """
    CREATE TABLE push_rules (
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        priority INTEGER NOT NULL,
        enabled INTEGER NOT NULL,
        rule_json TEXT NOT NULL,
        PRIMARY KEY (user_id, kind, rule_id)
    );
    CREATE TABLE push_rule_defaults (
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        enabled INTEGER,
        actions_json TEXT,
        PRIMARY KEY (user_id, kind, rule_id)
    );
    CREATE TABLE push_actions (
        user_id TEXT NOT NULL,
        stream_ordering BIGINT NOT NULL,
        room_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        highlight INTEGER NOT NULL,
        actions_json TEXT NOT NULL,
        ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, stream_ordering)
    );
    CREATE INDEX push_actions_room ON push_actions (user_id, room_id, stream_ordering)
    """,
    # One index instead of two: rows go to a random place of each per-user index, the cost that
    # dominates writing an event's actions for every member of a large room.
    """
    CREATE TABLE push_actions_by_room (
        user_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        stream_ordering BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        highlight INTEGER NOT NULL,
        actions_json TEXT NOT NULL,
        ts BIGINT NOT NULL,
        PRIMARY KEY (user_id, room_id, stream_ordering)
    );
    INSERT INTO push_actions_by_room (user_id, room_id, stream_ordering, event_id, thread_id, highlight,
                                      actions_json, ts)
        SELECT user_id, room_id, stream_ordering, event_id, thread_id, highlight, actions_json, ts FROM push_actions;
    DROP TABLE push_actions;
    ALTER TABLE push_actions_by_room RENAME TO push_actions
    """,
]

_COUNT_CHUNK = 200
_SELECT_ACTIONS = ("SELECT user_id, stream_ordering, room_id, event_id, thread_id, highlight, actions_json, ts"
                   " FROM push_actions")


class PushAction(NamedTuple):
    """The actions of one notifying event for one user (a tuple: a big room's send makes one per member)."""

    user_id: str
    stream_ordering: int
    room_id: str
    event_id: str
    thread_id: str
    highlight: bool
    actions: list
    ts: int


ROWS_PER_INSERT = 2000  # push action rows sent by one statement (or COPY)


class EventPushActions(NamedTuple):
    """The push actions of one event, for each of its notified users (a send to a room of thousands makes
    thousands: what they share is held once, and each user's part is a place in two lists)."""

    stream_ordering: int
    room_id: str
    event_id: str
    thread_id: str
    ts: int
    user_ids: list[str]  # sorted
    outcomes: list[tuple[bool, list]]  # each user's (highlight, actions), in the order of ``user_ids``

    def of(self, user_id: str) -> PushAction | None:
        """The user's push action for this event, if notified."""
        i = bisect_left(self.user_ids, user_id)
        if i == len(self.user_ids) or self.user_ids[i] != user_id:
            return None
        highlight, actions = self.outcomes[i]
        return PushAction(user_id, self.stream_ordering, self.room_id, self.event_id, self.thread_id, highlight,
                          actions, self.ts)


class PushStore(Store):
    # -- rules -------------------------------------------------------------------------
    async def get_rules(self, user_id: str) -> tuple[dict[str, list[dict]], dict[tuple[str, str], dict]]:
        """The user's own rules by kind (most important first) and their changes to default rules."""
        return (await self.get_rules_of([user_id]))[user_id]

    async def get_rules_of(self, user_ids: list[str]
                           ) -> dict[str, tuple[dict[str, list[dict]], dict[tuple[str, str], dict]]]:
        """:meth:`get_rules` of each user, 500 users a statement (a big room's members in a few round trips:
        most users have no rows)."""

        def txn_fn(txn):
            found = {user_id: ({}, {}) for user_id in user_ids}
            for i in range(0, len(user_ids), 500):
                chunk = user_ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                rows = txn.select_all(
                    f"SELECT 0, user_id, kind, rule_id, enabled, rule_json, priority FROM push_rules"
                    f" WHERE user_id IN ({marks}) UNION ALL SELECT 1, user_id, kind, rule_id, enabled, actions_json,"
                    f" 0 FROM push_rule_defaults WHERE user_id IN ({marks}) ORDER BY 1, 2, 3, 7 DESC",
                    (*chunk, *chunk))
                for own_rule, user_id, kind, rule_id, enabled, raw, _ in rows:
                    own, defaults = found[user_id]
                    if own_rule == 0:
                        own.setdefault(kind, []).append(dict(json.loads(raw), rule_id=rule_id,
                                                             enabled=bool(enabled)))
                        continue
                    change: dict = {}
                    if enabled is not None:
                        change["enabled"] = bool(enabled)
                    if raw is not None:
                        change["actions"] = json.loads(raw)
                    defaults[(kind, rule_id)] = change
            return found

        return await self.db.run("get_push_rules", txn_fn)

    async def replace_kind(self, user_id: str, kind: str, rules: list[dict]) -> None:
        """Store the user's rules of one kind, most important first (each has rule_id and enabled)."""

        def txn_fn(txn):
            txn.execute("DELETE FROM push_rules WHERE user_id = ? AND kind = ?", (user_id, kind))
            txn.executemany(
                "INSERT INTO push_rules (user_id, kind, rule_id, priority, enabled, rule_json)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(user_id, kind, r["rule_id"], len(rules) - i, int(r["enabled"]),
                  json.dumps({k: v for k, v in r.items() if k not in ("rule_id", "enabled", "default")}))
                 for i, r in enumerate(rules)])

        await self.db.run("replace_push_rules", txn_fn)

    async def change_default(self, user_id: str, kind: str, rule_id: str, *, enabled: bool | None = None,
                             actions: list | None = None) -> None:
        """Record the user's ``enabled`` or ``actions`` for a server-default rule."""

        def txn_fn(txn):
            row = txn.select_one("SELECT enabled, actions_json FROM push_rule_defaults"
                                 " WHERE user_id = ? AND kind = ? AND rule_id = ?", (user_id, kind, rule_id))
            old_enabled, old_actions = row if row is not None else (None, None)
            txn.execute("DELETE FROM push_rule_defaults WHERE user_id = ? AND kind = ? AND rule_id = ?",
                        (user_id, kind, rule_id))
            txn.execute("INSERT INTO push_rule_defaults (user_id, kind, rule_id, enabled, actions_json)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (user_id, kind, rule_id, old_enabled if enabled is None else int(enabled),
                         old_actions if actions is None else json.dumps(actions)))

        await self.db.run("change_default_push_rule", txn_fn)

    # -- push actions ---------------------------------------------------------------------
    async def add_actions(self, events: list[EventPushActions]) -> None:
        """One transaction, inserting :data:`ROWS_PER_INSERT` rows at a time (a batch of sends to a big room is
        never held as rows all at once)."""
        if not events:
            return
        columns = ("user_id", "stream_ordering", "room_id", "event_id", "thread_id", "highlight", "actions_json",
                   "ts")
        encoded: dict[int, str] = {}  # most members of a room share one actions list: encoded once

        def txn_fn(t):
            rows = []
            for ev in events:
                for user_id, (highlight, actions) in zip(ev.user_ids, ev.outcomes):
                    raw = encoded.get(id(actions))
                    if raw is None:
                        raw = encoded[id(actions)] = json.dumps(actions)
                    rows.append((user_id, ev.stream_ordering, ev.room_id, ev.event_id, ev.thread_id, int(highlight),
                                 raw, ev.ts))
                    if len(rows) == ROWS_PER_INSERT:
                        t.insert_rows("push_actions", columns, rows)
                        rows = []
            if rows:
                t.insert_rows("push_actions", columns, rows)

        # New rows only, so no conflict: a pipelined transaction, or COPY (outside a pipeline) for a big room's.
        many = sum(len(ev.user_ids) for ev in events) >= COPY_FROM_ROWS
        await (self.db.run if many else self.db.run_ordered)("add_push_actions", txn_fn)

    async def counts_after(self, user_id: str, after: dict[str, int], upto: int
                           ) -> dict[str, dict[str, tuple[int, int]]]:
        """room -> thread -> (notifications, highlights) for actions after each room's position, up to ``upto``."""
        rooms = list(after.items())

        def txn_fn(txn):
            out: dict[str, dict[str, tuple[int, int]]] = {}
            for i in range(0, len(rooms), _COUNT_CHUNK):
                chunk = rooms[i:i + _COUNT_CHUNK]
                where = " OR ".join("(room_id = ? AND stream_ordering > ?)" for _ in chunk)
                args: list = [user_id, upto] + [v for pair in chunk for v in pair]
                for room_id, thread_id, count, highlights in txn.select_all(
                        "SELECT room_id, thread_id, COUNT(*), SUM(highlight) FROM push_actions"
                        f" WHERE user_id = ? AND stream_ordering <= ? AND ({where}) GROUP BY room_id, thread_id",
                        args):
                    out.setdefault(room_id, {})[thread_id] = (int(count), int(highlights or 0))
            return out

        return await self.db.run("push_counts_after", txn_fn)

    async def thread_counts_after(self, user_id: str, room_id: str, thread_id: str, after: int,
                                  upto: int) -> tuple[int, int]:
        row = await self.db.run("push_thread_counts", lambda t: t.select_one(
            "SELECT COUNT(*), SUM(highlight) FROM push_actions WHERE user_id = ? AND room_id = ?"
            " AND thread_id = ? AND stream_ordering > ? AND stream_ordering <= ?",
            (user_id, room_id, thread_id, after, upto)))
        return int(row[0]), int(row[1] or 0)

    async def notifications(self, user_id: str, before: int | None, limit: int,
                            only_highlight: bool) -> list[PushAction]:
        """The user's push actions, newest first, below ``before`` (spec GET /notifications)."""
        sql = _SELECT_ACTIONS + " WHERE user_id = ?"
        args: list = [user_id]
        if before is not None:
            sql += " AND stream_ordering < ?"
            args.append(before)
        if only_highlight:
            sql += " AND highlight = 1"
        sql += " ORDER BY stream_ordering DESC LIMIT ?"
        args.append(limit)
        rows = await self.db.run("get_notifications", lambda t: t.select_all(sql, args))
        return [_action(r) for r in rows]

    async def actions_after(self, user_id: str, after: int, upto: int, limit: int) -> list[PushAction]:
        """The user's push actions in (after, upto], oldest first (what a pusher sends next)."""
        rows = await self.db.run("push_actions_after", lambda t: t.select_all(
            _SELECT_ACTIONS + " WHERE user_id = ? AND stream_ordering > ? AND stream_ordering <= ?"
            " ORDER BY stream_ordering LIMIT ?", (user_id, after, upto, limit)))
        return [_action(r) for r in rows]


def _action(row) -> PushAction:
    return PushAction(row[0], row[1], row[2], row[3], row[4], bool(row[5]), json.loads(row[6]), row[7])

"""Rooms, events, the event graph's edges, current state and state groups.

State is kept as state groups (the state after an event): each state event
makes a group holding only its delta over the previous group, with a full
snapshot every ``SNAPSHOT_EVERY`` deltas so that reading a group is two
queries at most.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from homeserver.events.identifiers import domain_of
from homeserver.lru import LruCache
from homeserver.storage.database import Database, Store
from homeserver.storage.streams import max_position
from homeserver.storage.user_directory import like_pattern

StateKey = tuple[str, str]

SNAPSHOT_EVERY = 100
CHAIN_LENGTHS_KEPT = 10_000  # state groups whose chain length is kept in memory (the rooms' latest, in practice)

MIGRATIONS = [
    """
    CREATE TABLE rooms (
        room_id TEXT PRIMARY KEY,
        room_version TEXT NOT NULL,
        creator TEXT,
        is_public INTEGER NOT NULL DEFAULT 0,
        creation_ts BIGINT NOT NULL
    );
    CREATE TABLE events (
        stream_ordering BIGINT PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        room_id TEXT NOT NULL,
        type TEXT NOT NULL,
        state_key TEXT,
        sender TEXT NOT NULL,
        depth BIGINT NOT NULL,
        origin_server_ts BIGINT NOT NULL,
        json TEXT NOT NULL,
        outlier INTEGER NOT NULL DEFAULT 0,
        state_group BIGINT,
        replaces_state TEXT,
        redacted_by TEXT,
        relates_to TEXT,
        rel_type TEXT,
        thread_id TEXT,
        txn_device TEXT,
        txn_id TEXT
    );
    CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
    CREATE INDEX events_relates ON events (relates_to, rel_type);
    CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
    CREATE INDEX events_room_type_key ON events (room_id, type, state_key);
    CREATE TABLE event_txn_ids (
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        PRIMARY KEY (room_id, user_id, device_id, txn_id)
    );
    CREATE TABLE forward_extremities (
        room_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        PRIMARY KEY (room_id, event_id)
    );
    CREATE TABLE current_state (
        room_id TEXT NOT NULL,
        type TEXT NOT NULL,
        state_key TEXT NOT NULL,
        event_id TEXT NOT NULL,
        membership TEXT,
        stream_ordering BIGINT NOT NULL,
        PRIMARY KEY (room_id, type, state_key)
    );
    CREATE INDEX current_state_member ON current_state (state_key, type);
    CREATE TABLE state_groups (
        id BIGINT PRIMARY KEY,
        room_id TEXT NOT NULL,
        prev_group BIGINT,
        chain_length INTEGER NOT NULL
    );
    CREATE TABLE state_group_entries (
        state_group BIGINT NOT NULL,
        type TEXT NOT NULL,
        state_key TEXT NOT NULL,
        event_id TEXT NOT NULL
    );
    CREATE INDEX state_group_entries_group ON state_group_entries (state_group);
    CREATE TABLE rejections (
        event_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE room_forgotten (
        user_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        PRIMARY KEY (user_id, room_id)
    )
    """,
    """
    CREATE TABLE partial_joins (
        room_id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        servers TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE pending_redactions (
        redacts TEXT NOT NULL,
        event_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        sender_domain TEXT
    );
    CREATE INDEX pending_redactions_redacts ON pending_redactions (redacts)
    """,
]


@dataclass
class StoredEvent:
    """A persisted PDU with the metadata the server keeps beside it."""

    event_id: str
    pdu: dict
    stream_ordering: int
    room_id: str
    outlier: bool = False
    state_group: int | None = None
    replaces_state: str | None = None
    redacted_by: str | None = None
    txn_device: str | None = None
    txn_id: str | None = None

    @property
    def type(self) -> str:
        return self.pdu["type"]

    @property
    def state_key(self) -> str | None:
        return self.pdu.get("state_key")

    @property
    def sender(self) -> str:
        return self.pdu["sender"]

    @property
    def content(self) -> dict:
        return self.pdu.get("content", {})


@dataclass(frozen=True)
class CurrentStateEntry:
    event_id: str
    membership: str | None
    stream_ordering: int


@dataclass
class NewEvent:
    """Everything one persisted event writes.

    When ``state_group_delta`` is set, a new state group ``event.state_group`` is
    stored as ``prev_state_group`` plus that delta.
    """

    event: StoredEvent
    txn: tuple[str, str, str] | None = None          # (user_id, device_id, txn_id)
    state_group_delta: dict[StateKey, str] | None = None
    prev_state_group: int | None = None
    extremities_remove: list[str] = field(default_factory=list)
    add_extremity: bool = True
    current_state_delta: dict[StateKey, CurrentStateEntry] = field(default_factory=dict)
    redacts: str | None = None                       # event redacted by this one (if authorised)
    # A remote redaction of an event we do not hold yet: (target id, the domain whose users' events it may
    # redact, or None when its sender may redact anyone's), applied when the target comes (see persist_events).
    pending_redaction: tuple[str, str | None] | None = None
    was_outlier: bool = False                        # an outlier joining the timeline (backfill)
    encoded: bytes | None = None                     # the PDU's JSON, if encoded already (see validate_pdu)


_EVENT_COLUMNS = ("event_id, json, stream_ordering, room_id, outlier, state_group, replaces_state, redacted_by,"
                  " txn_device, txn_id")


def _rows_to_events(rows) -> list[StoredEvent]:
    """The events of ``rows`` (:data:`_EVENT_COLUMNS`), their PDUs decoded as one JSON array: the decoder then
    keeps one copy of each key for the whole batch, and the batch shares one copy of each room ID and event
    type (a third less memory for the events the cache holds, decoded no slower)."""
    if not rows:
        return []
    pdus = json.loads("[" + ",".join(row[1] for row in rows) + "]")
    same: dict[str, str] = {}
    events = []
    for row, pdu in zip(rows, pdus):
        room_id = same.setdefault(row[3], row[3])
        if pdu.get("room_id") == room_id:
            pdu["room_id"] = room_id
        event_type = pdu.get("type")
        if isinstance(event_type, str):
            pdu["type"] = same.setdefault(event_type, event_type)
        pdu["event_id"] = row[0]
        events.append(StoredEvent(row[0], pdu, row[2], room_id, bool(row[4]), row[5], row[6], row[7], row[8],
                                  row[9]))
    return events


_EVENT_ROW_COLUMNS = ("stream_ordering", "event_id", "room_id", "type", "state_key", "sender", "depth",
                      "origin_server_ts", "json", "outlier", "state_group", "replaces_state", "relates_to",
                      "rel_type", "thread_id", "txn_device", "txn_id")


def _event_row(new: NewEvent) -> tuple:
    """The ``events`` row (:data:`_EVENT_ROW_COLUMNS`) of a new event: its PDU as stored JSON, its relation, its
    transaction id."""
    ev = new.event
    relates_to, rel_type, thread_id = _relation_of(ev.pdu)
    return (ev.stream_ordering, ev.event_id, ev.room_id, ev.type, ev.state_key, ev.sender,
            ev.pdu.get("depth", 0), ev.pdu.get("origin_server_ts", 0),
            new.encoded.decode("utf-8") if new.encoded is not None
            else json.dumps(_pdu_for_storage(ev.pdu), separators=(",", ":"), ensure_ascii=False),
            int(ev.outlier), ev.state_group, ev.replaces_state, relates_to, rel_type, thread_id,
            new.txn[1] if new.txn else None, new.txn[2] if new.txn else None)


def _rows_by_event_id(txn, columns: str, ids: list[str]) -> Iterator[list[tuple]]:
    """``events`` rows of ``ids``, 500 per statement (under every engine's parameter limit), a list per
    statement: a caller that turns each into something smaller never holds every row at once."""
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        yield txn.select_all(f"SELECT {columns} FROM events WHERE event_id IN ({','.join('?' * len(chunk))})",
                             chunk)


def _relation_of(pdu: dict) -> tuple[str | None, str | None, str | None]:
    rel = pdu.get("content", {}).get("m.relates_to")
    if not isinstance(rel, dict):
        return None, None, None
    target = rel.get("event_id") if isinstance(rel.get("event_id"), str) else None
    rel_type = rel.get("rel_type") if isinstance(rel.get("rel_type"), str) else None
    thread_id = target if rel_type == "m.thread" else None
    return target, rel_type, thread_id


class EventStore(Store):
    def __init__(self, db: Database):
        super().__init__(db)
        # A state group's chain length (a row never changed), kept once committed: a room's next state event
        # starts its group from the room's latest, and so writes it without waiting for a read.
        self._chain_lengths: LruCache[int, int] = LruCache(CHAIN_LENGTHS_KEPT)

    # -- start-up ------------------------------------------------------------
    def max_stream_ordering_sync(self) -> int:
        return self.db.run_sync("max_stream", max_position, "events", "stream_ordering")

    def max_state_group_sync(self) -> int:
        return self.db.run_sync("max_state_group", max_position, "state_groups", "id")

    # -- rooms -----------------------------------------------------------------
    async def store_room(self, room_id: str, room_version: str, creator: str, is_public: bool, now_ms: int) -> None:
        await self.db.run("store_room", lambda t: t.execute(
            "INSERT INTO rooms (room_id, room_version, creator, is_public, creation_ts) VALUES (?, ?, ?, ?, ?)",
            (room_id, room_version, creator, int(is_public), now_ms)))

    async def get_room_version(self, room_id: str) -> str | None:
        return await self.db.run("get_room_version", lambda t: t.select_value(
            "SELECT room_version FROM rooms WHERE room_id = ?", (room_id,)))

    async def set_room_public(self, room_id: str, is_public: bool) -> None:
        await self.db.run("set_room_public", lambda t: t.execute(
            "UPDATE rooms SET is_public = ? WHERE room_id = ?", (int(is_public), room_id)))

    async def is_room_public(self, room_id: str) -> bool:
        return bool(await self.db.run("is_room_public", lambda t: t.select_value(
            "SELECT is_public FROM rooms WHERE room_id = ?", (room_id,), default=0)))

    async def public_room_ids(self) -> list[str]:
        return [r[0] for r in await self.db.run("public_room_ids", lambda t: t.select_all(
            "SELECT room_id FROM rooms WHERE is_public = 1"))]

    # -- events ----------------------------------------------------------------
    async def get_events(self, event_ids) -> dict[str, StoredEvent]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        return await self.db.run("get_events", lambda txn: {
            ev.event_id: ev for rows in _rows_by_event_id(txn, _EVENT_COLUMNS, ids) for ev in _rows_to_events(rows)})

    async def get_pdu_json(self, event_ids) -> dict[str, tuple[str, bool]]:
        """Each event's PDU as stored (its JSON text, without decoding it) and whether it was redacted."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        return await self.db.run("get_pdu_json", lambda txn: {
            eid: (text, redacted_by is not None)
            for rows in _rows_by_event_id(txn, "event_id, json, redacted_by", ids) for eid, text, redacted_by in rows})

    async def get_event_id_for_txn(self, room_id: str, user_id: str, device_id: str, txn_id: str) -> str | None:
        return await self.db.run("get_txn", lambda t: t.select_value(
            "SELECT event_id FROM event_txn_ids WHERE room_id = ? AND user_id = ? AND device_id = ? AND txn_id = ?",
            (room_id, user_id, device_id, txn_id)))

    async def get_event_ids_for_txns(self, room_id: str, txns: list[tuple[str, str, str]]
                                     ) -> dict[tuple[str, str, str], str]:
        """The events already sent to the room with these (user id, device id, transaction id), in one
        statement (per 100)."""
        txns = list(dict.fromkeys(txns))
        if not txns:
            return {}

        def txn_fn(t):
            found = {}
            for i in range(0, len(txns), 100):
                chunk = txns[i:i + 100]
                where = " OR ".join(["(user_id = ? AND device_id = ? AND txn_id = ?)"] * len(chunk))
                for user_id, device_id, txn_id, event_id in t.select_all(
                        "SELECT user_id, device_id, txn_id, event_id FROM event_txn_ids"
                        f" WHERE room_id = ? AND ({where})", (room_id, *[v for key in chunk for v in key])):
                    found[(user_id, device_id, txn_id)] = event_id
            return found

        return await self.db.run("get_txns", txn_fn)

    async def min_stream_ordering(self) -> int:
        return await self.db.run("min_stream_ordering", lambda t: t.select_value(
            "SELECT MIN(stream_ordering) FROM events", default=0))

    async def oldest_events(self, room_id: str, limit: int = 5) -> list[StoredEvent]:
        """The room's earliest timeline events (where backfill starts)."""
        rows = await self.db.run("oldest_events", lambda t: t.select_all(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE room_id = ? AND outlier = 0"
            " ORDER BY stream_ordering ASC LIMIT ?", (room_id, limit)))
        return _rows_to_events(rows)

    async def get_forward_extremities(self, room_id: str) -> list[str]:
        return [r[0] for r in await self.db.run("get_extremities", lambda t: t.select_all(
            "SELECT event_id FROM forward_extremities WHERE room_id = ?", (room_id,)))]

    async def get_current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        rows = await self.db.run("get_current_state", lambda t: t.select_all(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?", (room_id,)))
        return {(r[0], r[1]): r[2] for r in rows}

    async def persist_events(self, new_events: list[NewEvent], *, apply_pending_redactions: bool = False
                             ) -> dict[str, str]:
        """Write a batch of events, their state and the room's new extremities in one transaction (which may
        hold other rooms' batches too: ``Database.run_grouped``). With ``apply_pending_redactions`` (events
        from other servers), the redactions received before these events are applied to them: returns target
        id -> redaction id of those."""
        def txn_fn(txn):
            self._persist_events_txn(txn, new_events)
            return self._apply_pending_redactions_txn(txn, new_events) if apply_pending_redactions else {}

        return await self.db.run_grouped("persist_events", txn_fn)  # under the room's lock

    def _apply_pending_redactions_txn(self, txn, new_events: list[NewEvent]) -> dict[str, str]:
        """Spec room versions, "Redactions": a redaction waiting for its target applies if the target is in
        the same room and its sender's domain is the one the redaction may redact (or any, by power)."""
        txn.insert_rows("pending_redactions", ("redacts", "event_id", "room_id", "sender_domain"), [
            (target_id, new.event.event_id, new.event.room_id, sender_domain)
            for new in new_events if new.pending_redaction is not None
            for target_id, sender_domain in [new.pending_redaction]])
        targets = {new.event.event_id: new.event for new in new_events if not new.was_outlier}
        rows = []
        ids = list(targets)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows += txn.select_all("SELECT redacts, event_id, room_id, sender_domain FROM pending_redactions"
                                   f" WHERE redacts IN ({','.join('?' * len(chunk))})", chunk)
        applied: dict[str, str] = {}
        for target_id, redaction_id, room_id, sender_domain in rows:
            target = targets[target_id]
            if target_id not in applied and target.room_id == room_id \
                    and sender_domain in (None, domain_of(target.sender)):
                applied[target_id] = redaction_id
        txn.executemany("UPDATE events SET redacted_by = ? WHERE event_id = ? AND redacted_by IS NULL",
                        [(redaction_id, target_id) for target_id, redaction_id in applied.items()])
        txn.executemany("DELETE FROM pending_redactions WHERE redacts = ?", [(t,) for t in {r[0] for r in rows}])
        return applied

    def _persist_events_txn(self, txn, new_events: list[NewEvent]) -> None:
        """State groups and events first (new rows in one statement), then what refers to them, in order."""
        for new in new_events:
            ev = new.event
            if new.state_group_delta is not None:
                self._store_state_group_txn(txn, ev.room_id, ev.state_group, new.prev_state_group,
                                            new.state_group_delta)
            if new.was_outlier:
                txn.execute("UPDATE events SET outlier = ?, stream_ordering = ?, state_group = ?, replaces_state = ?"
                            " WHERE event_id = ?", (int(ev.outlier), ev.stream_ordering, ev.state_group,
                                                    ev.replaces_state, ev.event_id))
        txn.insert_rows("events", _EVENT_ROW_COLUMNS, [_event_row(new) for new in new_events if not new.was_outlier])
        for new in new_events:
            ev = new.event
            if new.txn is not None:
                txn.execute("INSERT INTO event_txn_ids (room_id, user_id, device_id, txn_id, event_id)"
                            " VALUES (?, ?, ?, ?, ?)", (ev.room_id, *new.txn, ev.event_id))
            if ev.outlier:
                continue
            for old in new.extremities_remove:
                txn.execute("DELETE FROM forward_extremities WHERE room_id = ? AND event_id = ?", (ev.room_id, old))
            if new.add_extremity:
                txn.execute("INSERT INTO forward_extremities (room_id, event_id) VALUES (?, ?)",
                            (ev.room_id, ev.event_id))
            self._update_current_state_txn(txn, ev.room_id, new.current_state_delta)
            if new.redacts is not None:
                txn.execute("UPDATE events SET redacted_by = ? WHERE event_id = ? AND redacted_by IS NULL",
                            (ev.event_id, new.redacts))

    # -- joins whose room state is still being fetched (server-server "omit_members") ------------
    async def add_partial_join(self, room_id: str, event_id: str, servers: list[str]) -> None:
        await self.db.run("add_partial_join", lambda t: t.execute(
            "INSERT INTO partial_joins (room_id, event_id, servers) VALUES (?, ?, ?)",
            (room_id, event_id, json.dumps(servers))))

    async def remove_partial_join(self, room_id: str) -> None:
        await self.db.run("remove_partial_join", lambda t: t.execute(
            "DELETE FROM partial_joins WHERE room_id = ?", (room_id,)))

    async def partial_joins(self) -> list[tuple[str, str, list[str]]]:
        """(room id, join event id, servers in the room) of every join still completing."""
        rows = await self.db.run("partial_joins", lambda t: t.select_all(
            "SELECT room_id, event_id, servers FROM partial_joins"))
        return [(room_id, event_id, json.loads(servers)) for room_id, event_id, servers in rows]

    async def persist_out_of_band_membership(self, event: StoredEvent, entry: CurrentStateEntry) -> None:
        def txn_fn(txn):
            self._persist_events_txn(txn, [NewEvent(event=event, add_extremity=False)])
            self._update_current_state_txn(txn, event.room_id, {("m.room.member", event.state_key): entry})

        await self.db.run_ordered("persist_out_of_band_membership", txn_fn)  # under the room's lock

    def _update_current_state_txn(self, txn, room_id: str, delta: dict[StateKey, CurrentStateEntry]) -> None:
        txn.executemany("DELETE FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?",
                        [(room_id, typ, key) for typ, key in delta])
        txn.insert_rows("current_state", ("room_id", "type", "state_key", "event_id", "membership", "stream_ordering"),
                        [(room_id, typ, key, e.event_id, e.membership, e.stream_ordering)
                         for (typ, key), e in delta.items()])
        txn.executemany("DELETE FROM room_forgotten WHERE user_id = ? AND room_id = ?",
                        [(key, room_id) for (_, key), e in delta.items() if e.membership == "join"])

    def _store_state_group_txn(self, txn, room_id, group, prev_group, delta: dict[StateKey, str]) -> None:
        chain = 0
        if prev_group is not None:
            prev_chain = self._chain_lengths.get(prev_group)
            if prev_chain is None:
                prev_chain = txn.select_value("SELECT chain_length FROM state_groups WHERE id = ?", (prev_group,),
                                              default=0)
            chain = prev_chain + 1
        if prev_group is not None and chain >= SNAPSHOT_EVERY:
            full = self._state_group_txn(txn, prev_group)
            full.update(delta)
            prev_group, chain, delta = None, 0, full
        txn.execute("INSERT INTO state_groups (id, room_id, prev_group, chain_length) VALUES (?, ?, ?, ?)",
                    (group, room_id, prev_group, chain))
        txn.after_commit.append(lambda: self._chain_lengths.put(group, chain))
        txn.insert_rows("state_group_entries", ("state_group", "type", "state_key", "event_id"),
                        [(group, t, k, e) for (t, k), e in delta.items()])

    def _state_group_txn(self, txn, group: int, where: str = "", args: tuple = ()) -> dict[StateKey, str]:
        return self._state_groups_txn(txn, [group], where, args)[group]

    def _state_groups_txn(self, txn, groups: list[int], where: str = "", args: tuple = ()
                          ) -> dict[int, dict[StateKey, str]]:
        """Each group's full state: its chain of deltas, oldest first, newer entries winning (one statement per
        :data:`PARTS_PER_STATEMENT` groups)."""
        states: dict[int, dict[StateKey, str]] = {g: {} for g in groups}
        for i in range(0, len(groups), PARTS_PER_STATEMENT):
            chunk = groups[i:i + PARTS_PER_STATEMENT]
            rows = txn.select_all(
                "WITH RECURSIVE chain(start, id, prev_group, n) AS ("
                f" SELECT id, id, prev_group, 0 FROM state_groups WHERE id IN ({','.join('?' * len(chunk))})"
                " UNION ALL SELECT c.start, g.id, g.prev_group, c.n + 1 FROM state_groups g"
                " JOIN chain c ON g.id = c.prev_group)"
                " SELECT c.start, e.type, e.state_key, e.event_id FROM chain c"
                f" JOIN state_group_entries e ON e.state_group = c.id {where} ORDER BY c.start, c.n DESC",
                (*chunk, *args))
            for start, typ, key, event_id in rows:
                states[start][(typ, key)] = event_id
        return states

    async def get_state_group(self, group: int | None) -> dict[StateKey, str]:
        if group is None:
            return {}
        return await self.db.run("get_state_group", self._state_group_txn, group)

    async def get_state_groups(self, groups) -> dict[int, dict[StateKey, str]]:
        """Several state groups in one transaction (None is the empty state)."""
        wanted = set(groups)

        def txn_fn(txn):
            states: dict = self._state_groups_txn(txn, [g for g in wanted if g is not None])
            return states | {None: {}} if None in wanted else states

        return await self.db.run("get_state_groups", txn_fn)

    async def server_view_of_state_groups(self, groups, server_name: str) -> dict[int, dict[StateKey, str]]:
        """Of each state group, only the history visibility and the memberships whose state key contains
        ``:server_name`` (a superset of that server's users' memberships), all in one transaction."""
        pattern = like_pattern(":" + server_name)
        where = ("WHERE e.type = 'm.room.history_visibility'"
                 " OR (e.type = 'm.room.member' AND e.state_key LIKE ? ESCAPE '\\')")
        return await self.db.run("server_view_of_state_groups", self._state_groups_txn, list(set(groups)), where,
                                 (pattern,))

    async def store_state_group(self, room_id: str, group: int, prev_group: int | None,
                                delta: dict[StateKey, str]) -> None:
        await self.db.run("store_state_group", self._store_state_group_txn, room_id, group, prev_group, delta)

    async def mark_redacted(self, event_id: str, redaction_id: str) -> None:
        await self.db.run("mark_redacted", lambda t: t.execute(
            "UPDATE events SET redacted_by = ? WHERE event_id = ? AND redacted_by IS NULL", (redaction_id, event_id)))

    # -- timelines -----------------------------------------------------------------
    async def room_events_between(self, room_id: str, from_pos: int, to_pos: int, limit: int,
                                  *, backwards: bool) -> list[StoredEvent]:
        """Events with from < stream_ordering <= to (forwards) or to < so <= from (backwards), newest first when backwards."""
        return await self.db.run("room_events_between", _room_events_txn, room_id, from_pos, to_pos, limit,
                                 backwards)

    async def timeline_events_after(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        """Timeline events of every room with after < stream_ordering <= upto, oldest first."""
        rows = await self.db.run("timeline_events_after", lambda t: t.select_all(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_ordering > ? AND stream_ordering <= ?"
            " AND outlier = 0 ORDER BY stream_ordering LIMIT ?", (after, upto, limit)))
        return _rows_to_events(rows)

    async def latest_room_event_ids(self, ranges: dict[str, tuple[int, int]], limit: int) -> dict[str, list[str]]:
        """For each room, ``room_id -> (from, to)``: the ids of its newest ``limit`` events with
        to < stream_ordering <= from, newest first, all in one transaction (the timelines of a /sync,
        whose events are mostly cached already)."""
        rooms = list(ranges)

        def txn_fn(txn):
            rows = _per_part(txn, "event_id, stream_ordering FROM events WHERE room_id = ? AND outlier = 0"
                             " AND stream_ordering <= ? AND stream_ordering > ? ORDER BY stream_ordering DESC LIMIT ?",
                             [(room_id, *ranges[room_id], limit) for room_id in rooms])
            found: dict[str, list[str]] = {room_id: [] for room_id in rooms}
            for part, event_id, _ in sorted(rows, key=lambda r: (r[0], -r[2])):
                found[rooms[part]].append(event_id)
            return found

        return await self.db.run("latest_room_event_ids", txn_fn)

    async def rooms_for_sync(self, user_id: str, from_pos: int | None, to_pos: int
                             ) -> tuple[dict[str, tuple[str, str, int]], set[str], set[str]]:
        """What each /sync starts from, in one transaction: the user's :meth:`rooms_for_user`, the rooms
        they forgot, and (after ``from_pos``) which of their joined rooms have events in (from_pos, to_pos]."""

        def txn_fn(txn):
            # One statement (an initial sync's is then one autocommitted round trip): a forgotten room is one
            # the user has a membership of.
            rows = txn.select_all(
                "SELECT c.room_id, c.membership, c.event_id, c.stream_ordering, f.room_id FROM current_state c"
                " LEFT JOIN room_forgotten f ON f.user_id = c.state_key AND f.room_id = c.room_id"
                " WHERE c.type = 'm.room.member' AND c.state_key = ?", (user_id,))
            memberships = {r[0]: (r[1], r[2], r[3]) for r in rows}
            forgotten = {r[0] for r in rows if r[4] is not None}
            joined = {r for r, (m, _, _) in memberships.items() if m == "join"}
            if from_pos is None or not joined or from_pos >= to_pos:
                return memberships, forgotten, set()
            rows = txn.select_all("SELECT DISTINCT room_id FROM events WHERE stream_ordering > ?"
                                  " AND stream_ordering <= ? AND outlier = 0", (from_pos, to_pos))
            return memberships, forgotten, {r[0] for r in rows if r[0] in joined}

        # Two names: an incremental sync's second statement must not make the initial syncs' transactional.
        return await self.db.run("rooms_for_sync" if from_pos is None else "rooms_for_sync_since", txn_fn)

    async def state_group_at_position(self, room_id: str, pos: int) -> int | None:
        """The state group after the last event of the room at or before a stream position."""
        return await self.db.run("state_group_at_position", _state_group_at_txn, room_id, pos)

    async def state_groups_at_positions(self, wanted) -> dict[tuple[str, int], int | None]:
        """:meth:`state_group_at_position` of several ``(room_id, position)`` in one transaction."""
        wanted = list(set(wanted))

        def txn_fn(txn):
            rows = _per_part(txn, _STATE_GROUP_AT, wanted)
            found: dict[tuple[str, int], int | None] = dict.fromkeys(wanted)
            for part, group in rows:
                found[wanted[part]] = group
            return found

        return await self.db.run("state_groups_at_positions", txn_fn)

    async def event_position_by_ts(self, room_id: str, ts: int, forwards: bool) -> tuple[str, int] | None:
        """Spec /timestamp_to_event: closest event at or after (forwards) / at or before ts."""
        if forwards:
            sql = ("SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND outlier = 0"
                   " AND origin_server_ts >= ? ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1")
        else:
            sql = ("SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND outlier = 0"
                   " AND origin_server_ts <= ? ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1")
        row = await self.db.run("timestamp_to_event", lambda t: t.select_one(sql, (room_id, ts)))
        return None if row is None else (row[0], row[1])

    async def visibility_timelines(self, room_id: str, user_id: str) -> tuple[list, list]:
        """The user's membership changes and the room's history_visibility changes, as (position, value)."""
        return (await self.db.run("visibility_timelines", _visibility_timelines_txn, [room_id], user_id))[room_id]

    async def visibility_timelines_in_rooms(self, room_ids, user_id: str) -> dict[str, tuple[list, list]]:
        """:meth:`visibility_timelines` of several rooms in one transaction."""
        return await self.db.run("visibility_timelines_in_rooms", _visibility_timelines_txn, list(set(room_ids)),
                                 user_id)

    # -- relations -------------------------------------------------------------------
    async def get_relations(self, event_id: str, rel_type: str | None, event_type: str | None,
                            from_pos: int | None, limit: int, backwards: bool) -> list[StoredEvent]:
        def txn_fn(txn):
            sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE relates_to = ?"
            args: list = [event_id]
            if rel_type is not None:
                sql += " AND rel_type = ?"
                args.append(rel_type)
            if event_type is not None:
                sql += " AND type = ?"
                args.append(event_type)
            if from_pos is not None:
                sql += " AND stream_ordering < ?" if backwards else " AND stream_ordering > ?"
                args.append(from_pos)
            sql += f" ORDER BY stream_ordering {'DESC' if backwards else 'ASC'} LIMIT ?"
            args.append(limit)
            return _rows_to_events(txn.select_all(sql, args))

        return await self.db.run("get_relations", txn_fn)

    async def get_relation_summaries(self, event_ids: list[str]) -> dict[str, dict]:
        """For bundling (spec "Aggregations of child events"): latest edit and thread summary per parent, in one
        statement per 1,000 parents (so, on PostgreSQL, usually one autocommitted round trip)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}

        def txn_fn(txn):
            out: dict[str, dict] = {}
            for i in range(0, len(ids), 1000):
                edited, edited_args = txn.one_of("e.relates_to", ids[i:i + 1000])
                threaded, threaded_args = txn.one_of("relates_to", ids[i:i + 1000])
                # Spec "Event replacements": only edits by the original's sender, of its type, in its room count;
                # the latest (by origin_server_ts, then event id) wins. Threads: their size and latest event.
                rows = txn.select_all(
                    "SELECT 0, e.relates_to, e.event_id, e.sender, 0, e.origin_server_ts FROM events e"
                    " JOIN events p ON p.event_id = e.relates_to"
                    f" WHERE {edited} AND e.rel_type = 'm.replace' AND e.redacted_by IS NULL"
                    " AND e.sender = p.sender AND e.type = p.type AND e.room_id = p.room_id"
                    " UNION ALL SELECT 1, t.relates_to, l.event_id, NULL, t.n, 0 FROM"
                    " (SELECT relates_to, COUNT(*) AS n, MAX(stream_ordering) AS latest FROM events"
                    f" WHERE {threaded} AND rel_type = 'm.thread' GROUP BY relates_to) t"
                    " JOIN events l ON l.stream_ordering = t.latest"
                    " ORDER BY 1, 6, 3", edited_args + threaded_args)
                for kind, parent, event_id, sender, count, _ in rows:
                    if kind == 0:
                        out.setdefault(parent, {})["edit"] = (event_id, sender)
                    else:
                        out.setdefault(parent, {})["thread"] = (count, event_id)
            return out

        return await self.db.run("get_relation_summaries", txn_fn)

    async def threads_of_room(self, room_id: str, from_pos: int | None, limit: int) -> list[tuple[str, int]]:
        """Thread roots of a room, most recently active first: (root event id, latest position)."""

        def txn_fn(txn):
            sql = ("SELECT relates_to, MAX(stream_ordering) AS latest FROM events WHERE room_id = ? AND rel_type = 'm.thread'"
                   " GROUP BY relates_to")
            args: list = [room_id]
            if from_pos is not None:
                sql += " HAVING MAX(stream_ordering) < ?"
                args.append(from_pos)
            sql += " ORDER BY latest DESC LIMIT ?"
            args.append(limit)
            return [(r[0], r[1]) for r in txn.select_all(sql, args)]

        return await self.db.run("threads_of_room", txn_fn)

    # -- memberships -------------------------------------------------------------------
    async def rooms_for_user(self, user_id: str) -> dict[str, tuple[str, str, int]]:
        """room_id -> (membership, event_id, stream_ordering) from current state."""
        return await self.db.run("rooms_for_user", _rooms_for_user_txn, user_id)

    async def joined_members(self, room_id: str) -> list[str]:
        return [r[0] for r in await self.db.run("joined_members", lambda t: t.select_all(
            "SELECT state_key FROM current_state WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'",
            (room_id,)))]

    async def users_sharing_rooms(self, user_id: str) -> set[str]:
        rows = await self.db.run("users_sharing_rooms", lambda t: t.select_all(
            "SELECT DISTINCT b.state_key FROM current_state a JOIN current_state b ON a.room_id = b.room_id"
            " WHERE a.type = 'm.room.member' AND a.state_key = ? AND a.membership = 'join'"
            " AND b.type = 'm.room.member' AND b.membership = 'join'", (user_id,)))
        return {r[0] for r in rows}

    async def forget_room(self, user_id: str, room_id: str) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM room_forgotten WHERE user_id = ? AND room_id = ?", (user_id, room_id))
            txn.execute("INSERT INTO room_forgotten (user_id, room_id) VALUES (?, ?)", (user_id, room_id))

        await self.db.run("forget_room", txn_fn)


def _rooms_for_user_txn(txn, user_id: str) -> dict[str, tuple[str, str, int]]:
    rows = txn.select_all("SELECT room_id, membership, event_id, stream_ordering FROM current_state"
                          " WHERE type = 'm.room.member' AND state_key = ?", (user_id,))
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _room_events_txn(txn, room_id: str, from_pos: int, to_pos: int, limit: int,
                     backwards: bool) -> list[StoredEvent]:
    if backwards:
        sql = (f"SELECT {_EVENT_COLUMNS} FROM events WHERE room_id = ? AND outlier = 0"
               " AND stream_ordering <= ? AND stream_ordering > ? ORDER BY stream_ordering DESC LIMIT ?")
    else:
        sql = (f"SELECT {_EVENT_COLUMNS} FROM events WHERE room_id = ? AND outlier = 0"
               " AND stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering ASC LIMIT ?")
    return _rows_to_events(txn.select_all(sql, (room_id, from_pos, to_pos, limit)))


_STATE_GROUP_AT = ("state_group FROM events WHERE room_id = ? AND outlier = 0 AND stream_ordering <= ?"
                   " ORDER BY stream_ordering DESC LIMIT 1")
PARTS_PER_STATEMENT = 100  # rooms (or state groups) per statement of a batched query


def _per_part(txn, query: str, parts: list[tuple]) -> list[tuple]:
    """``SELECT <query>`` (columns onwards; it may end in its own ORDER BY and LIMIT) once per args tuple of
    ``parts``, :data:`PARTS_PER_STATEMENT` of them in one statement (one round trip instead of one each): rows
    of (index of the part in ``parts``, the query's columns...), in no order. On PostgreSQL the parts are rows
    of a VALUES list the query joins LATERAL, so it is planned once (as a UNION ALL of the parts, each part
    was planned: most of the statement's time for 20 rooms); SQLite has no LATERAL, and plans in-process."""
    rows: list[tuple] = []
    for i in range(0, len(parts), PARTS_PER_STATEMENT):
        chunk = parts[i:i + PARTS_PER_STATEMENT]
        if txn.engine_name == "postgresql":
            width = len(chunk[0])
            pieces = query.split("?")
            columns = ", ".join(f"a{k}" for k in range(width))
            values = ", ".join(f"({i + j}, {', '.join('?' * width)})" for j in range(len(chunk)))
            sql = (f"SELECT v.part, p.* FROM (VALUES {values}) AS v(part, {columns}) CROSS JOIN LATERAL (SELECT "
                   + "".join(piece + (f"v.a{k}" if k < width else "") for k, piece in enumerate(pieces)) + ") AS p")
        else:
            sql = " UNION ALL ".join(f"SELECT * FROM (SELECT {i + j} AS part, {query}) AS p{j}"
                                     for j in range(len(chunk)))
        rows += txn.select_all(sql, [a for args in chunk for a in args])
    return rows


def _state_group_at_txn(txn, room_id: str, pos: int) -> int | None:
    return txn.select_value("SELECT " + _STATE_GROUP_AT, (room_id, pos))


def _visibility_timelines_txn(txn, room_ids: list[str], user_id: str) -> dict[str, tuple[list, list]]:
    """Of each room, the user's membership changes and the history_visibility changes, as (position, value)
    lists in stream order."""
    found: dict[str, tuple[list, list]] = {room_id: ([], []) for room_id in room_ids}
    for i in range(0, len(room_ids), PARTS_PER_STATEMENT):
        chunk = room_ids[i:i + PARTS_PER_STATEMENT]
        rows = txn.select_all(
            f"SELECT room_id, stream_ordering, type, json FROM events WHERE room_id IN ({','.join('?' * len(chunk))})"
            " AND outlier = 0 AND ((type = 'm.room.member' AND state_key = ?)"
            " OR (type = 'm.room.history_visibility' AND state_key = '')) ORDER BY stream_ordering", (*chunk, user_id))
        for room_id, pos, typ, raw in rows:
            content = json.loads(raw).get("content", {})
            members, visibilities = found[room_id]
            if typ == "m.room.member":
                members.append((pos, content.get("membership", "leave")))
            else:
                visibilities.append((pos, content.get("history_visibility", "shared")))
    return found


def _pdu_for_storage(pdu: dict) -> dict:
    """Room versions 1 and 2 carry ``event_id`` in the PDU ("$x:server"); later ones derive it, so drop it."""
    if ":" in pdu.get("event_id", ""):
        return pdu
    return {k: v for k, v in pdu.items() if k != "event_id"}

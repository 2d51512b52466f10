"""The outbound federation queue: one ordered queue of PDUs and EDUs per destination.

Server-server "Transactions": a transaction is resent unchanged (same txnId)
until the destination answers 200; only then are its entries deleted. Each
destination row keeps the transaction in flight and the retry backoff, so both
survive a restart. ``federation_stream_position`` holds the stream ordering of
the newest local room event queued, written in the same transaction as its
entries, so that the events a crash left unqueued are found again at start-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from homeserver.storage.database import Store
from homeserver.storage.streams import max_position

MIGRATIONS = [
    """
    CREATE TABLE federation_outbox (
        destination TEXT NOT NULL,
        position BIGINT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (destination, position)
    );
    CREATE TABLE federation_destinations (
        destination TEXT NOT NULL PRIMARY KEY,
        retry_last_ts BIGINT NOT NULL,
        retry_interval_ms BIGINT NOT NULL,
        txn_id TEXT,
        txn_ts BIGINT,
        txn_upto BIGINT
    )
    """,
    """
    CREATE TABLE federation_stream_position (
        stream_ordering BIGINT NOT NULL
    )
    """,
]

PDU = "pdu"
EDU = "edu"


@dataclass(frozen=True)
class OutboundTransaction:
    txn_id: str
    origin_server_ts: int
    pdus: list[dict]
    edus: list[dict]


@dataclass(frozen=True)
class RetryState:
    destination: str
    retry_last_ts: int
    retry_interval_ms: int


class FederationQueueStore(Store):
    def max_position_sync(self) -> int:
        return self.db.run_sync("federation_outbox_max", max_position, "federation_outbox", "position")

    async def max_position(self) -> int:
        return await self.db.run("federation_outbox_max", max_position, "federation_outbox", "position")

    async def enqueue(self, destinations: list[str], position: int, kind: str, payload: dict,
                      stream_ordering: int | None = None) -> None:
        """Append one entry at ``position`` to each destination's queue; with ``stream_ordering`` (a local
        room event's), record it as queued in the same transaction."""
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

        def txn_fn(txn):
            if stream_ordering is not None:
                _advance_stream_position_txn(txn, stream_ordering)
            txn.executemany("INSERT INTO federation_outbox (destination, position, kind, payload) VALUES (?, ?, ?, ?)",
                            [(d, position, kind, raw) for d in destinations])
            known = {r[0] for r in txn.select_all(
                "SELECT destination FROM federation_destinations WHERE destination IN (%s)"
                % ",".join("?" * len(destinations)), destinations)}
            txn.executemany("INSERT INTO federation_destinations (destination, retry_last_ts, retry_interval_ms)"
                            " VALUES (?, 0, 0)", [(d,) for d in destinations if d not in known])

        await self.db.run("federation_enqueue", txn_fn)

    async def next_transaction(self, destination: str, max_position: int, now_ms: int, *,
                               max_pdus: int, max_edus: int) -> OutboundTransaction | None:
        """The transaction in flight, or a new one from the head of the queue (up to
        ``max_position``, at most ``max_pdus``/``max_edus``, in order); None if the queue is empty."""
        def txn_fn(txn):
            row = txn.select_one("SELECT txn_id, txn_ts, txn_upto FROM federation_destinations"
                                 " WHERE destination = ?", (destination,))
            if row is not None and row[0] is not None:
                entries = txn.select_all("SELECT kind, payload FROM federation_outbox WHERE destination = ?"
                                         " AND position <= ? ORDER BY position", (destination, row[2]))
                return _build(row[0], int(row[1]), entries)
            entries = txn.select_all("SELECT position, kind, payload FROM federation_outbox WHERE destination = ?"
                                     " AND position <= ? ORDER BY position LIMIT ?",
                                     (destination, max_position, max_pdus + max_edus))
            taken, counts = [], {PDU: 0, EDU: 0}
            for position, kind, payload in entries:
                counts[kind] += 1
                if counts[PDU] > max_pdus or counts[EDU] > max_edus:
                    break
                taken.append((position, kind, payload))
            if not taken:
                return None
            upto = taken[-1][0]
            txn_id = f"{now_ms}.{upto}"
            txn.execute("UPDATE federation_destinations SET txn_id = ?, txn_ts = ?, txn_upto = ? WHERE destination = ?",
                        (txn_id, now_ms, upto, destination))
            return _build(txn_id, now_ms, [(kind, payload) for _, kind, payload in taken])

        return await self.db.run("federation_next_transaction", txn_fn)

    async def acknowledge(self, destination: str, txn_id: str) -> None:
        """The transaction was answered (or given up): drop its entries and reset the backoff."""
        def txn_fn(txn):
            upto = txn.select_value("SELECT txn_upto FROM federation_destinations WHERE destination = ?"
                                    " AND txn_id = ?", (destination, txn_id))
            if upto is None:
                return
            txn.execute("DELETE FROM federation_outbox WHERE destination = ? AND position <= ?", (destination, upto))
            txn.execute("UPDATE federation_destinations SET txn_id = NULL, txn_ts = NULL, txn_upto = NULL,"
                        " retry_last_ts = 0, retry_interval_ms = 0 WHERE destination = ?", (destination,))

        await self.db.run("federation_acknowledge", txn_fn)

    async def set_retry(self, destination: str, last_ts: int, interval_ms: int) -> None:
        await self.db.run("federation_set_retry", lambda t: t.execute(
            "UPDATE federation_destinations SET retry_last_ts = ?, retry_interval_ms = ? WHERE destination = ?",
            (last_ts, interval_ms, destination)))

    async def pending_destinations(self) -> list[RetryState]:
        """Destinations with queued entries, with their backoff (for resuming after a restart)."""
        rows = await self.db.run("federation_pending_destinations", lambda t: t.select_all(
            "SELECT d.destination, d.retry_last_ts, d.retry_interval_ms FROM federation_destinations d"
            " WHERE EXISTS (SELECT 1 FROM federation_outbox o WHERE o.destination = d.destination)"))
        return [RetryState(r[0], int(r[1]), int(r[2])) for r in rows]


    async def stream_position(self) -> int | None:
        """The stream ordering of the newest local room event known queued (None before the first start)."""
        return await self.db.run("federation_stream_position", lambda t: t.select_value(
            "SELECT stream_ordering FROM federation_stream_position"))

    async def advance_stream_position(self, stream_ordering: int) -> None:
        """Every local room event up to ``stream_ordering`` is queued (or needs no queueing)."""
        await self.db.run("federation_advance_stream_position", _advance_stream_position_txn, stream_ordering)


def _advance_stream_position_txn(txn, stream_ordering: int) -> None:
    """Move the position forwards only; the first call creates it."""
    txn.execute("UPDATE federation_stream_position SET stream_ordering = ? WHERE stream_ordering < ?",
                (stream_ordering, stream_ordering))
    if txn.rowcount == 0 and txn.select_one("SELECT 1 FROM federation_stream_position") is None:
        txn.execute("INSERT INTO federation_stream_position (stream_ordering) VALUES (?)", (stream_ordering,))


def _build(txn_id: str, ts: int, entries) -> OutboundTransaction:
    pdus, edus = [], []
    for kind, payload in entries:
        (pdus if kind == PDU else edus).append(json.loads(payload))
    return OutboundTransaction(txn_id, ts, pdus, edus)

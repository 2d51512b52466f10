"""Sending PDUs and EDUs to other servers in transactions.

Server-server "Transactions": ``PUT /_matrix/federation/v1/send/{txnId}`` with at
most 50 PDUs and 100 EDUs; the same transaction is retried until the
destination answers 200 before another is sent. Each destination has one
ordered queue in the database (:mod:`homeserver.storage.federation_queue`) and at
most one transaction in flight. Failures back off exponentially (by default 1 s
doubling to 1 h, Synapse's ``federation.destination_*_retry_*`` keys; persisted);
when the peer answers again, or we hear from it
(:meth:`FederationSender.wake`), everything it missed follows in order.
"""

from __future__ import annotations

import logging
from typing import Callable
from urllib.parse import quote

from twisted.internet import defer

from federation.client import FederationDeniedError, HttpResponseError
from federation.peers import FederationPeers
from homeserver.storage.federation_queue import EDU, PDU, FederationQueueStore

logger = logging.getLogger(__name__)

MAX_PDUS_PER_TXN = 50
MAX_EDUS_PER_TXN = 100
MIN_RETRY_MS = 1000
MAX_RETRY_MS = 3600 * 1000
# Answers that will not change by resending the same transaction: give it up and move on.
_PERMANENT_STATUSES = frozenset({400, 403, 404, 405, 413})


class FederationSender:
    def __init__(self, *, reactor, store: FederationQueueStore, client, server_name: str,
                 peers: FederationPeers, now_ms: Callable[[], int], positions,
                 transmits: Callable[[str], bool] = lambda destination: True,
                 on_queued: Callable[[int, list[str]], None] | None = None,
                 min_retry_ms: int = MIN_RETRY_MS, max_retry_ms: int = MAX_RETRY_MS, retry_multiplier: float = 2):
        self._reactor = reactor
        self._store = store
        self._client = client
        self._server_name = server_name
        self._peers = peers
        self._now_ms = now_ms
        self._positions = positions  # a StreamIdGenerator over federation_outbox.position
        # Whether this process sends to a destination (not when federation sender workers send what it queues,
        # nor to the destinations of another worker sharing them).
        self._transmits = transmits
        self._on_queued = on_queued  # told of each entry queued (the other processes are: replication)
        self._min_retry_ms = min_retry_ms
        self._max_retry_ms = max_retry_ms
        self._retry_multiplier = retry_multiplier
        self._running: dict[str, defer.Deferred] = {}
        self._dirty: set[str] = set()
        self._retry: dict[str, tuple[int, int]] = {}  # destination -> (last failure ts, interval ms)
        self._succeeded: dict[str, tuple[int, int]] = {}  # destination -> (last 200 ts, its round trip ms)
        self._timers: dict[str, object] = {}
        self._stopping = False

    # -- API ------------------------------------------------------------------------------------
    async def send_pdu(self, destinations, pdu: dict, stream_ordering: int | None = None) -> None:
        """Queue ``pdu`` (its federation JSON) for each destination; returns once it is stored. With
        ``stream_ordering`` (a local room event's), the event is recorded as queued in the same transaction."""
        await self._enqueue(destinations, PDU, pdu, stream_ordering)

    async def send_edu(self, destination: str, edu_type: str, content: dict) -> None:
        """Queue one EDU for ``destination``."""
        await self._enqueue([destination], EDU, {"edu_type": edu_type, "content": content})

    def last_success(self, destination: str) -> tuple[int, int] | None:
        """When ``destination`` last accepted a transaction since this process started, and how long the
        round trip took (ms)."""
        return self._succeeded.get(destination)

    def wake(self, destination: str) -> None:
        """We heard from ``destination``: if it was backing off, retry now."""
        if destination not in self._retry or self._stopping:
            return
        del self._retry[destination]
        timer = self._timers.pop(destination, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._kick(destination)

    def resume(self) -> defer.Deferred:
        """Resume every queue that still holds entries (after a restart), honouring backoff."""
        d = defer.ensureDeferred(self._resume())
        d.addErrback(lambda f: logger.error("Resuming federation queues failed: %s", f.getTraceback()))
        return d

    def resume_queued_elsewhere(self) -> defer.Deferred:
        """A sender that another process queues for, after (re)connecting to it: what was queued while it
        could not hear of it is sent too."""
        async def catch_up() -> None:
            self._positions.advance(await self._store.max_position())
            await self._resume()
        d = defer.ensureDeferred(catch_up())
        d.addErrback(lambda f: logger.error("Resuming federation queues failed: %s", f.getTraceback()))
        return d

    async def _resume(self) -> None:
        for state in await self._store.pending_destinations():
            if state.retry_interval_ms:
                self._retry[state.destination] = (state.retry_last_ts, state.retry_interval_ms)
            self._kick(state.destination)

    async def stream_position(self) -> int | None:
        """The stream ordering of the newest local room event known queued (see :meth:`send_pdu`)."""
        return await self._store.stream_position()

    async def advance_stream_position(self, stream_ordering: int) -> None:
        await self._store.advance_stream_position(stream_ordering)

    def stop(self) -> None:
        """Stop sending (shutdown): timers cancelled, requests in flight abandoned (they are resent later)."""
        self._stopping = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        for d in list(self._running.values()):
            d.cancel()

    # -- queueing -------------------------------------------------------------------------------
    async def _enqueue(self, destinations, kind: str, payload: dict, stream_ordering: int | None = None) -> None:
        targets = sorted({d for d in destinations if d != self._server_name})
        allowed = [d for d in targets if self._peers.allows(d)]
        if len(allowed) < len(targets):
            logger.info("Not sending to %s: not in federation_domain_whitelist", set(targets) - set(allowed))
        if not allowed:
            return
        (position,) = self._positions.allocate()
        try:
            await self._store.enqueue(allowed, position, kind, payload, stream_ordering)
        finally:
            self._positions.done([position])
        if self._on_queued is not None:
            self._positions.when_visible(position, lambda: self._on_queued(position, allowed))
        for destination in allowed:
            self._kick(destination)

    def queued_elsewhere(self, position: int, destinations: list[str]) -> None:
        """Another process queued an entry at ``position`` (committed, and every lower one): send it."""
        self._positions.advance(position)
        for destination in destinations:
            self._kick(destination)

    def _kick(self, destination: str) -> None:
        """Start the destination's transmission loop unless it runs already or is backing off."""
        if self._stopping or not self._transmits(destination):
            return
        self._dirty.add(destination)
        if destination in self._running:
            return
        retry_at = self._retry_at(destination)
        if retry_at is not None and retry_at > self._now_ms():
            if destination not in self._timers:
                delay = (retry_at - self._now_ms()) / 1000
                self._timers[destination] = self._reactor.callLater(delay, self._retry_due, destination)
            return
        d = defer.ensureDeferred(self._transmit(destination))
        self._running[destination] = d
        d.addErrback(self._loop_failed, destination)
        d.addBoth(self._loop_ended, destination, d)

    def _retry_at(self, destination: str) -> int | None:
        state = self._retry.get(destination)
        return None if state is None else state[0] + state[1]

    def _retry_due(self, destination: str) -> None:
        self._timers.pop(destination, None)
        self._kick(destination)

    def _loop_failed(self, failure, destination: str) -> None:
        """An unexpected error (e.g. the database): log it and retry later like a failed send."""
        if failure.check(defer.CancelledError):
            return
        logger.error("Federation sender loop for %s failed: %s", destination, failure.getTraceback())
        previous = self._retry.get(destination, (0, 0))[1]
        self._retry[destination] = (self._now_ms(), self._next_interval(previous))

    def _loop_ended(self, _result, destination: str, d: defer.Deferred) -> None:
        if self._running.get(destination) is d:
            del self._running[destination]
        if destination in self._retry:
            self._kick(destination)  # arms the retry timer

    # -- transmission ---------------------------------------------------------------------------
    async def _transmit(self, destination: str) -> None:
        while not self._stopping:
            self._dirty.discard(destination)
            txn = await self._store.next_transaction(destination, self._positions.current(), self._now_ms(),
                                                     max_pdus=MAX_PDUS_PER_TXN, max_edus=MAX_EDUS_PER_TXN)
            if txn is None:
                if destination in self._dirty:
                    continue
                return
            if not await self._send(destination, txn):
                await self._back_off(destination)
                return
            await self._store.acknowledge(destination, txn.txn_id)
            self._retry.pop(destination, None)

    async def _send(self, destination: str, txn) -> bool:
        """True once the transaction is done with (acknowledged or refused for good)."""
        body = {"origin": self._server_name, "origin_server_ts": txn.origin_server_ts, "pdus": txn.pdus}
        if txn.edus:
            body["edus"] = txn.edus
        path = f"/_matrix/federation/v1/send/{quote(txn.txn_id, safe='')}"
        start = self._now_ms()
        try:
            response = await self._client.put_json(destination, path, body)
        except HttpResponseError as e:
            if e.status in _PERMANENT_STATUSES:
                logger.warning("Transaction %s to %s refused (%s): giving up %d PDUs and %d EDUs",
                               txn.txn_id, destination, e, len(txn.pdus), len(txn.edus))
                return True
            logger.info("Transaction %s to %s failed: %s", txn.txn_id, destination, e)
            return False
        except FederationDeniedError as e:
            logger.warning("Dropping transaction %s: %s", txn.txn_id, e)
            return True
        except defer.CancelledError:
            raise
        except Exception as e:
            logger.info("Transaction %s to %s failed: %s", txn.txn_id, destination, e)
            return False
        now = self._now_ms()
        self._succeeded[destination] = (now, now - start)
        results = response.get("pdus")
        for event_id, result in (results.items() if isinstance(results, dict) else ()):
            if isinstance(result, dict) and result.get("error"):
                logger.info("%s rejected %s: %s", destination, event_id, result["error"])
        return True

    async def _back_off(self, destination: str) -> None:
        interval = self._next_interval(self._retry.get(destination, (0, 0))[1])
        now = self._now_ms()
        self._retry[destination] = (now, interval)
        await self._store.set_retry(destination, now, interval)
        logger.info("Backing off %s for %.1fs", destination, interval / 1000)

    def _next_interval(self, previous_ms: int) -> int:
        return min(self._max_retry_ms, max(self._min_retry_ms, int(previous_ms * self._retry_multiplier)))

"""The writes an inbound federation worker hands to the main process (docs/workers.md).

Every stream has one writer, main. A worker serving ``/_matrix/federation`` checks what it receives
itself (signatures, auth rules, the state before each event, missing events fetched from the origin)
and hands main the outcome, over main's replication listener (Synapse's ``instance_map.main`` and
``worker_replication_secret``): the checked events to persist (:class:`ForwardedPersistence`, in
place of :class:`RemotePersistence`), the EDUs to apply (:func:`forwarded_edu_handlers`) and the
PDUs to queue for other servers (:class:`ForwardedOutbox`). Main answers once the write is
committed, so the worker reads it from the database straight after.

The wire form of each call is built and read here, on both sides, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Awaitable, Callable

from twisted.internet import defer
from twisted.web.client import (Agent, FileBodyProducer, HTTPConnectionPool, RequestTransmissionFailed,
                                ResponseNeverReceived, readBody)
from twisted.web.http_headers import Headers

from homeserver.errors import Unavailable
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.services.room_events.heads import RoomHeads
from homeserver.services.room_events.remote import ExternalEvent
from homeserver.storage.events import StoredEvent

PATH_PREFIX = "/_synapse/replication/hexagone/"
CALL_TIMEOUT_S = 120  # a join's state can take main a while to persist
PERSIST_EXTERNAL, OUT_OF_BAND, BACKFILLED, EDU, SEND_PDU = (
    "persist_external", "out_of_band_membership", "persist_backfilled", "edu", "send_pdu")


class ReplicationCallFailed(Exception):
    """Main refused the call (a bug on one side or the other: not worth retrying)."""


# -- wire forms ----------------------------------------------------------------------------------
def external_to_wire(item: ExternalEvent) -> dict:
    return {"pdu": item.pdu, "outlier": item.outlier, "soft_failed": item.soft_failed,
            "state_before": None if item.state_before is None else [[t, k, e] for (t, k), e in
                                                                  item.state_before.items()],
            "group": item.state_before_group,
            "encoded": None if item.encoded is None else item.encoded.decode("utf-8")}


def external_from_wire(wire: dict) -> ExternalEvent:
    state = wire["state_before"]
    return ExternalEvent(pdu=wire["pdu"], outlier=bool(wire["outlier"]), soft_failed=bool(wire["soft_failed"]),
                         state_before=None if state is None else {(t, k): e for t, k, e in state},
                         state_before_group=wire["group"],
                         encoded=None if wire["encoded"] is None else wire["encoded"].encode("utf-8"))


def version_from_wire(identifier: str) -> RoomVersion:
    version = KNOWN_ROOM_VERSIONS.get(identifier)
    if version is None:
        raise ValueError(f"unknown room version {identifier!r}")
    return version


# -- the worker's side -----------------------------------------------------------------------------
class ReplicationClient:
    """POSTs JSON to main's replication listener, with the shared secret."""

    def __init__(self, reactor, host: str, port: int, secret: str):
        self._reactor = reactor
        self._base = f"http://{host}:{port}{PATH_PREFIX}".encode("ascii")
        self._auth = b"Bearer " + secret.encode("utf-8")
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.retryAutomatically = False
        self._agent = Agent(reactor, pool=self._pool, connectTimeout=10)

    async def call(self, op: str, body: dict) -> dict:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = Headers({b"Authorization": [self._auth], b"Content-Type": [b"application/json"]})

        async def attempt() -> tuple[int, bytes]:
            response = await self._agent.request(b"POST", self._base + op.encode("ascii"), headers,
                                                 FileBodyProducer(BytesIO(data)))
            return response.code, await readBody(response)

        for retry in (True, False):
            d = defer.ensureDeferred(attempt())
            d.addTimeout(CALL_TIMEOUT_S, self._reactor)
            try:
                status, answer = await d
                break
            except (RequestTransmissionFailed, ResponseNeverReceived) as e:
                # A pooled connection main closed (it restarted): once more on a new one. (Every call is
                # safe to repeat: main persists an event once; a PDU queued twice is deduplicated.)
                if not retry:
                    raise Unavailable(f"main's replication listener: {op}: {e}") from None
            except Exception as e:
                raise Unavailable(f"main's replication listener: {op}: {e}") from None
        if status >= 500:
            raise Unavailable(f"main's replication listener: {op}: HTTP {status}")
        if status != 200:
            raise ReplicationCallFailed(f"main's replication listener: {op}: HTTP {status}: {answer[:200]!r}")
        return json.loads(answer)

    def close(self) -> defer.Deferred:
        return self._pool.closeCachedConnections()


class ForwardedPersistence:
    """:class:`RemotePersistence` of a worker: main persists; the worker then reads what was stored (and
    forgets what it held of the room, which the write changed)."""

    def __init__(self, *, client: ReplicationClient, heads: RoomHeads):
        self._client = client
        self._heads = heads

    async def _stored(self, room_id: str, event_ids: list[str]) -> list[StoredEvent]:
        self._heads.forget([room_id], event_ids)  # an outlier we held may have joined the timeline
        found = await self._heads.get_events(event_ids)
        return [found[i] for i in event_ids if i in found]

    def batch(self) -> "PersistBatch":
        """One transaction's batch: its chained messages go to main in one call (see :class:`PersistBatch`)."""
        return PersistBatch(self)

    async def persist_external(self, room_id: str, version: RoomVersion, items: list[ExternalEvent]
                               ) -> list[StoredEvent]:
        answer = await self._client.call(PERSIST_EXTERNAL, {
            "room_id": room_id, "version": version.identifier, "items": [external_to_wire(i) for i in items]})
        return await self._stored(room_id, answer["event_ids"])

    async def store_out_of_band_membership(self, room_id: str, version: RoomVersion, pdu: dict) -> StoredEvent:
        answer = await self._client.call(OUT_OF_BAND, {"room_id": room_id, "version": version.identifier,
                                                       "pdu": pdu})
        return (await self._stored(room_id, answer["event_ids"]))[0]

    async def persist_backfilled(self, room_id: str, version: RoomVersion, pdus: list[dict]) -> list[StoredEvent]:
        answer = await self._client.call(BACKFILLED, {"room_id": room_id, "version": version.identifier,
                                                      "pdus": pdus})
        return await self._stored(room_id, answer["event_ids"])


class PersistBatch:
    """The checked events of one federation transaction, handed to main together.

    An event that changes nothing but the timeline (no state key, not a redaction, not soft-failed, with
    the state group before it known) waits here, seen by the rest of the transaction's checks through
    ``pending`` with the state group it will have (the one before it); anything else, or an event of
    another room, first sends what waits. The transaction's end sends the rest (:meth:`flush`), so a
    transaction of chained messages costs main one call instead of one per message. Events of a call
    that failed are listed in ``failed``; an unreachable main raises :class:`Unavailable` (503).
    """

    def __init__(self, owner: ForwardedPersistence):
        self._owner = owner
        self._room: tuple[str, RoomVersion] | None = None
        self._items: list[ExternalEvent] = []
        self.pending: dict[str, StoredEvent] = {}
        self.failed: list[str] = []

    @staticmethod
    def _timeline_only(item: ExternalEvent) -> bool:
        return (item.state_before is not None and item.state_before_group is not None and not item.outlier
                and not item.soft_failed and "state_key" not in item.pdu and item.pdu.get("type") != "m.room.redaction")

    async def persist(self, room_id: str, version: RoomVersion, event_id: str, item: ExternalEvent) -> None:
        if self._timeline_only(item) and self._room in (None, (room_id, version)):
            self._room = (room_id, version)
            self._items.append(item)
            self.pending[event_id] = StoredEvent(event_id, item.pdu, 0, room_id,
                                                 state_group=item.state_before_group)
            return
        await self.flush()
        await self._owner.persist_external(room_id, version, [item])

    async def flush(self) -> None:
        if not self._items:
            return
        (room_id, version), items, ids = self._room, self._items, list(self.pending)
        self._room, self._items, self.pending = None, [], {}
        try:
            await self._owner.persist_external(room_id, version, items)
        except Unavailable:
            raise
        except Exception:
            self.failed += ids
            raise


def forwarded_edu_handlers(client: ReplicationClient, edu_types) -> dict[str, Callable[[str, dict], Awaitable]]:
    """EDU type -> handler that has main apply it (typing, receipts, presence, to-device and device lists are
    streams main writes)."""
    def handler(edu_type: str):
        async def forward(origin: str, content: dict) -> None:
            await client.call(EDU, {"origin": origin, "edu_type": edu_type, "content": content})
        return forward
    return {edu_type: handler(edu_type) for edu_type in edu_types}


@dataclass
class ForwardedOutbox:
    """The federation queue as a worker sees it: main queues (the queue's positions are main's)."""

    client: ReplicationClient

    async def send_pdu(self, destinations, pdu: dict, stream_ordering: int | None = None) -> None:
        await self.client.call(SEND_PDU, {"destinations": sorted(destinations), "pdu": pdu})


# -- main's side ----------------------------------------------------------------------------------
async def apply_call(op: str, body: dict, *, remote, edu_handlers: dict, sender) -> dict[str, Any]:
    """Do on main what a worker handed it (``remote``: main's RemotePersistence)."""
    if op == EDU:
        handler = edu_handlers.get(body["edu_type"])
        if handler is not None:
            await handler(body["origin"], body["content"])
        return {}
    if op == SEND_PDU:
        await sender.send_pdu(body["destinations"], body["pdu"])
        return {}
    room_id, version = body["room_id"], version_from_wire(body["version"])
    if op == PERSIST_EXTERNAL:
        stored = await remote.persist_external(room_id, version, [external_from_wire(i) for i in body["items"]])
    elif op == OUT_OF_BAND:
        stored = [await remote.store_out_of_band_membership(room_id, version, body["pdu"])]
    elif op == BACKFILLED:
        stored = await remote.persist_backfilled(room_id, version, body["pdus"])
    else:
        raise ValueError(f"unknown replication call {op!r}")
    return {"event_ids": [e.event_id for e in stored]}

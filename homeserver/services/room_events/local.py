"""Local room events: built, authorised and persisted in order.

Spec client-server "Events" (sending, transaction ids), room versions "Authorization rules" and
"Redactions". One per-room lock (:meth:`RoomHeads.lock`) serialises appends; the room's head moves only after
the transaction that writes the events has committed.

Group commit: the events sent to a room while an earlier append of the room holds its lock wait in the room's
queue, and the next holder of the lock appends all of them in one transaction (one COMMIT, one wait for the
disk, instead of one each), each still authorised on the state its predecessors leave; an event refused fails
alone, and a batch whose transaction fails is appended again one event at a time. Every request is answered
after the transaction holding its event has committed. That transaction may hold other rooms' batches too
(``EventStore.persist_events``, ``Database.run_grouped``). Transaction ids are looked up only when a batch
fails: the store refuses an event whose transaction id is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from twisted.internet import defer
from twisted.python.failure import Failure

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.auth_rules import auth_types_for_event, check_auth, may_redact_others
from homeserver.events.builder import build_event, room_id_from_create_event, validate_pdu
from homeserver.events.errors import AuthError, EventFormatError
from homeserver.events.policy_servers import POLICY_EVENT
from homeserver.events.room_versions import RoomVersion
from homeserver.services.auth import random_string
from homeserver.services.retention import RETENTION_EVENT, check_policy
from homeserver.services.room_events.heads import CREATE_KEY, RoomEventListener, RoomHead, RoomHeads, announce
from homeserver.storage.events import CurrentStateEntry, EventStore, NewEvent, StoredEvent


@dataclass
class EventSpec:
    """A local event to create."""

    sender: str
    type: str
    content: dict
    state_key: str | None = None
    redacts: str | None = None
    txn: tuple[str, str, str] | None = None
    # Called with the built, authorised PDU before it is written; returns the PDU to store
    # (an invite co-signed by the invitee's server).
    countersign: Callable[[dict], Awaitable[dict]] | None = None
    origin_server_ts: int | None = None  # an appservice's ?ts= (application service API "Timestamp massaging")


MAX_BATCH = 100  # events appended in one transaction at most


class LocalAppends:
    def __init__(self, *, heads: RoomHeads, store: EventStore, server_name: str, signing_key,
                 listeners: Sequence[RoomEventListener],
                 policy_sign: Callable[[RoomVersion, dict, dict, dict], Awaitable[dict]] | None = None):
        """``policy_sign(version, pdu, state before it, pending events)``: the PDU with the room's policy server
        signature (``RoomPolicy.sign_local``; raises MatrixError when the policy server refuses it)."""
        self._heads = heads
        self._policy_sign = policy_sign
        self._store = store
        self.server_name = server_name
        self._signing_key = signing_key
        self._listeners = listeners  # called in order with each batch of new events (see server.py)
        self._last_create_ts = 0
        self._queues: dict[str, list[tuple[EventSpec, defer.Deferred]]] = {}  # events waiting for a room's lock

    async def send(self, room_id: str, spec: EventSpec, *, dry_run: bool = False) -> StoredEvent:
        """Create, authorise and persist one local event (idempotent per transaction id).

        The transaction id is checked under the room lock, so concurrent retries make one event.
        With ``dry_run`` the event is built and authorised but not written. Events sent to the room meanwhile
        may be written in the same transaction (see the module's docstring).
        """
        if not dry_run and spec.countersign is None:
            return await self._send_queued(room_id, spec)
        async with self._heads.lock(room_id):
            if spec.txn is not None:
                existing = await self._store.get_event_id_for_txn(room_id, *spec.txn)
                if existing is not None:
                    return await self._heads.get_event(existing)
            head = await self._heads.head(room_id)
            if head is None:
                raise not_found("Unknown room")
            if dry_run:
                return (await self._prepare(head.copy(), spec, self._heads.now_ms(), {})).event
            return (await self._append(head, [spec], self._heads.now_ms()))[0]

    async def _send_queued(self, room_id: str, spec: EventSpec) -> StoredEvent:
        """Queue the event, then, once holding the room's lock, append every event queued (unless an earlier
        holder took this one with its own)."""
        entry: tuple[EventSpec, defer.Deferred] = (spec, defer.Deferred())
        queue = self._queues.setdefault(room_id, [])
        queue.append(entry)
        try:
            async with self._heads.lock(room_id):
                batch = self._queues.pop(room_id, [])
                if len(batch) > MAX_BATCH:
                    self._queues[room_id] = batch[MAX_BATCH:]  # for the next holder of the lock
                    batch = batch[:MAX_BATCH]
                if batch:
                    await self._append_each(room_id, batch)
        except BaseException:  # cancelled while waiting for the lock: not sent
            if entry in self._queues.get(room_id, ()):
                self._queues[room_id].remove(entry)
            raise
        return await entry[1]

    async def _append_each(self, room_id: str, batch: list[tuple[EventSpec, defer.Deferred]]) -> None:
        """Append the queued events in one transaction, each answered with its event or its own error."""
        try:
            outcome = await self._append_outcomes(room_id, [spec for spec, _ in batch])
            results = [o if isinstance(o, Failure) else await self._heads.get_event(o) for o in outcome]
        except Exception:
            results = [Failure()] * len(batch)
        for (_, d), result in zip(batch, results):
            if isinstance(result, Failure):
                d.errback(result)
            elif result is None:
                d.errback(Failure(RuntimeError("A persisted event could not be read back")))
            else:
                d.callback(result)

    async def _append_outcomes(self, room_id: str, specs: list[EventSpec]) -> list[str | Failure]:
        """Each event's id once committed, or its error.

        The transaction ids are not looked up first: the store refuses a second event with one already taken
        (its key), and only when the batch fails are they looked up, and the batch prepared again knowing them
        (a retry is answered with the event of the first)."""
        head = await self._heads.head(room_id)
        if head is None:
            raise not_found("Unknown room")
        now = self._heads.now_ms()
        known: dict[tuple[str, str, str], str] = {}
        looked_up = False
        while True:
            outcome, work, news = await self._prepare_batch(head, specs, known, now)
            if not news:
                return outcome
            try:
                await self._commit(head, work, news)
                return outcome
            except Exception:
                failure = Failure()
            if looked_up:
                break
            looked_up = True
            txns = [s.txn for s in specs if s.txn is not None]
            known = await self._store.get_event_ids_for_txns(room_id, txns) if txns else {}
            if not known:
                break
        failed = {new.event.event_id for new in news}
        if len(news) == 1:
            return [failure if o in failed else o for o in outcome]
        return await self._append_alone(head, specs, outcome, failed, now)

    async def _prepare_batch(self, head: RoomHead, specs: list[EventSpec], known: dict[tuple[str, str, str], str],
                             now: int) -> tuple[list[str | Failure], RoomHead, list[NewEvent]]:
        """Each event prepared on the state its predecessors leave (or its error, or the event its
        transaction id names in ``known``): the outcomes, the head after them and the events to write."""
        known = dict(known)
        work = head.copy()
        news: list[NewEvent] = []
        pending: dict[str, StoredEvent] = {}
        outcome: list[str | Failure] = []
        for spec in specs:
            if spec.txn is not None and spec.txn in known:  # a retry: answered with the event of the first
                outcome.append(known[spec.txn])
                continue
            try:
                new = await self._prepare(work, spec, now, pending)
            except Exception:
                outcome.append(Failure())
                continue
            news.append(new)
            outcome.append(new.event.event_id)
            if spec.txn is not None:
                known[spec.txn] = new.event.event_id
        return outcome, work, news

    async def _append_alone(self, head: RoomHead, specs: list[EventSpec], outcome: list[str | Failure],
                            failed: set[str], now: int) -> list[str | Failure]:
        """A batch's transaction failed: append its events again one at a time, so an event the database
        refuses (a NUL character in its text) fails alone."""
        again: dict[str, str | Failure] = {}  # event id in the failed batch -> the new one, or its error
        for spec, o in zip(specs, outcome):
            if isinstance(o, str) and o in failed and o not in again:
                try:
                    again[o] = (await self._append(head, [spec], now))[0].event_id
                except Exception:
                    again[o] = Failure()
        return [again.get(o, o) if isinstance(o, str) else o for o in outcome]

    async def send_batch(self, room_id: str, specs: list[EventSpec]) -> list[StoredEvent]:
        """Append events to a room in order, in one transaction. All are authorised before any is written."""
        async with self._heads.lock(room_id):
            head = await self._heads.head(room_id)
            if head is None:
                raise not_found("Unknown room")
            return await self._append(head, specs, self._heads.now_ms())

    async def create_room(self, version: RoomVersion, create: EventSpec, rest: list[EventSpec],
                          room_id: str | None, is_public: bool) -> tuple[str, list[StoredEvent]]:
        """Write a new room: the create event first (for v12 it names the room), then its initial events.

        Create timestamps are kept strictly increasing so that two identical v12 create events made in
        the same millisecond still name two rooms."""
        now = self._last_create_ts = max(self._heads.now_ms(), self._last_create_ts + 1)
        if room_id is None and version.room_id_from_create_event:
            probe = self._build(RoomHead("", version, {}, [], 0, None), create, None, now)
            room_id = room_id_from_create_event(probe["event_id"])
        elif room_id is None:
            room_id = self.new_room_id()
        async with self._heads.lock(room_id):
            head = await self._heads.new_room(room_id, version, create.sender, is_public, now)
            events = await self._append(head, [create] + rest, now)
        return room_id, events

    def new_room_id(self) -> str:
        """A fresh room id of a room version whose create event does not name the room (v1 to v11)."""
        return f"!{random_string(18)}:{self.server_name}"

    async def template(self, room_id: str, spec: EventSpec) -> tuple[RoomVersion, dict]:
        """An unsigned event template for another server to complete (make_join, make_leave, make_knock)."""
        head = await self._heads.head(room_id)
        if head is None or not head.extremities:
            raise not_found("Unknown room")
        work = head.copy()
        auth_keys = set(auth_types_for_event(work.version, {"type": spec.type, "sender": spec.sender,
                                                            "state_key": spec.state_key, "content": spec.content}))
        auth_keys.add(CREATE_KEY)
        auth_state = {k: work.state[k] for k in auth_keys if k in work.state}
        pdu = self._build(work, spec, auth_state, self._heads.now_ms())
        template = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures", "event_id")}
        return work.version, template

    async def _append(self, head: RoomHead, specs: list[EventSpec], now: int) -> list[StoredEvent]:
        work = head.copy()
        news: list[NewEvent] = []
        pending: dict[str, StoredEvent] = {}
        for spec in specs:
            news.append(await self._prepare(work, spec, now, pending))
        return await self._commit(head, work, news)

    async def _commit(self, head: RoomHead, work: RoomHead, news: list[NewEvent]) -> list[StoredEvent]:
        """Write prepared events in one transaction, then move the head and tell the listeners."""
        stream = self._heads.stream
        positions = stream.allocate(len(news))
        for new, pos in zip(news, positions):
            new.event.stream_ordering = pos
            new.current_state_delta = {k: CurrentStateEntry(e.event_id, e.membership, pos)
                                       for k, e in new.current_state_delta.items()}
        try:
            await self._store.persist_events(news)
        finally:
            stream.done(positions)
        head.take(work)
        self._heads.remember(news)
        events = [n.event for n in news]
        announce(stream, self._listeners, events)
        return events

    async def _prepare(self, work: RoomHead, spec: EventSpec, now: int,
                       pending: dict[str, StoredEvent]) -> NewEvent:
        auth_keys = auth_types_for_event(work.version, {"type": spec.type, "sender": spec.sender,
                                                        "state_key": spec.state_key, "content": spec.content})
        auth_keys = set(auth_keys) | {CREATE_KEY}
        auth_ids = {k: work.state[k] for k in auth_keys if k in work.state}
        auth_events = await self._heads.events_incl_pending(auth_ids.values(), pending)
        auth_state = {k: auth_events[v].pdu for k, v in auth_ids.items()}
        if spec.type == RETENTION_EVENT and spec.state_key == "":
            check_policy(spec.content)
        pdu = self._build(work, spec, auth_state, now)
        try:
            encoded = validate_pdu(pdu, work.version)
        except EventFormatError as e:
            if "too large" in str(e).lower() or "65536" in str(e):
                raise MatrixError(413, "M_TOO_LARGE", str(e))
            raise MatrixError(400, "M_BAD_JSON", str(e))
        try:
            check_auth(work.version, pdu, auth_state)
        except AuthError as e:
            raise forbidden(e.reason)
        redacts = spec.redacts if spec.type == "m.room.redaction" else None
        if redacts is not None:
            redacts = await self._authorised_redaction(work, spec, redacts, auth_state)
        if spec.countersign is not None:
            pdu, encoded = await spec.countersign(pdu), None  # it has another signature now
        if self._policy_sign is not None:
            # Spec server-server "Policy Servers": the room's policy server signs before the event is sent,
            # choosing on the state before it (copied only where one is named).
            state_before = dict(work.state) if (POLICY_EVENT, "") in work.state else {}
            signed = await self._policy_sign(work.version, pdu, state_before, pending)
            if signed is not pdu:
                pdu, encoded = signed, None
        event = StoredEvent(pdu["event_id"], pdu, 0, work.room_id,
                            txn_device=spec.txn[1] if spec.txn else None, txn_id=spec.txn[2] if spec.txn else None)
        new = NewEvent(event=event, txn=spec.txn, prev_state_group=work.state_group,
                       extremities_remove=list(work.extremities), redacts=redacts, encoded=encoded)
        if spec.state_key is not None:
            key = (spec.type, spec.state_key)
            event.replaces_state = work.state.get(key)
            work.state = {**work.state, key: event.event_id}  # replaced, never changed in place
            new.current_state_delta = {key: CurrentStateEntry(
                event.event_id, spec.content.get("membership") if spec.type == "m.room.member" else None, 0)}
            new.state_group_delta = {key: event.event_id} if work.state_group is not None else dict(work.state)
            work.state_group = self._heads.new_state_group()
        elif work.state_group is None:
            # After a merge of several extremities no group holds the resolved state yet: snapshot it.
            new.state_group_delta = dict(work.state)
            work.state_group = self._heads.new_state_group()
        event.state_group = work.state_group
        work.extremities = [event.event_id]
        work.depth = pdu["depth"]
        pending[event.event_id] = event
        return new

    def _build(self, work: RoomHead, spec: EventSpec, auth_state, now: int) -> dict:
        auth_ids = [] if auth_state is None else [
            work.state[k] for k in sorted(auth_state) if k in work.state
            and not (k == CREATE_KEY and not work.version.create_event_in_auth_events)]
        return build_event(
            work.version, server_name=self.server_name, signing_key=self._signing_key,
            room_id=None if (spec.type == "m.room.create" and work.version.room_id_from_create_event) else work.room_id,
            sender=spec.sender, event_type=spec.type, content=spec.content, state_key=spec.state_key,
            prev_events=list(work.extremities), auth_events=auth_ids, depth=min(work.depth + 1, 2**63 - 1),
            origin_server_ts=now if spec.origin_server_ts is None else spec.origin_server_ts, redacts=spec.redacts)

    async def _authorised_redaction(self, work: RoomHead, spec: EventSpec, target_id: str, auth_state) -> str | None:
        """Spec "Redactions": a redaction takes effect if the sender may redact others or the target is theirs."""
        target = await self._heads.get_event(target_id)
        if target is None or target.room_id != work.room_id:
            return None
        if target.sender == spec.sender or may_redact_others(work.version, auth_state, spec.sender):
            return target_id
        raise forbidden("You may not redact other users' events")

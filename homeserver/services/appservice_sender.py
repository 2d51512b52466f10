"""Pushing events to application services (spec v1.19 application service API, "Pushing events",
PUT /_matrix/app/v1/transactions/{txnId}), with what a registration asks for besides: MSC2409 ephemeral
events (typing, receipts, presence) and MSC4203 to-device messages (``receive_ephemeral``), MSC3202 device
list changes, one-time key counts and unused fallback key types (``org.matrix.msc3202``).

Guarantees, per appservice:
- every room event it is interested in (its namespaces match the sender, the member a membership is
  about, the room id, one of the room's aliases, or a member of the room) is sent, in stream order;
- one transaction in flight at a time; a failed one is resent unchanged (same id, same events) after
  a backoff (1 s doubling to 32 s), so an appservice that was down is caught up when it is back;
- the position acknowledged is stored (:mod:`homeserver.storage.appservices`): after a restart the
  events after it are read from the event stream again, and the ephemeral events still queued are
  sent; nothing acknowledged is sent twice (a transaction whose answer was lost is resent with its id,
  which the appservice recognises).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, task

from federation.appservice_client import AppServiceClient, AppServiceUnreachable, quote_part
from homeserver.config.appservices import Registration
from homeserver.storage.appservices import AppServiceStore, Positions

logger = logging.getLogger(__name__)

MAX_EVENTS = 100  # room events per transaction (as Synapse)
MAX_EPHEMERAL = 100
SCAN_PAGE = 500
BACKOFF_START_S, BACKOFF_MAX_S = 1.0, 32.0
PUSH_TIMEOUT_S = 60.0
SKIP_PERSIST_EVERY = 1000  # stream positions skipped (nothing of interest) between two stored positions


class _RoomFacts:
    """Aliases and members of the rooms met in one scan, each read once."""

    def __init__(self, event_store, directory_store):
        self._events = event_store
        self._directory = directory_store
        self._aliases: dict[str, list[str]] = {}
        self._members: dict[str, list[str]] = {}

    async def aliases(self, room_id: str) -> list[str]:
        if room_id not in self._aliases:
            self._aliases[room_id] = await self._directory.aliases_for_room(room_id)
        return self._aliases[room_id]

    async def rooms_of(self, user_id: str) -> list[str]:
        """The rooms a user is joined to."""
        return [r for r, (m, _, _) in (await self._events.rooms_for_user(user_id)).items() if m == "join"]

    async def members(self, room_id: str) -> list[str]:
        if room_id not in self._members:
            self._members[room_id] = await self._events.joined_members(room_id)
        return self._members[room_id]


async def room_interests(registration: Registration, room_id: str, facts: _RoomFacts) -> bool:
    """Spec "Pushing events": the room is the appservice's by id, alias or one of its members."""
    if registration.is_room_in_namespace(room_id):
        return True
    if registration.aliases and any(registration.is_alias_in_namespace(a) for a in await facts.aliases(room_id)):
        return True
    return any(registration.is_user_in_namespace(m) for m in await facts.members(room_id))


async def event_interests(registration: Registration, ev, facts: _RoomFacts) -> bool:
    if registration.is_user_in_namespace(ev.sender):
        return True
    if ev.type == "m.room.member" and ev.state_key and registration.is_user_in_namespace(ev.state_key):
        return True
    return await room_interests(registration, ev.room_id, facts)


@dataclass
class _Transaction:
    txn_id: int
    upto: Positions
    events: list = field(default_factory=list)
    ephemeral: list = field(default_factory=list)  # (position, kind, body) queued rows
    device_lists_changed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.events or self.ephemeral or self.device_lists_changed)


class _Sender:
    """The transaction loop of one appservice."""

    def __init__(self, owner: "AppServiceSender", registration: Registration):
        self.owner = owner
        self.registration = registration
        self._wake: defer.Deferred | None = None
        self._running: defer.Deferred | None = None
        self.stopped = False
        # Read from the store when the loop starts: what was acknowledged (and stored), the last
        # transaction id, and the transaction fixed and not yet acknowledged.
        self._acked = self._persisted = Positions(0, 0, 0)
        self._last_txn_id = 0
        self._pending: tuple[int, Positions] | None = None

    def start(self) -> None:
        self._running = defer.ensureDeferred(self._loop())
        self._running.addErrback(lambda f: None if f.check(defer.CancelledError) else logger.error(
            "Transactions to application service %s stopped: %s", self.registration.id, f.getTraceback()))

    def wake(self) -> None:
        if self._wake is not None and not self._wake.called:
            self._wake.callback(None)

    def stop(self) -> None:
        self.stopped = True
        if self._running is not None:
            self._running.cancel()

    async def _loop(self) -> None:
        state = await self.owner.store.position(self.registration.id, self.owner.current_positions())
        self._acked, self._persisted, self._last_txn_id = state.acknowledged, state.acknowledged, state.last_txn_id
        self._pending = None if state.pending is None else (state.pending_txn_id, state.pending)
        backoff = BACKOFF_START_S
        while not self.stopped:
            self._wake = defer.Deferred()
            try:
                sent = await self._step()
            except defer.CancelledError:  # stop()
                return
            except Exception:  # e.g. the database: keep the loop, try again later
                logger.exception("Transaction to application service %s failed", self.registration.id)
                sent = False
            if sent:
                backoff = BACKOFF_START_S
            else:
                await task.deferLater(self.owner.reactor, backoff, lambda: None)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _step(self) -> bool:
        """Send the pending transaction, or the next one (waiting for one when there is nothing to send);
        False when it failed."""
        owner, as_id, registration = self.owner, self.registration.id, self.registration
        if self._pending is not None:  # fixed before a failure or a restart: the same again
            txn = await owner.collect(registration, self._pending[0], self._acked, self._pending[1], limit=None)
        else:
            txn = await owner.collect(registration, self._last_txn_id + 1, self._acked, owner.current_positions(),
                                      limit=MAX_EVENTS)
            if txn.empty:
                if (txn.upto.events, txn.upto.device_lists) == (self._acked.events, self._acked.device_lists):
                    await self._wake
                    return True
                # Nothing of interest: move on without a transaction, storing the position now and then
                # (a restart scans again from the one stored).
                self._acked = txn.upto
                if self._acked.events - self._persisted.events > SKIP_PERSIST_EVERY:
                    await owner.store.acknowledge(as_id, self._last_txn_id, self._acked)
                    self._persisted = self._acked
                return True
            await owner.store.fix_transaction(as_id, txn.txn_id, txn.upto)
            self._pending = (txn.txn_id, txn.upto)
        if not await owner.push(registration, txn):
            return False
        await owner.store.acknowledge(as_id, txn.txn_id, txn.upto)
        self._acked, self._persisted, self._last_txn_id, self._pending = txn.upto, txn.upto, txn.txn_id, None
        return True


class AppServiceSender:
    """Room event listener and ephemeral listeners feeding one :class:`_Sender` per appservice with a URL."""

    def __init__(self, *, registrations: tuple[Registration, ...], client: AppServiceClient,
                 store: AppServiceStore, event_store, directory_store, serializer, device_list_store,
                 device_list_stream, e2e_store, accounts, reactor, start_position: int, on_queued=None):
        """``on_queued(position)``: ephemeral events were queued up to ``position`` (main tells the
        appservice worker, ``notify_appservices_from_worker``, which sends them)."""
        self.reactor, self.store, self._client = reactor, store, client
        self._event_store, self._directory_store = event_store, directory_store
        self._serializer = serializer
        self._device_list_store, self._device_list_stream = device_list_store, device_list_stream
        self._e2e_store, self._accounts = e2e_store, accounts
        self.upto = start_position  # the newest room event the stream has shown
        self._senders = {r.id: _Sender(self, r) for r in registrations if r.url is not None}
        self._ephemeral_ids = store.max_ephemeral_position_sync()
        self._ephemeral_todo: list[tuple[str, Any]] = []
        self._draining: defer.Deferred | None = None
        self._typers_sent: dict[str, tuple] = {}  # room -> the typers last queued (rooms with typers only)
        self._on_queued = on_queued
        self._device_lists_seen = device_list_stream.current()

    def start(self) -> None:
        for sender in self._senders.values():
            sender.start()

    async def stop(self) -> None:
        """At shutdown: stop the loops (a transaction cut short is resent at start), close the connections."""
        for sender in self._senders.values():
            sender.stop()
        if self._draining is not None:
            await self._draining
        await self._client.close()

    def current_positions(self) -> Positions:
        return Positions(self.upto, self._ephemeral_ids, self._device_list_stream.current())

    # -- room events -------------------------------------------------------------------------------
    def on_room_events(self, events) -> None:
        """Room event listener: the stream now shows these; wake every appservice's loop."""
        if not self._senders:
            return
        self.upto = max([self.upto] + [e.stream_ordering for e in events if not e.outlier])
        for sender in self._senders.values():
            sender.wake()

    def replicated(self, *, events: int | None = None, ephemeral: int | None = None) -> None:
        """The appservice worker's: main's room events (``notify``) or ephemeral queue moved on; wake the
        loops when there is anything new (device lists included, whose stream the follower moved)."""
        moved = False
        if events is not None and events > self.upto:
            self.upto, moved = events, True
        if ephemeral is not None and ephemeral > self._ephemeral_ids:
            self._ephemeral_ids, moved = ephemeral, True
        if self._device_list_stream.current() > self._device_lists_seen:
            self._device_lists_seen, moved = self._device_list_stream.current(), True
        if moved:
            for sender in self._senders.values():
                sender.wake()

    async def on_device_updates(self, user_id: str, updates) -> None:
        """Device list listener (MSC3202): wake the appservices that want device list changes."""
        for sender in self._senders.values():
            if sender.registration.msc3202:
                sender.wake()

    async def collect(self, registration: Registration, txn_id: int, after: Positions, upto: Positions,
                      limit: int | None) -> _Transaction:
        """What the appservice is owed between two positions (at most ``limit`` room events: the positions
        reached are the transaction's ``upto``)."""
        events, events_upto = await self.scan(registration, after.events, upto.events, limit)
        ephemeral = await self.store.ephemeral(registration.id, 0, upto.ephemeral, MAX_EPHEMERAL)
        # Rows are committed in position order: those read are all there is up to the last one. (Nothing
        # read: nothing to delete at the acknowledgement, as a row may be on its way.)
        ephemeral_upto = upto.ephemeral if limit is None else (ephemeral[-1][0] if ephemeral else 0)
        changed: list[str] = []
        if registration.msc3202 and upto.device_lists > after.device_lists:
            facts = _RoomFacts(self._event_store, self._directory_store)
            for user_id in sorted(await self._device_list_store.changed_users(after.device_lists, upto.device_lists)):
                if registration.is_user_in_namespace(user_id) or any(
                        [await room_interests(registration, r, facts) for r in await facts.rooms_of(user_id)]):
                    changed.append(user_id)
        return _Transaction(txn_id, Positions(events_upto, ephemeral_upto, upto.device_lists),
                            events, ephemeral, changed)

    async def scan(self, registration: Registration, after: int, upto: int, limit: int | None
                   ) -> tuple[list, int]:
        """The events after < stream_ordering <= upto the appservice is interested in, at most ``limit``,
        and the position scanned to (the last event taken when the limit is reached)."""
        facts = _RoomFacts(self._event_store, self._directory_store)
        found: list = []
        while after < upto:
            page = await self._event_store.timeline_events_after(after, upto, SCAN_PAGE)
            if not page:
                break
            for ev in page:
                after = ev.stream_ordering
                if await event_interests(registration, ev, facts):
                    found.append(ev)
                    if limit is not None and len(found) >= limit:
                        return found, after
            if len(page) < SCAN_PAGE:
                break
        return found, max(after, upto)

    async def push(self, registration: Registration, txn: _Transaction) -> bool:
        """One PUT /transactions/{txnId}; False when it has to be retried."""
        body: dict[str, Any] = {"events": await self._serializer.serialize(txn.events, None, bundle=False)}
        edus = [b for _, kind, b in txn.ephemeral if kind == "ephemeral"]
        to_device = [b for _, kind, b in txn.ephemeral if kind == "to_device"]
        if registration.wants_ephemeral:
            # MSC2409 (ephemeral; its older unstable name) and MSC4203 (to-device, under the name
            # Synapse and mautrix use).
            body["ephemeral" if registration.receive_ephemeral else "de.sorunome.msc2409.ephemeral"] = edus
            body["de.sorunome.msc2409.to_device"] = to_device
        if registration.msc3202:
            body.update(await self._msc3202(registration, txn, to_device))
        try:
            response = await self._client.request(registration, "PUT", "/transactions/" + quote_part(str(txn.txn_id)),
                                                  body, timeout_s=PUSH_TIMEOUT_S)
        except AppServiceUnreachable as e:
            logger.warning("Transaction %d to application service %s failed: %s", txn.txn_id, registration.id, e)
            return False
        if not response.ok:
            logger.warning("Transaction %d to application service %s answered %d", txn.txn_id, registration.id,
                           response.status)
        return response.ok

    async def _msc3202(self, registration: Registration, txn: _Transaction, to_device: list[dict]) -> dict:
        """MSC3202 "Encrypted appservices": the device lists changed, and the one-time key counts and unused
        fallback key types of the appservice's users concerned (its sender, the senders of its events, the
        recipients of its to-device messages), under the unstable names Synapse and mautrix use."""
        users = {registration.sender} | {m["to_user_id"] for m in to_device} | {
            e.sender for e in txn.events if registration.is_user_in_namespace(e.sender)}
        counts: dict[str, dict] = {}
        fallback: dict[str, dict] = {}
        for user_id in sorted(users):
            for device in await self._accounts.list_devices(user_id):
                otks, unused = await self._e2e_store.key_counts_for_sync(user_id, device["device_id"])
                counts.setdefault(user_id, {})[device["device_id"]] = otks
                fallback.setdefault(user_id, {})[device["device_id"]] = unused
        body: dict[str, Any] = {}
        if counts:
            body["org.matrix.msc3202.device_one_time_keys_count"] = counts
            body["org.matrix.msc3202.device_one_time_key_counts"] = counts  # the older name, still read
            body["org.matrix.msc3202.device_unused_fallback_key_types"] = fallback
        if txn.device_lists_changed:
            body["org.matrix.msc3202.device_lists"] = {"changed": txn.device_lists_changed, "left": []}
        return body

    # -- ephemeral events (MSC2409) and to-device messages (MSC4203) --------------------------------
    def on_typing(self, room_id: str, typers: tuple[str, ...]) -> None:
        """Typing listener: the room's typers after a change."""
        if self._typers_sent.get(room_id) != typers:  # not a mere refresh of someone still typing
            self._typers_sent[room_id] = typers
            if not typers:
                del self._typers_sent[room_id]
            self._ephemeral("typing", (room_id, typers))

    def on_receipt(self, receipt) -> None:
        self._ephemeral("receipt", receipt)

    def on_presence(self, row) -> None:
        self._ephemeral("presence", row)

    def on_to_device(self, messages: list[tuple[str, str, dict]]) -> None:
        """To-device listener: (user_id, device_id, message) delivered to local devices."""
        self._ephemeral("to_device", messages)

    def _ephemeral(self, kind: str, value) -> None:
        if not any(s.registration.wants_ephemeral for s in self._senders.values()):
            return
        self._ephemeral_todo.append((kind, value))
        if self._draining is None:
            self._draining = defer.ensureDeferred(self._drain())
            self._draining.addErrback(lambda f: logger.error("Queueing ephemeral events failed: %s",
                                                             f.getTraceback()))

    async def _drain(self) -> None:
        """Queue the ephemeral events in the order they happened, one batch after the other."""
        try:
            while self._ephemeral_todo:
                todo, self._ephemeral_todo = self._ephemeral_todo, []
                facts = _RoomFacts(self._event_store, self._directory_store)
                rows, woken = [], set()
                for kind, value in todo:
                    for store_kind, body, about in self._entries(kind, value):
                        for sender in self._senders.values():
                            registration = sender.registration
                            if registration.wants_ephemeral and await self._wanted(registration, kind, about, facts):
                                self._ephemeral_ids += 1
                                rows.append((registration.id, self._ephemeral_ids, store_kind, body))
                                woken.add(sender)
                await self.store.enqueue_ephemeral(rows)
                for sender in woken:
                    sender.wake()
                if rows and self._on_queued is not None:
                    self._on_queued(self._ephemeral_ids)
        finally:
            self._draining = None

    async def _wanted(self, registration: Registration, kind: str, about: str, facts: _RoomFacts) -> bool:
        """Typing and receipts: the appservice's rooms; to-device: its users; presence: its users and
        those sharing a room with one of them."""
        if kind in ("typing", "receipt"):
            return await room_interests(registration, about, facts)
        if registration.is_user_in_namespace(about):
            return True
        return kind == "presence" and any(registration.is_user_in_namespace(u) for u in await self._event_store.users_sharing_rooms(about))

    def _entries(self, kind: str, value) -> list[tuple[str, dict, str]]:
        """(stored kind, the event as a client would see it in /sync, the room or user it is about)."""
        if kind == "to_device":
            return [("to_device", {**message, "to_user_id": user_id, "to_device_id": device_id}, user_id)
                    for user_id, device_id, message in value]
        if kind == "typing":
            room_id, typers = value
            return [("ephemeral", {"type": "m.typing", "room_id": room_id, "content": {"user_ids": list(typers)}},
                     room_id)]
        if kind == "receipt":
            data = dict(value.data)
            if value.thread_id is not None:
                data["thread_id"] = value.thread_id
            return [("ephemeral", {"type": "m.receipt", "room_id": value.room_id, "content": {
                value.event_id: {value.receipt_type: {value.user_id: data}}}}, value.room_id)]
        now = int(self.reactor.seconds() * 1000)
        content = {"presence": value.state, "currently_active": value.currently_active,
                   "last_active_ago": max(0, now - value.last_active_ts)}
        if value.status_msg is not None:
            content["status_msg"] = value.status_msg
        return [("ephemeral", {"type": "m.presence", "sender": value.user_id, "content": content}, value.user_id)]

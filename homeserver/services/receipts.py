"""Receipts and read markers (client-server "Receipts", "Fully read markers") and the receipts sync stream.

Receipts only move forward: one for an event at or before the current
receipt of the same (room, type, user, thread) is ignored, as in Synapse.
``m.fully_read`` is not a receipt but the room account data of that type.
"""

from __future__ import annotations

from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.events.threads import MAIN_THREAD, thread_walk
from homeserver.services.account_data import AccountDataService
from homeserver.storage.streams import ChangeTracker
from homeserver.storage.events import StoredEvent
from homeserver.storage.receipts import Receipt, ReceiptStore
from homeserver.storage.streams import StreamIdGenerator
from homeserver.services.edu_outbox import EduOutbox, EphemeralFeed
from homeserver.services.room_events.heads import RoomHeads

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE, FULLY_READ)


class ReceiptService:
    name = "receipts"
    sync_phase = 0  # sync: needs the user's rooms only (services/sync.py SyncSource)
    token_key = "r"  # in sync tokens (services/sync.py)

    def __init__(self, *, store: ReceiptStore, room_heads: RoomHeads, account_data: AccountDataService, notifier, clock,
                 federation: EduOutbox, appservices: EphemeralFeed, on_read=None):
        self._store = store
        self._heads = room_heads
        self._account_data = account_data
        self._notifier = notifier
        self._clock = clock
        self.stream = StreamIdGenerator(store.max_stream_id_sync())
        self.changes = ChangeTracker(self.stream.current())
        self._federation = federation  # told of each receipt stored
        self._appservices = appservices  # the application services' ephemeral events
        self._on_read = on_read  # told of a local user's own read receipt (the pushers' badge updates)

    def current(self) -> int:
        return self.stream.current()

    async def _check_target(self, room_id: str, user_id: str, event_id: str) -> StoredEvent:
        """The event a receipt or marker points at: the user must be joined and the event in the room."""
        if await self._heads.membership(room_id, user_id) != "join":
            raise forbidden("You are not joined to this room")
        event = await self._heads.get_event(event_id)
        if event is None or event.room_id != room_id or event.outlier:
            raise not_found("Event not found in this room")
        return event

    async def send_receipt(self, room_id: str, user_id: str, receipt_type: str, event_id: str,
                           thread_id: str | None = None) -> None:
        """POST /rooms/{roomId}/receipt/{receiptType}/{eventId}, ``m.fully_read`` included."""
        if receipt_type == FULLY_READ:
            await self.set_read_markers(room_id, user_id, {FULLY_READ: event_id})
            return
        event = await self._check_target(room_id, user_id, event_id)
        if thread_id is not None and not await self._in_thread(event, thread_id):
            raise invalid_param(f"event_id {event_id} is not related to thread {thread_id}")
        await self._store_receipt(event, receipt_type, user_id, thread_id)

    async def set_read_markers(self, room_id: str, user_id: str, markers: dict[str, str]) -> None:
        """POST /rooms/{roomId}/read_markers: every target is checked before anything is written.

        Spec "Fully read markers": ``m.fully_read`` is stored as the room account data of that type.
        """
        events = {rtype: await self._check_target(room_id, user_id, event_id) for rtype, event_id in markers.items()}
        for rtype, event in events.items():
            if rtype == FULLY_READ:
                await self._account_data.put(user_id, room_id, FULLY_READ, {"event_id": event.event_id})
            else:
                await self._store_receipt(event, rtype, user_id, None)

    async def receive_remote(self, room_id: str, user_id: str, event_id: str, data: dict) -> None:
        """An ``m.read`` receipt of a remote user (server-server "Receipts"): kept if the user is joined and
        the event known; the thread and timestamp come from ``data``."""
        if await self._heads.membership(room_id, user_id) != "join":
            return
        event = await self._heads.get_event(event_id)
        if event is None or event.room_id != room_id or event.outlier:
            return
        thread_id = data.get("thread_id") if isinstance(data.get("thread_id"), str) else None
        await self._store_receipt(event, READ, user_id, thread_id, data)

    async def _store_receipt(self, event: StoredEvent, receipt_type: str, user_id: str,
                             thread_id: str | None, data: dict | None = None) -> None:
        """Persist an already checked receipt, advance the stream and wake the room."""
        remote = data is not None
        if data is None:
            data = {"ts": int(self._clock.seconds() * 1000)}
            if thread_id is not None:
                data["thread_id"] = thread_id
        receipt = Receipt(event.room_id, receipt_type, user_id, thread_id, event.event_id, event.stream_ordering,
                          data)
        (position,) = self.stream.allocate()
        try:
            stored = await self._store.upsert(receipt, position)
            if stored:
                self.changes.record(event.room_id, position)
        finally:
            self.stream.done([position])
        if stored:
            self.stream.when_visible(
                position, lambda: self._notifier.notify(users=[user_id], rooms=[event.room_id]))
            self._federation.on_receipt(receipt)
            self._appservices.on_receipt(receipt)
            if self._on_read is not None and receipt_type in (READ, READ_PRIVATE) and not remote:
                self._on_read(user_id)

    async def _in_thread(self, event: StoredEvent, thread_id: str) -> bool:
        """Spec "Threaded read receipts": whether ``event`` belongs to ``thread_id`` ("main" or a root).

        An event with an ``m.thread`` relation (directly or within three hops) is in that thread; any
        other event is in the main timeline. A thread root, and events hanging from it by other
        relations, also take receipts for their own thread.
        """
        root, chain = await thread_walk(event, self._heads.get_event)
        if root is not None:
            return root == thread_id
        return thread_id == MAIN_THREAD or thread_id in chain

    async def latest_read_position(self, room_id: str, user_id: str, thread_id: str | None = None) -> int | None:
        """Stream ordering of the event of the user's latest ``m.read``/``m.read.private`` receipt in the room.

        With ``thread_id`` None every receipt counts (unthreaded or in any thread); with a thread
        ("main" or a root id) the unthreaded receipts and that thread's count. None when there is none.
        """
        positions = (await self._store.read_positions([room_id], user_id))[room_id]
        if thread_id is not None:
            positions = {k: v for k, v in positions.items() if k is None or k == thread_id}
        return max(positions.values(), default=None)

    async def contribute(self, ctx, response) -> None:
        """Spec "m.receipt" in each joined room's ``ephemeral``: latest receipts initially, then the changes.

        One event per room and thread (spec "Receipts", server behaviour), so that an unthreaded and a
        threaded receipt of one user on one event do not overwrite each other. Rooms joined since the token get their latest receipts. ``m.read.private`` goes to its owner only.
        """
        since, to = ctx.since_of(self.name), ctx.to[self.name]
        rooms = [r for r in ctx.joined_rooms if ctx.filter.ephemeral.allows({"type": "m.receipt", "room_id": r})]
        if since is None:
            full, delta = rooms, []
        else:
            full = [r for r in rooms if r in ctx.newly_joined]
            delta = [r for r in rooms if r not in ctx.newly_joined and self.changes.changed_since(r, since)]
        receipts = await self._store.receipts_for_rooms(full, None, to)
        receipts += await self._store.receipts_for_rooms(delta, since, to)
        batches: dict[tuple[str, str | None], dict] = {}  # one event per room and thread
        for r in receipts:
            if r.receipt_type == READ_PRIVATE and r.user_id != ctx.user_id:
                continue
            content = batches.setdefault((r.room_id, r.thread_id), {})
            content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = r.data
        for (room_id, _), content in batches.items():
            response.room("join", room_id)["ephemeral"]["events"].append({"type": "m.receipt", "content": content})

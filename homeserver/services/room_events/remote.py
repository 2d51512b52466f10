"""Remote room events, already checked (``federation/handlers/receive.py``), persisted.

Spec server-server "Checks performed on receipt of a PDU" (what is stored and how: outliers, soft failures),
"Room state resolution" (the room's state after several forward extremities), "Backfilling" and "Inviting to
a room" (memberships of rooms this server is not in). Writes take the room's lock (:meth:`RoomHeads.lock`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from homeserver.events.auth_rules import may_redact_others
from homeserver.events.builder import event_id_list
from homeserver.events.hashing import event_id_of
from homeserver.events.identifiers import domain_of
from homeserver.events.room_head import advance, state_after, state_delta
from homeserver.events.room_versions import RoomVersion
from homeserver.services.room_events.heads import CREATE_KEY, RoomEventListener, RoomHead, RoomHeads, announce
from homeserver.storage.events import CurrentStateEntry, EventStore, NewEvent, StateKey, StoredEvent


@dataclass
class ExternalEvent:
    """A PDU from another server, already checked, to persist.

    Outliers are stored without state. Other events need the state before them;
    ``state_before_group`` names a stored group equal to ``state_before`` when there is one.
    """

    pdu: dict
    outlier: bool = False
    state_before: dict[StateKey, str] | None = None
    state_before_group: int | None = None
    soft_failed: bool = False
    encoded: bytes | None = None  # the PDU's canonical JSON, when the checks encoded it already


class RemotePersistence:
    def __init__(self, *, heads: RoomHeads, store: EventStore, listeners: Sequence[RoomEventListener]):
        self._heads = heads
        self._store = store
        self._listeners = listeners  # called in order with each batch of new events (see server.py)
        self._backfill_floor: int | None = None  # backfilled events count down from below every other

    def batch(self) -> None:
        """No batching here: each checked event is persisted at once (see ``ForwardedPersistence.batch``)."""
        return None

    async def _head_or_new(self, room_id: str, version: RoomVersion) -> RoomHead:
        """The room's head, recording the room first if this server has never seen it (call under the lock)."""
        head = await self._heads.head(room_id)
        if head is None:
            head = await self._heads.new_room(room_id, version, None, False, self._heads.now_ms())
        return head

    async def persist_external(self, room_id: str, version: RoomVersion, items: list[ExternalEvent]
                               ) -> list[StoredEvent]:
        """Persist checked remote events in order; the room is created if we did not know it."""
        stream = self._heads.stream
        async with self._heads.lock(room_id):
            head = await self._head_or_new(room_id, version)
            work = head.copy()
            known = await self._heads.get_events(event_id_of(i.pdu, version) for i in items)
            # An event we hold is stored once; an outlier we hold may join the timeline now.
            items = [i for i in items if event_id_of(i.pdu, version) not in known
                     or (not i.outlier and known[event_id_of(i.pdu, version)].outlier)]
            positions = stream.allocate(len(items))
            news = []
            pending: dict[str, StoredEvent] = {}
            try:  # done() even if preparing fails: an unfinished position would hold the stream back
                for item, pos in zip(items, positions):
                    new = await self._prepare_external(work, item, pos, pending)
                    new.was_outlier = new.event.event_id in known
                    news.append(new)
                redacted = await self._store.persist_events(news, apply_pending_redactions=True)
            finally:
                stream.done(positions)
            head.take(work)
        events = [n.event for n in news]
        for ev in events:
            ev.redacted_by = redacted.get(ev.event_id, ev.redacted_by)
        self._heads.remember(news)
        announce(stream, self._listeners, [e for e in events if not e.outlier])
        return events

    async def store_out_of_band_membership(self, room_id: str, version: RoomVersion, pdu: dict) -> StoredEvent:
        """An invite, knock or rejection for a room this server is not in (spec "Inviting to a room"):
        stored as an outlier that sets the local user's membership, so /sync shows it."""
        stream = self._heads.stream
        async with self._heads.lock(room_id):
            head = await self._head_or_new(room_id, version)
            pos = stream.allocate()[0]
            event = StoredEvent(event_id_of(pdu, version), pdu, pos, room_id, outlier=True)
            key = ("m.room.member", pdu["state_key"])
            try:
                await self._store.persist_out_of_band_membership(event, CurrentStateEntry(
                    event.event_id, pdu["content"]["membership"], pos))
            finally:
                stream.done([pos])
            # Replaced, never changed in place; no state group holds it now.
            head.state, head.state_group = {**head.state, key: event.event_id}, None
        self._heads.cache.put(event.event_id, event)
        announce(stream, self._listeners, [event])
        return event

    async def persist_backfilled(self, room_id: str, version: RoomVersion, pdus: list[dict]) -> list[StoredEvent]:
        """History fetched with /backfill: stored before everything we hold (negative stream
        positions, newest first), never in /sync, without changing the room's current state."""
        async with self._heads.lock(room_id):
            if self._backfill_floor is None:
                self._backfill_floor = min(await self._store.min_stream_ordering(), 0)
            known = await self._heads.get_events(event_id_of(p, version) for p in pdus)
            news = []
            for pdu in sorted(pdus, key=lambda p: -p.get("depth", 0)):
                self._backfill_floor -= 1
                event_id = event_id_of(pdu, version)
                news.append(NewEvent(event=StoredEvent(event_id, pdu, self._backfill_floor, room_id),
                                     add_extremity=False, was_outlier=event_id in known))
            await self._store.persist_events(news)
        self._heads.remember(news)
        return [n.event for n in news]

    async def _prepare_external(self, work: RoomHead, item: ExternalEvent, pos: int,
                                pending: dict[str, StoredEvent]) -> NewEvent:
        pdu = item.pdu
        event = StoredEvent(event_id_of(pdu, work.version), pdu, pos, work.room_id,
                            outlier=item.outlier or item.soft_failed)
        new = NewEvent(event=event, add_extremity=not event.outlier, encoded=item.encoded)
        pending[event.event_id] = event
        if item.state_before is None:
            return new
        key = (pdu["type"], pdu["state_key"]) if "state_key" in pdu else None
        after = state_after(item.state_before, key, event.event_id)
        if key is not None:
            event.replaces_state = item.state_before.get(key)
        if key is None and item.state_before_group is not None:
            event.state_group = item.state_before_group
        else:
            event.state_group = self._heads.new_state_group()
            new.prev_state_group = item.state_before_group
            new.state_group_delta = {key: event.event_id} if item.state_before_group is not None else after
        if event.outlier:
            return new
        if pdu["type"] == "m.room.redaction":
            await self._external_redaction(work, new, item.state_before, pending)
        moved = advance(work.extremities, work.depth, event.event_id, event_id_list(pdu.get("prev_events", [])),
                        pdu.get("depth", 0))
        new.extremities_remove, work.extremities, work.depth = moved.removed, moved.extremities, moved.depth
        if work.extremities == [event.event_id]:
            resolved, work.state_group = after, event.state_group
        else:
            resolved = await self._resolve_extremities(work, pending)
            work.state_group = None
        changed = state_delta(work.state, resolved)
        changed_events = await self._heads.events_incl_pending(changed.values(), pending)
        new.current_state_delta = {
            k: CurrentStateEntry(v, changed_events[v].content.get("membership") if k[0] == "m.room.member" else None,
                                 changed_events[v].stream_ordering)
            for k, v in changed.items() if v in changed_events}
        if changed or len(resolved) != len(work.state):  # else the same state: the head keeps its dict
            work.state = resolved
        return new

    async def _resolve_extremities(self, work: RoomHead, pending: dict[str, StoredEvent]) -> dict[StateKey, str]:
        """The room's state: the resolution of the state after each forward extremity."""
        ext = await self._heads.events_incl_pending(work.extremities, pending)
        state_sets = []
        for ev in ext.values():
            group_state = await self._store.get_state_group(ev.state_group)
            if ev.state_key is not None and ev.event_id in pending and ev.state_group is not None:
                group_state[(ev.type, ev.state_key)] = ev.event_id
            state_sets.append(group_state)
        return await self._heads.resolve(work.version, state_sets, pending)

    async def _external_redaction(self, work: RoomHead, new: NewEvent, state_before: dict[StateKey, str],
                                  pending: dict[str, StoredEvent]) -> None:
        """Spec room versions, "Redactions": a remote redaction (``redacts`` top-level up to v10, in ``content``
        from v11) applies to an event of its room whose sender has its sender's domain, or to any if its
        sender may redact others by the power levels before it. One whose target we lack yet waits for it."""
        pdu = new.event.pdu
        target_id = pdu.get("content", {}).get("redacts") if work.version.redacts_in_content else pdu.get("redacts")
        if not isinstance(target_id, str):
            return
        keys = [CREATE_KEY, ("m.room.power_levels", "")]
        auth_events = await self._heads.events_incl_pending(
            [state_before[k] for k in keys if k in state_before], pending)
        auth_state = {k: auth_events[state_before[k]].pdu for k in keys if state_before.get(k) in auth_events}
        by_power = may_redact_others(work.version, auth_state, pdu["sender"])
        target = (await self._heads.events_incl_pending([target_id], pending)).get(target_id)
        if target is None:
            new.pending_redaction = (target_id, None if by_power else domain_of(pdu["sender"]))
        elif target.room_id == work.room_id and (by_power or domain_of(target.sender) == domain_of(pdu["sender"])):
            new.redacts = target_id

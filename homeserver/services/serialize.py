"""Turning stored PDUs into client events (client-server "Room Event Format").

Adds what ``unsigned`` carries for clients: age, transaction_id (for the
sending device only), prev_content / replaces_state, redacted_because, and
the bundled aggregations of "Aggregations of child events" (edits, threads).
"""

from __future__ import annotations

from homeserver.events.client_format import copy_json, to_client_event
from homeserver.events.redaction import redact_event
from homeserver.requester import Requester
from homeserver.services.filtering import apply_event_fields
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.services.room_events.heads import RoomHeads


class EventSerializer:
    def __init__(self, room_heads: RoomHeads, store: EventStore):
        self._heads = room_heads
        self._store = store

    async def serialize(self, events: list[StoredEvent], requester: Requester | None, *,
                        bundle: bool = True, event_fields=None, include_room_id: bool = True,
                        federation_format: bool = False) -> list[dict]:
        """``federation_format`` (a sync filter's ``event_format``): each event as its PDU (with its
        ``event_id`` and the same ``unsigned``) rather than the client format."""
        if not events:
            return []
        now = self._heads.now_ms()
        related_ids = [e.replaces_state for e in events if e.replaces_state] + [
            e.redacted_by for e in events if e.redacted_by]
        related = await self._heads.get_events(related_ids)
        summaries = await self._store.get_relation_summaries([e.event_id for e in events]) if bundle else {}
        edits = await self._heads.get_events(
            s["edit"][0] for s in summaries.values() if "edit" in s)
        threads = await self._heads.get_events(
            s["thread"][1] for s in summaries.values() if "thread" in s)
        out = []
        for ev in events:
            client = await self._one(ev, requester, now, related, include_room_id, federation_format)
            summary = summaries.get(ev.event_id)
            if summary and not ev.redacted_by:
                relations = await self._bundle(ev, summary, edits, threads, requester, now)
                if relations:
                    client.setdefault("unsigned", {})["m.relations"] = relations
            out.append(apply_event_fields(client, event_fields))
        return out

    async def serialize_one(self, ev: StoredEvent, requester: Requester | None) -> dict:
        return (await self.serialize([ev], requester))[0]

    async def _one(self, ev: StoredEvent, requester, now: int, related: dict, include_room_id: bool,
                   federation_format: bool = False) -> dict:
        pdu = ev.pdu
        if ev.redacted_by:
            version = await self._heads.room_version(ev.room_id)
            pdu = redact_event(pdu, version)
        if federation_format:
            client = copy_json(pdu)
        else:
            client = to_client_event(pdu, include_room_id=include_room_id)
        client["event_id"] = ev.event_id
        if include_room_id and not federation_format:
            client["room_id"] = ev.room_id  # a v12 create event's PDU has none
        unsigned = client.setdefault("unsigned", {})
        unsigned["age"] = max(0, now - pdu.get("origin_server_ts", now))
        if (requester is not None and ev.txn_id is not None and requester.user_id == ev.sender
                and requester.device_id == ev.txn_device):
            unsigned["transaction_id"] = ev.txn_id
        if ev.replaces_state:
            unsigned["replaces_state"] = ev.replaces_state
            prev = related.get(ev.replaces_state)
            if prev is not None:
                unsigned["prev_content"] = prev.content if not prev.redacted_by else redact_event(
                    prev.pdu, await self._heads.room_version(ev.room_id)).get("content", {})
                unsigned["prev_sender"] = prev.sender
        if ev.redacted_by:
            unsigned["redacted_by"] = ev.redacted_by  # not in the spec's ClientEvent; Synapse sends it
            because = related.get(ev.redacted_by)
            if because is not None:
                unsigned["redacted_because"] = to_client_event(because.pdu, include_room_id=include_room_id)
                unsigned["redacted_because"]["event_id"] = because.event_id
        return client

    async def _bundle(self, ev, summary, edits, threads, requester, now) -> dict:
        relations = {}
        edit = summary.get("edit")
        if edit is not None and edit[1] == ev.sender and edit[0] in edits:
            relations["m.replace"] = await self._one(edits[edit[0]], requester, now, {}, True)
        thread = summary.get("thread")
        if thread is not None and thread[1] in threads:
            count, latest_id = thread
            participated = requester is not None and (
                ev.sender == requester.user_id or await self._participated(ev.event_id, requester.user_id))
            relations["m.thread"] = {
                "latest_event": await self._one(threads[latest_id], requester, now, {}, True),
                "count": count,
                "current_user_participated": participated,
            }
        return relations

    async def _participated(self, root_id: str, user_id: str) -> bool:
        replies = await self._store.get_relations(root_id, "m.thread", None, None, 1000, False)
        return any(r.sender == user_id for r in replies)

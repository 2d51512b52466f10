"""Server-side search of room events (client-server "Server Side Search", POST /search).

Text is indexed when events are persisted (unencrypted ``m.room.message``
bodies, room names and topics). A search covers the rooms the user is
joined to, keeps only the events their history visibility lets them see,
and pages with an opaque ``next_batch``.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.services.filtering import EventFilter
from homeserver.services.background import BatchWriter, ListenerWork
from homeserver.storage.events import StoredEvent
from homeserver.storage.search import SearchQuery, SearchStore
from homeserver.services.room_events.heads import RoomHeads

INDEXED = {"m.room.message": "content.body", "m.room.name": "content.name", "m.room.topic": "content.topic"}
KEYS = tuple(INDEXED.values())
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100
MAX_FETCHES = 5  # store round trips per page when visibility filtering drops hits
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class RoomEventsCriteria:
    """The ``room_events`` category of a search request, validated."""

    term: str
    keys: list[str]
    filter: EventFilter
    by_rank: bool
    before_limit: int | None
    after_limit: int | None
    include_profile: bool
    include_state: bool
    group_by: list[str]

    @classmethod
    def parse(cls, raw) -> "RoomEventsCriteria":
        if not isinstance(raw, dict):
            raise bad_json("room_events must be an object")
        if "search_term" not in raw:
            raise missing_param("Missing 'search_term'")
        if not isinstance(raw["search_term"], str):
            raise bad_json("search_term must be a string")
        keys = raw.get("keys", list(KEYS))
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise bad_json("keys must be a list of strings")
        if any(k not in KEYS for k in keys):
            raise invalid_param(f"keys may only contain {', '.join(KEYS)}")
        order_by = raw.get("order_by", "rank")
        if order_by not in ("rank", "recent"):
            raise invalid_param("order_by must be rank or recent")
        context = raw.get("event_context")
        if context is not None and not isinstance(context, dict):
            raise bad_json("event_context must be an object")
        groupings = raw.get("groupings", {})
        groups = groupings.get("group_by", []) if isinstance(groupings, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise bad_json("groupings.group_by must be a list of objects")
        group_by = [g.get("key") for g in groups]
        if any(k not in ("room_id", "sender") for k in group_by):
            raise invalid_param("groupings may only group by room_id or sender")
        return cls(term=raw["search_term"], keys=list(dict.fromkeys(keys)),
                   filter=EventFilter.parse(raw.get("filter"), "filter"), by_rank=order_by == "rank",
                   before_limit=_context_limit(context, "before_limit"),
                   after_limit=_context_limit(context, "after_limit"),
                   include_profile=bool(context and context.get("include_profile") is True),
                   include_state=raw.get("include_state") is True, group_by=group_by)

    @property
    def limit(self) -> int:
        return min(self.filter.limit if self.filter.limit is not None else DEFAULT_LIMIT, MAX_LIMIT)


def _context_limit(context: dict | None, key: str) -> int | None:
    if context is None:
        return None
    value = context.get(key, DEFAULT_CONTEXT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_json(f"event_context.{key} must be a non-negative integer")
    return min(value, MAX_CONTEXT)


def _encode_batch(batch: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(batch, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_batch(token: str, by_rank: bool) -> dict:
    try:
        batch = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if batch["rank"] != by_rank or not isinstance(batch["offset"], int) or not (
                batch["before"] is None or isinstance(batch["before"], int)) or not (
                batch["room"] is None or isinstance(batch["room"], str)):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise invalid_param("Invalid next_batch token")
    return batch


class SearchService:
    def __init__(self, *, store: SearchStore, room_heads: RoomHeads, event_store, serializer, sync):
        self._store = store
        self._heads = room_heads
        self._event_store = event_store
        self._serializer = serializer
        self._sync = sync
        self.work = ListenerWork("Indexing events for search")
        self._writer = BatchWriter(store.index)

    # -- indexing ------------------------------------------------------------------------
    def on_room_events(self, events: list[StoredEvent]) -> None:
        """Room event listener: index searchable text, forget redacted events."""
        rows = []
        redactions = []
        for ev in events:
            if ev.outlier:
                continue
            key = INDEXED.get(ev.type)
            text = ev.content.get(key.split(".", 1)[1]) if key else None
            if isinstance(text, str) and text and (ev.type == "m.room.message") == (ev.state_key is None):
                # A NUL is no search term, and PostgreSQL text cannot hold one.
                rows.append((ev.stream_ordering, ev.event_id, ev.room_id, key, text.replace("\x00", "")))
            elif ev.type == "m.room.redaction":
                redactions.append(ev)
        if rows or redactions:
            self.work.start(self._index(rows, redactions), max(e.stream_ordering for e in events))

    async def flush(self) -> None:
        """Finish indexing what was persisted (at shutdown)."""
        await self.work.wait()

    async def _index(self, rows: list, redactions: list[StoredEvent]) -> None:
        await self._writer.write(rows)
        for ev in redactions:
            target = ev.pdu.get("redacts", ev.content.get("redacts"))
            if isinstance(target, str):
                found = (await self._event_store.get_events([target])).get(target)
                if found is not None and found.redacted_by:
                    await self._store.remove(ev.room_id, target)

    # -- searching ------------------------------------------------------------------------
    async def search(self, requester, body: dict, next_batch: str | None) -> dict:
        """Spec POST /search; only the ``room_events`` category exists."""
        categories = body.get("search_categories")
        if categories is None:
            raise missing_param("Missing 'search_categories'")
        if not isinstance(categories, dict):
            raise bad_json("search_categories must be an object")
        if "room_events" not in categories:
            return {"search_categories": {}}
        criteria = RoomEventsCriteria.parse(categories["room_events"])
        batch = _decode_batch(next_batch, criteria.by_rank) if next_batch else {
            "rank": criteria.by_rank, "offset": 0, "before": None, "room": None}
        return {"search_categories": {"room_events": await self._room_events_search(requester, criteria, batch)}}

    async def _room_events_search(self, requester, c: RoomEventsCriteria, batch: dict) -> dict:
        await self.work.wait()  # what was sent before the search is found by it
        user_id = requester.user_id
        rooms = [r for r, (m, _, _) in (await self._event_store.rooms_for_user(user_id)).items()
                 if m == "join" and c.filter.allows_room(r) and batch["room"] in (None, r)]
        words = [w.casefold() for w in _WORD.findall(c.term)]
        query = SearchQuery(words, sorted(rooms), c.keys, c.by_rank, batch["before"], batch["offset"],
                            c.limit * 2 + 1)
        found: list[tuple[StoredEvent, float]] = []
        more, count = False, 0
        for _ in range(MAX_FETCHES):
            hits, count = await self._store.search(query)
            events = await self._heads.get_events(h.event_id for h in hits)
            allowed = await self._allowed(user_id, c.filter, [events[h.event_id] for h in hits if h.event_id in events])
            taken = 0
            for hit in hits:
                if len(found) >= c.limit:
                    break
                taken += 1
                if hit.event_id in allowed:
                    found.append((allowed[hit.event_id], hit.rank))
            more = taken < len(hits) or len(hits) == query.limit
            query = SearchQuery(words, query.room_ids, c.keys, c.by_rank, query.before, query.offset + taken,
                                query.limit)
            if len(found) >= c.limit or not more:
                break
        result = {"count": count, "highlights": sorted(set(words)),
                  "results": await self._results(requester, c, found)}
        if more and found:
            result["next_batch"] = self._next_batch(c, batch, query, found, None)
        if c.group_by:
            result["groups"] = self._groups(c, batch, query, found, more)
        if c.include_state:
            result["state"] = await self._state(requester, {ev.room_id for ev, _ in found})
        return result

    async def _allowed(self, user_id: str, event_filter: EventFilter, events: list[StoredEvent]) -> dict:
        """The events the user may see (history visibility), not redacted, passing the filter."""
        by_room: dict[str, list[StoredEvent]] = {}
        for ev in events:
            if not ev.redacted_by and event_filter.allows(ev.pdu | {"room_id": ev.room_id}):
                by_room.setdefault(ev.room_id, []).append(ev)
        allowed = {}
        for room_id, room_events in by_room.items():
            for ev in await self._sync.visible_events(user_id, room_id, room_events):
                allowed[ev.event_id] = ev
        return allowed

    def _next_batch(self, c: RoomEventsCriteria, batch: dict, query: SearchQuery,
                    found: list[tuple[StoredEvent, float]], room: str | None) -> str:
        """Ranked results page by offset; recent ones continue below the last result."""
        if c.by_rank:
            return _encode_batch({"rank": True, "offset": query.offset, "before": None, "room": batch["room"]})
        last = [ev for ev, _ in found if room is None or ev.room_id == room][-1]
        return _encode_batch({"rank": False, "offset": 0, "before": last.stream_ordering,
                              "room": room if room is not None else batch["room"]})

    def _groups(self, c: RoomEventsCriteria, batch: dict, query: SearchQuery,
                found: list[tuple[StoredEvent, float]], more: bool) -> dict:
        """Spec "groupings": result ids per room or sender; ``order`` is the group's first appearance."""
        groups: dict[str, dict] = {}
        for key in c.group_by:
            group: dict[str, dict] = {}
            for ev, _ in found:
                value = ev.room_id if key == "room_id" else ev.sender
                entry = group.setdefault(value, {"results": [], "order": len(group) + 1})
                entry["results"].append(ev.event_id)
            if more and key == "room_id" and not c.by_rank:
                for room_id, entry in group.items():
                    entry["next_batch"] = self._next_batch(c, batch, query, found, room_id)
            groups[key] = group
        return groups

    async def _results(self, requester, c: RoomEventsCriteria, found: list[tuple[StoredEvent, float]]) -> list:
        serialized = await self._serializer.serialize([ev for ev, _ in found], requester)
        results = []
        for (ev, rank), event in zip(found, serialized):
            result = {"rank": rank, "result": event}
            if c.before_limit is not None:
                result["context"] = await self._context(requester, ev, c)
            results.append(result)
        return results

    async def _context(self, requester, ev: StoredEvent, c: RoomEventsCriteria) -> dict:
        """Spec "event_context": visible events around a result, and optionally their senders' profiles then."""
        user_id, room_id = requester.user_id, ev.room_id
        current = self._heads.stream.current()
        before = await self._event_store.room_events_between(room_id, ev.stream_ordering - 1, 0, c.before_limit,
                                                             backwards=True)
        after = await self._event_store.room_events_between(room_id, ev.stream_ordering, current, c.after_limit,
                                                            backwards=False)
        before = await self._sync.visible_events(user_id, room_id, before)
        after = await self._sync.visible_events(user_id, room_id, after)
        start = before[-1].stream_ordering - 1 if before else ev.stream_ordering - 1
        end = after[-1].stream_ordering if after else ev.stream_ordering
        positions = self._sync.current_positions()
        context = {
            "events_before": await self._serializer.serialize(before, requester),
            "events_after": await self._serializer.serialize(after, requester),
            "start": self._sync.encode_token(dict(positions, events=start)),
            "end": self._sync.encode_token(dict(positions, events=end)),
        }
        if c.include_profile:
            context["profile_info"] = await self._profiles_at(ev, {e.sender for e in before + after + [ev]})
        return context

    async def _profiles_at(self, ev: StoredEvent, senders: set[str]) -> dict:
        state = await self._heads.state_at_group(ev.state_group)
        members = await self._heads.get_events(
            state[("m.room.member", s)] for s in senders if ("m.room.member", s) in state)
        profiles = {}
        for member in members.values():
            profile = {k: member.content[k] for k in ("displayname", "avatar_url")
                       if isinstance(member.content.get(k), str)}
            profiles[member.state_key] = profile
        return profiles

    async def _state(self, requester, room_ids: set[str]) -> dict:
        """Spec ``include_state``: the current state of each room with results."""
        out = {}
        for room_id in sorted(room_ids):
            state = await self._heads.current_state(room_id)
            out[room_id] = await self._serializer.serialize(list(state.values()), requester, bundle=False)
        return out

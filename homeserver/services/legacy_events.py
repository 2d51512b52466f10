"""The deprecated event stream and initial syncs still in spec v1.19: ``GET /events`` (with ``room_id`` to peek
into a world-readable room), ``GET /events/{eventId}``, ``GET /initialSync``, ``GET /rooms/{roomId}/initialSync``.

Nothing here reads the streams itself: the global forms are /sync answers (services/sync.py, whose tokens
they hand out and accept) reshaped into the old formats, and the per-room forms are /messages and /state
(services/history.py), so history visibility and peeking are decided in one place for every read path.
"""

from __future__ import annotations

import json

from homeserver.bodies import RawBody
from homeserver.errors import MatrixError, not_found
from homeserver.requester import Requester
from homeserver.services.filtering import EventFilter, SyncFilter
from homeserver.services.history import OLDEST_POSITION, RoomHistoryService

STREAM_LIMIT = 100  # at most, events of one room per /events answer (``limit``; Synapse pages the old stream too)


class LegacyEventsService:
    def __init__(self, *, sync, history: RoomHistoryService, room_heads, notifier, serializer, directory, presence,
                 clock):
        self._sync = sync
        self._presence = presence
        self._history = history
        self._heads = room_heads
        self._notifier = notifier
        self._serializer = serializer
        self._directory = directory
        self._clock = clock

    # -- GET /events ----------------------------------------------------------------------
    async def events(self, requester: Requester, from_token: str | None, timeout_ms: int,
                     room_id: str | None, limit: int = STREAM_LIMIT) -> dict:
        """Spec GET /events: what happened after ``from`` (now when absent), waiting up to ``timeout_ms``."""
        start = from_token or self._sync.encode_token(self._sync.current_positions())
        if room_id is not None:
            return await self._room_stream(requester, room_id, start, timeout_ms, limit)
        if requester.is_guest:
            raise MatrixError(400, "M_GUEST_ACCESS_FORBIDDEN", "Guest users must give room_id")
        filt = SyncFilter(timeline=EventFilter(limit=limit))
        # As Synapse: the oldest ``limit`` events after ``from``, and an ``end`` that resumes after them.
        upto = await self._sync.events_ceiling(requester.user_id, self._sync.parse_token(start)["events"], limit)
        response = await self._sync.sync(requester, start, timeout_ms, filt, False, events_upto=upto)
        chunk = list(response["presence"]["events"]) + list(response["account_data"]["events"])
        timelines, others = [], []
        for section in ("join", "leave"):
            for rid, room in response["rooms"][section].items():
                timeline = [v1_event(e, rid) for e in room["timeline"]["events"]]
                timelines += _after_own_join(timeline, requester.user_id)
                others += [dict(e, room_id=rid) for e in room.get("ephemeral", {}).get("events", [])]
                others += [dict(e, room_id=rid) for e in room["account_data"]["events"]]
        stored = await self._heads.get_events(e["event_id"] for e in timelines)
        timelines.sort(key=lambda e: stored[e["event_id"]].stream_ordering if e["event_id"] in stored else 0)
        chunk += timelines + others  # the rooms' events in the order they happened, as one stream
        for rid in response["rooms"]["invite"]:
            own = await self._heads.current_state_event(rid, "m.room.member", requester.user_id)
            if own is not None:
                chunk.append(v1_event(await self._serializer.serialize_one(own, requester), rid))
        return {"chunk": chunk, "start": start, "end": response["next_batch"]}

    async def _room_stream(self, requester: Requester, room_id: str, start: str, timeout_ms: int,
                           limit: int) -> dict:
        """Peeking: the room's events after ``start`` that the user may see (members, or anyone in a
        world-readable room), as /messages forwards."""
        deadline = self._clock.seconds() + timeout_ms / 1000.0
        since = self._sync.parse_token(start)
        while True:
            to = self._sync.current_positions()
            end = self._sync.encode_token(to)
            page = await self._history.messages(requester, room_id, from_token=start, to_token=end, direction="f",
                                                limit=limit, event_filter=EventFilter())
            ephemeral = await self._sync.peek_ephemeral(requester, room_id, since, to)
            if "end" in page:  # more events than ``limit``: resume after the last one given
                to = dict(to, events=self._sync.parse_token(page["end"])["events"])
            remaining_ms = (deadline - self._clock.seconds()) * 1000
            if page["chunk"] or ephemeral or remaining_ms <= 0:
                return {"chunk": [v1_event(e, room_id) for e in page["chunk"]] + ephemeral, "start": start,
                        "end": self._sync.encode_token(to)}
            if self._sync.current_positions() != to:
                continue
            if not await self._notifier.wait(requester.user_id, [room_id], remaining_ms):
                return {"chunk": [], "start": start, "end": end}

    async def event(self, requester: Requester, event_id: str) -> dict:
        """Spec GET /events/{eventId}: one event the user may see."""
        ev = await self._heads.get_event(event_id)
        if ev is None or ev.outlier:
            raise not_found("Event not found")
        return v1_event(await self._history.event(requester, ev.room_id, event_id), ev.room_id)

    # -- initial syncs ----------------------------------------------------------------------
    async def initial_sync(self, requester: Requester, limit: int, archived: bool) -> dict:
        """Spec GET /initialSync: every room of the user (left ones with ``archived``), in the old format."""
        response = await self._v3_initial(requester, SyncFilter(timeline=EventFilter(limit=limit),
                                                                include_leave=archived))
        rooms, receipts = [], []
        for section, membership in (("join", "join"), ("leave", None)):
            for rid, room in response["rooms"][section].items():
                info = _room_info(rid, room, response["next_batch"])
                if membership is None:
                    own = await self._heads.current_state_event(rid, "m.room.member", requester.user_id)
                    membership = own.content.get("membership", "leave") if own is not None else "leave"
                info["membership"] = membership
                info["visibility"] = await self._directory.get_visibility(rid)
                receipts += _receipts(rid, room)
                rooms.append(info)
        for rid, room in response["rooms"]["invite"].items():
            own = await self._heads.current_state_event(rid, "m.room.member", requester.user_id)
            rooms.append({"room_id": rid, "membership": "invite", "state": room["invite_state"]["events"],
                          **({"invite": v1_event(await self._serializer.serialize_one(own, requester), rid)}
                             if own else {})})
        members = {e["state_key"] for info in rooms for e in info["state"]
                   if e["type"] == "m.room.member" and e["content"].get("membership") == "join"}
        members.add(requester.user_id)
        return {"end": response["next_batch"], "rooms": rooms, "presence": await self._presence_events(members),
                "account_data": [e for e in response["account_data"]["events"] if e["type"] != "m.push_rules"],
                "receipts": receipts}

    async def _presence_events(self, user_ids) -> list[dict]:
        """The old format's ``presence``: every one of these users' presence, offline ones included (as
        Synapse)."""
        if not self._presence.enabled or not user_ids:
            return []
        rows = await self._presence.states_of(sorted(user_ids))
        return [{"type": "m.presence", "sender": row.user_id,
                 "content": dict(self._presence.format(row), user_id=row.user_id)} for row in rows]

    async def room_initial_sync(self, requester: Requester, room_id: str, limit: int) -> dict:
        """Spec GET /rooms/{roomId}/initialSync: for members (and former members, up to their leave) and for
        anyone in a world-readable room (peeking)."""
        page = await self._history.messages(requester, room_id, from_token=None, to_token=None, direction="b",
                                            limit=limit, event_filter=EventFilter())
        oldest = self._sync.encode_token(dict(self._sync.current_positions(), events=OLDEST_POSITION))
        state = [v1_event(e, room_id) for e in await self._serializer.serialize(
            await self._history.state(requester, room_id), requester, bundle=False)]
        own = await self._heads.current_state_event(room_id, "m.room.member", requester.user_id)
        membership = own.content.get("membership") if own else "leave"
        departed = own is not None and membership in ("leave", "ban")
        # A former member sees the room as it was when they left: no presence, no receipts (as Synapse).
        result = {"room_id": room_id, "membership": membership,
                  "messages": {"chunk": [v1_event(e, room_id) for e in page["chunk"][::-1]],
                               "start": page.get("end", oldest), "end": page["start"]},
                  "state": state, "receipts": [], "account_data": [],
                  "presence": [] if departed else await self._presence_events(
                      {e["state_key"] for e in state
                       if e["type"] == "m.room.member" and e["content"].get("membership") == "join"}),
                  "visibility": await self._directory.get_visibility(room_id)}
        if own is not None and membership in ("join", "leave", "ban"):
            response = await self._v3_initial(requester, SyncFilter(timeline=EventFilter(limit=0),
                                                                    rooms=(room_id,), include_leave=True))
            room = response["rooms"]["join"].get(room_id) or response["rooms"]["leave"].get(room_id)
            if room is not None:
                result["account_data"] = room["account_data"]["events"]
                result["receipts"] = [] if departed else _receipts(room_id, room)
        return result

    async def _v3_initial(self, requester: Requester, sync_filter: SyncFilter) -> dict:
        response = await self._sync.sync(requester, None, 0, sync_filter, False)
        return json.loads(response.data) if isinstance(response, RawBody) else response


def v1_event(event: dict, room_id: str) -> dict:
    """An event as the deprecated endpoints gave them (Synapse's v1 client format): with its room id, the
    sender again as ``user_id``, and ``age`` and ``prev_content`` at the top level too."""
    out = dict(event, room_id=room_id)
    if "sender" in out:
        out.setdefault("user_id", out["sender"])
    unsigned = out.get("unsigned") or {}
    for key in ("age", "prev_content", "replaces_state"):
        if key in unsigned:
            out.setdefault(key, unsigned[key])
    return out


def _after_own_join(timeline: list[dict], user_id: str) -> list[dict]:
    """A room newly joined comes with history before the join; the stream starts at the join."""
    for i in range(len(timeline) - 1, -1, -1):
        ev = timeline[i]
        if ev["type"] == "m.room.member" and ev.get("state_key") == user_id \
                and ev["content"].get("membership") == "join":
            return timeline[i:]
    return timeline


def _room_info(room_id: str, room: dict, end: str) -> dict:
    """A /sync room as the old format's room: the current state (the state before the timeline, then the
    timeline's state events), the timeline as ``messages``."""
    timeline = [v1_event(e, room_id) for e in room["timeline"]["events"]]
    state = {(e["type"], e["state_key"]): v1_event(e, room_id) for e in room["state"]["events"]}
    for e in timeline:
        if "state_key" in e:
            state[(e["type"], e["state_key"])] = e
    return {"room_id": room_id, "messages": {"chunk": timeline, "start": room["timeline"].get("prev_batch", end),
                                             "end": end},
            "state": list(state.values()), "account_data": room["account_data"]["events"]}


def _receipts(room_id: str, room: dict) -> list[dict]:
    return [dict(e, room_id=room_id) for e in room.get("ephemeral", {}).get("events", [])
            if e.get("type") == "m.receipt"]

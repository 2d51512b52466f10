"""Presence (client-server "Presence") and its sync stream.

Each user has one state (online, unavailable, offline), a status message and
the time of their last activity. Explicit changes (PUT, ``set_presence`` on
/sync, sending events) update it; a timer applies Synapse's timeouts: idle
after five minutes, not ``currently_active`` after one, offline when the user
stops syncing. Only a change others should see is written to the stream.

Over federation (server-server "Presence"), ``federation`` hears of every such
change of a local user (and, every 25 minutes, the state of those still not
offline, as Synapse pings); remote users' states come from their servers and
turn offline after 30 minutes without news, as Synapse does.
"""

from __future__ import annotations

import dataclasses
import logging

from twisted.internet import defer

from homeserver.errors import forbidden, invalid_param
from homeserver.lru import LruCache
from homeserver.services.edu_outbox import EduOutbox, EphemeralFeed
from homeserver.storage.presence import PresenceRow, PresenceStore
from homeserver.storage.streams import StreamIdGenerator

logger = logging.getLogger(__name__)

STATES = ("online", "unavailable", "offline")
ACTIVE_GRANULARITY_MS = 60_000      # Synapse's LAST_ACTIVE_GRANULARITY
IDLE_TIMEOUT_MS = 5 * 60_000        # Synapse's IDLE_TIMER
# Synapse's SYNC_ONLINE_TIMEOUT is 30 s counted from the end of a sync; we only see syncs start,
# and a long-poll lasts up to ~30 s, hence twice that.
SYNC_ONLINE_TIMEOUT_MS = 60_000
TIMER_INTERVAL_S = 5.0
FEDERATION_TIMEOUT_MS = 30 * 60_000        # Synapse's FEDERATION_TIMEOUT
FEDERATION_PING_INTERVAL_MS = 25 * 60_000  # Synapse's FEDERATION_PING_INTERVAL
OFFLINE_CACHED = 10_000  # local users known to be offline, kept so that their next events read nothing


def presence_content(state: PresenceRow, now_ms: int) -> dict:
    """The ``m.presence`` content of a state (spec "Presence": ``last_active_ago`` counted from ``now_ms``)."""
    content: dict = {"presence": state.state}
    if state.last_active_ts:
        content["last_active_ago"] = max(0, now_ms - state.last_active_ts)
    if state.state == "online":
        content["currently_active"] = state.currently_active
    if state.status_msg is not None:
        content["status_msg"] = state.status_msg
    return content


class PresenceService:
    """The presence of local users, kept in memory once loaded, persisted when it visibly changes."""

    name = "presence"
    token_key = "p"  # in sync tokens (services/sync.py)
    sync_phase = 0  # sync: the joins in the timelines read once built (services/sync.py SyncSource)

    def __init__(self, *, store: PresenceStore, event_store, notifier, clock, enabled: bool, server_name: str,
                 federation: EduOutbox, appservices: EphemeralFeed, writer: bool = True):
        """``writer`` False (a worker): presence is read from the store, which the main process writes; /sync's
        ``set_presence`` changes nothing."""
        self._store = store
        self._writer = writer
        self._event_store = event_store
        self._notifier = notifier
        self._clock = clock
        self.enabled = enabled
        self._server_suffix = ":" + server_name
        self.stream = StreamIdGenerator(store.max_stream_id_sync())
        self._states: dict[str, PresenceRow] = {}  # local users not offline
        # Local users read offline from the store (the writer only: no one else changes them, so they stay
        # offline until a change here moves them to _states).
        self._offline: LruCache[str, PresenceRow] = LruCache(OFFLINE_CACHED)
        self._last_sync: dict[str, int] = {}
        self._last_pushed: dict[str, int] = {}  # local user -> when the federation last heard of them
        self._remote_updated: dict[str, int] = {}  # remote user not offline -> when their server last told us
        self._federation = federation  # told of each visible change of a local user
        self._appservices = appservices  # the application services' ephemeral events
        self._timer = None
        self._restored = False
        self._changes = 0  # state changes made in memory (volatile_marker)

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def current(self) -> int:
        return self.stream.current()

    def _is_local(self, user_id: str) -> bool:
        return user_id.endswith(self._server_suffix)

    # -- reading -----------------------------------------------------------------------
    async def _states_by_user(self, user_ids) -> dict[str, PresenceRow]:
        """Users' states: from memory while not offline (or known offline), else from the store (one query for
        them all)."""
        found = {u: state for u in user_ids
                 if (state := self._states.get(u)) is not None or (state := self._offline.get(u)) is not None}
        missing = [u for u in user_ids if u not in found]
        stored = await self._store.get(missing)
        for user_id in missing:
            state = stored.get(user_id) or PresenceRow(user_id, "offline", None, 0, False)
            if self._is_local(user_id) and self._writer:
                if state.state != "offline":
                    state = self._states.setdefault(user_id, state)
                elif user_id not in self._states:
                    self._offline.put(user_id, state)
            found[user_id] = state
        return found

    async def _state(self, user_id: str) -> PresenceRow:
        return (await self._states_by_user([user_id]))[user_id]

    async def states_of(self, user_ids: list[str]) -> list[PresenceRow]:
        states = await self._states_by_user(user_ids)
        return [states[u] for u in user_ids]

    async def get_presence(self, observer: str, user_id: str) -> dict:
        """Spec GET /presence/{userId}/status: only for users sharing a room (as Synapse); offline when disabled."""
        if not self.enabled:
            return {"presence": "offline"}
        if observer != user_id and user_id not in await self._event_store.users_sharing_rooms(observer):
            raise forbidden("You are not allowed to see their presence")
        return self.format(await self._state(user_id))

    def format(self, state: PresenceRow) -> dict:
        """The ``m.presence`` content of a state."""
        return presence_content(state, self.now_ms())

    # -- writing -----------------------------------------------------------------------------
    async def set_presence(self, user_id: str, presence: str, status_msg: str | None) -> None:
        """Spec PUT /presence/{userId}/status (the caller checked it is the user's own)."""
        if presence not in STATES:
            raise invalid_param(f"presence must be one of {', '.join(STATES)}")
        if not self.enabled:
            return
        state = await self._state(user_id)
        await self._change(state, state=presence, status_msg=status_msg, **self._activity(presence))

    async def user_syncing(self, user_id: str, set_presence: str) -> None:
        """/sync ``set_presence``: online or unavailable set the state (keeping the message); offline changes nothing."""
        if not self.enabled or not self._writer or set_presence == "offline":
            return
        self._last_sync[user_id] = self.now_ms()
        state = await self._state(user_id)
        # Awaited: written before the sync reads the streams, so the answer it may keep for the next identical
        # initial sync is not made stale by this write a moment later (measured: not awaiting it saved one
        # COMMIT on a first sync but cost the next two their kept answer).
        await self._change(state, state=set_presence, **self._activity(set_presence))

    def on_room_events(self, events) -> None:
        """Room event listener: sending an event is activity (Synapse bumps the sender's presence)."""
        if not self.enabled:
            return
        for sender in {e.sender for e in events if not e.outlier and self._is_local(e.sender)}:
            _spawn(self._bump_active(sender), "presence bump")

    def on_joins(self, events) -> None:
        """Room event listener (after the join PDUs are queued to other servers): a room's new members and
        its servers hear of each other's presence over federation."""
        if self.enabled:
            self._federation.on_joins(events, self.states_of)

    async def _bump_active(self, user_id: str) -> None:
        state = await self._state(user_id)
        if state.state != "offline":
            await self._change(state, state="online", **self._activity("online"))

    def _activity(self, presence: str) -> dict:
        """What an explicit change to ``presence`` also sets: being online is activity now."""
        if presence != "online":
            return {}
        return {"last_active_ts": self.now_ms(), "currently_active": True}

    async def _change(self, old: PresenceRow, **fields) -> None:
        """Apply fields; persist, stream and wake observers if the change is one they should see."""
        new = dataclasses.replace(old, **fields)
        if new.state != "online":
            new.currently_active = False
        self._offline.pop(old.user_id)
        self._states[old.user_id] = new
        self._ensure_timer()
        if not _should_notify(old, new):
            return
        self._changes += 1
        await self._persist(new)
        self._push(new)

    def _push(self, row: PresenceRow) -> None:
        self._last_pushed[row.user_id] = self.now_ms()
        self._federation.on_presence(row)
        self._appservices.on_presence(row)

    async def _persist(self, row: PresenceRow) -> None:
        (position,) = self.stream.allocate()
        try:
            await self._store.put(row, position)
        finally:
            self.stream.done([position])
        self.stream.when_visible(position, lambda: _spawn(self._wake(row.user_id), "presence wake-up"))

    async def receive_remote(self, rows: list[PresenceRow]) -> None:
        """States of remote users from their server's ``m.presence`` EDU (the caller checked the origin)."""
        if not self.enabled:
            return
        now = self.now_ms()
        for row in rows:
            if row.state == "offline":
                self._remote_updated.pop(row.user_id, None)
            else:
                self._remote_updated[row.user_id] = now
            old = (await self._store.get([row.user_id])).get(row.user_id)
            if old is None or _should_notify(old, row):
                await self._persist(row)
        self._ensure_timer()

    async def _wake(self, user_id: str) -> None:
        rooms = [r for r, (m, _, _) in (await self._event_store.rooms_for_user(user_id)).items() if m == "join"]
        self._notifier.notify(users=[user_id], rooms=rooms)

    # -- timeouts ----------------------------------------------------------------------------
    def _ensure_timer(self) -> None:
        if self._timer is None or not self._timer.active():
            self._timer = self._clock.callLater(TIMER_INTERVAL_S, self._tick)

    def _tick(self) -> None:
        _spawn(self._apply_timeouts(), "presence timeouts")

    async def _apply_timeouts(self) -> None:
        """Run while any user is not offline; the first run also takes over those a previous run left online."""
        now = self.now_ms()
        if not self._restored:
            self._restored = True
            for row in await self._store.not_offline():
                if self._is_local(row.user_id):
                    self._states.setdefault(row.user_id, row)
                else:
                    self._remote_updated.setdefault(row.user_id, now)
        for user_id, state in list(self._states.items()):
            if state.state == "offline":
                del self._states[user_id]
                self._offline.put(user_id, state)
                self._last_sync.pop(user_id, None)
                self._last_pushed.pop(user_id, None)
                continue
            self._last_sync.setdefault(user_id, now)
            fields = _timed_out(state, now, self._last_sync[user_id])
            if fields:
                await self._change(self._states[user_id], **fields)
            elif now - self._last_pushed.setdefault(user_id, now) > FEDERATION_PING_INTERVAL_MS:
                self._push(state)
        for user_id, updated in list(self._remote_updated.items()):
            if now - updated > FEDERATION_TIMEOUT_MS:
                del self._remote_updated[user_id]
                old = (await self._store.get([user_id])).get(user_id)
                if old is not None and old.state != "offline":
                    await self._persist(dataclasses.replace(old, state="offline", currently_active=False))
        if self._states or self._remote_updated:
            self._ensure_timer()

    # -- sync ------------------------------------------------------------------------------------
    def volatile_marker(self, requester) -> int:
        """Changes with every state change made in memory, before its write moves the stream: an initial sync's
        answer kept by the sync service (which shows the states in memory) is stale from then on."""
        return self._changes

    async def contribute(self, ctx, response) -> None:
        """Spec /sync ``presence``: users sharing a room with the syncing user, and the user.

        An initial sync has everyone not offline; an incremental one the changes since the token, and
        the members of rooms joined since then and the users who joined the user's rooms, offline or not
        (as Synapse).
        """
        if not self.enabled:
            return
        since, to = ctx.since_of(self.name), ctx.to[self.name]
        if ctx.peek_room is not None:  # the old /events?room_id= stream: its members' changes only (as Synapse)
            rows = await self._store.changed_between(since or 0, to) if (since or 0) < to else []
            if rows:
                members = set(await self._event_store.joined_members(ctx.peek_room))
                rows = [r for r in rows if r.user_id in members]
        elif since is None:
            interested = await self._event_store.users_sharing_rooms(ctx.user_id) | {ctx.user_id}
            rows = [r for r in (await self._states_by_user(interested)).values() if r.state != "offline"]
        else:
            rows = await self._store.changed_between(since, to) if since < to else []
            if rows:
                interested = await self._event_store.users_sharing_rooms(ctx.user_id) | {ctx.user_id}
                rows = [r for r in rows if r.user_id in interested]
            newcomers = set()
            for room_id in ctx.newly_joined:
                newcomers.update(await self._event_store.joined_members(room_id))
            await ctx.rooms_built()
            for room in response["rooms"]["join"].values():   # and who joined the user's rooms
                newcomers.update(e["state_key"] for e in room["timeline"]["events"] if _is_new_join(e))
            newcomers -= {r.user_id for r in rows}
            rows += list((await self._states_by_user(sorted(newcomers))).values())   # offline ones too, as Synapse
        events = []
        for row in sorted(rows, key=lambda r: r.user_id):
            event = {"type": "m.presence", "sender": row.user_id,
                     "content": self.format(self._states.get(row.user_id, row))}
            if ctx.filter.presence.allows(event):
                events.append(event)
        limit = ctx.filter.presence.limit
        response["presence"]["events"] = events if limit is None else events[:limit]


def _is_new_join(event: dict) -> bool:
    """A client event that makes its target a member (not a profile change of one)."""
    return event.get("type") == "m.room.member" and "state_key" in event \
        and event.get("content", {}).get("membership") == "join" \
        and event.get("unsigned", {}).get("prev_content", {}).get("membership") != "join"


def _spawn(coro, what: str) -> None:
    d = defer.ensureDeferred(coro)
    d.addErrback(lambda f: logger.error("%s failed: %s", what, f.getTraceback()))


def _timed_out(state: PresenceRow, now: int, last_sync: int) -> dict:
    """Synapse's presence timeouts: offline without syncs, idle without activity, no longer currently active."""
    if now - max(last_sync, state.last_active_ts) > SYNC_ONLINE_TIMEOUT_MS:
        return {"state": "offline"}
    if state.state == "online" and now - state.last_active_ts > IDLE_TIMEOUT_MS:
        return {"state": "unavailable"}
    if state.currently_active and now - state.last_active_ts > ACTIVE_GRANULARITY_MS:
        return {"currently_active": False}
    return {}


def _should_notify(old: PresenceRow, new: PresenceRow) -> bool:
    """Whether observers should hear of a change (Synapse's rule: last_active alone only when not active)."""
    if (old.state, old.status_msg, old.currently_active) != (new.state, new.status_msg, new.currently_active):
        return True
    return new.last_active_ts - old.last_active_ts > ACTIVE_GRANULARITY_MS and not new.currently_active

"""Push rules, push actions and notification counts.

Spec v1.19 client-server "Push Notifications": each user's rules (the
/pushrules API, echoed as the ``m.push_rules`` account data), evaluated for
every local member but the sender of each new room event. Notifying results
are push actions, staged in memory and written in batches; /sync's
``unread_notifications`` counts those after the user's read receipt (in the
same response as the event), and GET /notifications lists them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from twisted.internet import defer

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.events.auth_rules import get_power_level
from homeserver.events.push_rules import (KINDS, CompiledRule, InvalidRule, PushContext, check_ruleset_size,
                                          client_rule, client_ruleset, compile_ruleset, evaluate_group, find_rule, highlights,
                                          is_default_rule_id, merge_ruleset, notifies, validate_actions,
                                          validate_rule_body)
from homeserver.events.threads import MAIN_THREAD, thread_walk
from homeserver.lru import LruCache
from homeserver.shared_reads import SharedReads
from homeserver.services.background import ListenerWork
from homeserver.services.sync import together
from homeserver.storage.events import StoredEvent
from homeserver.storage.push import EventPushActions, PushAction, PushStore
from homeserver.services.room_events.heads import RoomHeads

logger = logging.getLogger(__name__)

RULESET_CACHE_SIZE = 50_000  # users (one who never changed a rule costs little)
MAX_NOTIFICATIONS_LIMIT = 500
FLUSH_DELAY_S = 0.05
COUNT_MEMO_SIZE = 100_000

ReadPositions = Callable[[list[str], str], Awaitable[dict]]  # (rooms, user) -> room -> {thread or None: position}


class StagedActions:
    """Push actions computed but not yet in the database.

    They are written in batches ``FLUSH_DELAY_S`` after the first is staged, so that the rows of a busy
    room's events share a transaction (each row lands at a random place of the per-user index, which
    is what writing them costs). Meanwhile ``read`` returns a database result together with the staged
    rows, every action being in exactly one of the two.
    """

    def __init__(self, store: PushStore, clock, written_upto: int, on_stored: Callable[[int], None] | None = None):
        self._store = store
        self._clock = clock
        self._rows: list[EventPushActions] = []
        self._timer = None
        self._writing = False
        self._writes = 0
        self.max_written = written_upto  # no row above it is in the database (the stream's end at start)
        self._waiters: list[defer.Deferred] = []
        # Every event up to ``covered`` has its actions here (staged or written), up to ``stored_through``
        # in the database: what a pusher worker may read (``on_stored`` tells it).
        self.covered = self.stored_through = self._covered_at_write = written_upto
        self._on_stored = on_stored

    def add(self, events: list[EventPushActions], covered: int | None = None) -> None:
        self._rows += events
        if covered is not None:
            self.covered = max(self.covered, covered)
        self._schedule()
        if not self._rows and not self._writing:
            self._stored(self.covered)

    def _stored(self, position: int) -> None:
        if position > self.stored_through:
            self.stored_through = position
            if self._on_stored is not None:
                self._on_stored(position)

    def _schedule(self) -> None:
        if self._rows and self._timer is None and not self._writing:
            self._timer = self._clock.callLater(FLUSH_DELAY_S, self._write)

    def _write(self) -> None:
        self._timer = None
        self._writing = True
        self._covered_at_write = self.covered
        batch = list(self._rows)
        d = defer.ensureDeferred(self._store.add_actions(batch))
        d.addErrback(lambda f: logger.error("Storing the push actions of %d events failed; they are lost: %s",
                                            len(batch), f.getTraceback()))
        d.addBoth(lambda _: self._written(len(batch)))

    def _written(self, count: int) -> None:
        self.max_written = max([self.max_written] + [a.stream_ordering for a in self._rows[:count]])
        del self._rows[:count]
        self._writes += 1
        self._writing = False
        self._stored(self.covered if not self._rows else self._covered_at_write)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._schedule()

    async def _write_ended(self) -> None:
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append(waiter)
        await waiter

    async def flush(self) -> None:
        """Write every staged row now (at shutdown)."""
        while self._rows or self._writing:
            if not self._writing:
                if self._timer is not None:
                    self._timer.cancel()
                self._write()
            await self._write_ended()

    async def read(self, query: Callable[[], Awaitable], user_id: str) -> tuple:
        """``(await query(), the user's staged actions)``, retrying the query if a write overlapped it."""
        while True:
            if self._writing:
                await self._write_ended()
                continue
            writes = self._writes
            result = await query()
            if writes == self._writes and not self._writing:
                return result, [a for ev in self._rows if (a := ev.of(user_id)) is not None]


@dataclass
class _RoomCount:
    """One room's count under way: what comes after ``start`` is added to ``counts`` (per thread).

    ``start`` is the read position, or where a remembered count computed with the same receipts
    stopped; a thread whose own receipt is later counts from there instead.
    """

    key: tuple
    receipts: dict
    start: int
    counts: dict[str, tuple[int, int]]

    def threshold(self, thread_id: str) -> int:
        own = self.receipts.get(thread_id)
        return own if own is not None and own > self.start else self.start

    def add(self, thread_id: str, counts: tuple[int, int]) -> None:
        old = self.counts.get(thread_id, (0, 0))
        self.counts[thread_id] = (old[0] + counts[0], old[1] + counts[1])


class PushService:
    """The push rules API, the room event listener computing push actions, and the sync source of counts.

    As a sync source ("notifications") its position is the events stream's: counts are a function of
    events and receipts, and the rooms whose counts change are in the response for those reasons.
    """

    name = "notifications"
    token_key = "n"  # in sync tokens (services/sync.py)
    sync_phase = 2  # sync: counts for every joined room the other sources add; the account data they gave

    def __init__(self, *, store: PushStore, room_heads: RoomHeads, event_store, account_data, serializer,
                 read_positions: ReadPositions, server_name: str, clock, memoize: bool = True,
                 on_stored: Callable[[int], None] | None = None):
        """``memoize`` False (a worker): rules and counts change in another process, so neither the rulesets
        nor the last counts are kept. ``on_stored(position)``: every event up to it has its push actions
        in the database (main tells a pusher worker)."""
        self._store = store
        self._heads = room_heads
        self._event_store = event_store
        self._account_data = account_data
        self._serializer = serializer
        self._read_positions = read_positions
        self._server_name = server_name
        self._server_suffix = ":" + server_name
        # user -> (own rules, changes to defaults, compiled rules): the merged ruleset (11 KB a user, 110 MB for
        # a room of 10,000) is built again when asked for; the compiled rules of users with the same rules are
        # one tuple, compiled once (0.2 ms a user, 2 s at a big room's first message after a start).
        self._rulesets: LruCache[str, tuple[dict, dict, tuple[CompiledRule, ...]]] = LruCache(
            RULESET_CACHE_SIZE if memoize else 0)
        self._compiled: LruCache[str, tuple[CompiledRule, ...]] = LruCache(RULESET_CACHE_SIZE if memoize else 0)
        self._locks: dict[str, defer.DeferredLock] = {}
        # The first messages to a big room after a start each want every member's rules: read once.
        self._rule_reads: SharedReads[str, tuple[dict, dict, tuple[CompiledRule, ...]]] = SharedReads(
            self._read_rules, self._keep_rules)
        self.work = ListenerWork("Computing push actions")
        self._staged = StagedActions(store, clock, room_heads.stream.current(), on_stored)
        self._computing: dict[object, int] = {}  # each batch under way -> its lowest stream position
        self._seen = room_heads.stream.current()  # the highest event position the listener was given
        self._count_memo: LruCache[tuple[str, str], tuple[tuple, int, dict]] = LruCache(
            COUNT_MEMO_SIZE if memoize else 0)

    # -- rules -------------------------------------------------------------------------
    async def ruleset(self, user_id: str) -> dict[str, list[dict]]:
        """The user's merged rules (defaults included), in evaluation order."""
        own, defaults, _ = await self._rules(user_id)
        return merge_ruleset(user_id, own, defaults)

    async def _rules(self, user_id: str) -> tuple[dict, dict, tuple[CompiledRule, ...]]:
        """The user's own rules, changes to default rules and compiled rules (the same tuple for users with
        the same rules), cached until the user changes a rule."""
        cached = self._rulesets.get(user_id)
        return cached if cached is not None else (await self._rules_of([user_id]))[user_id]

    async def _rules_of(self, user_ids: list[str]) -> dict[str, tuple[dict, dict, tuple[CompiledRule, ...]]]:
        """:meth:`_rules` of users not in the cache, read together; users another read is reading now are
        waited for, not read again."""
        found = {u: cached for u in user_ids if (cached := self._rulesets.get(u)) is not None}
        if len(found) < len(user_ids):
            found.update(await self._rule_reads.read([u for u in user_ids if u not in found]))
        return found

    async def _read_rules(self, user_ids: list[str]) -> dict[str, tuple[dict, dict, tuple[CompiledRule, ...]]]:
        found = {}
        for user_id, (own, defaults) in (await self._store.get_rules_of(user_ids)).items():
            # Compiled rules depend on the user's own rules and changes only: the defaults' conditions on the
            # user's ID are templated (``compile_rule``).
            key = json.dumps([own, sorted(defaults.items())], sort_keys=True)
            compiled = self._compiled.get(key)
            if compiled is None:
                compiled = compile_ruleset(merge_ruleset(user_id, own, defaults), user_id)
                self._compiled.put(key, compiled)
            found[user_id] = (own, defaults, compiled)
        return found

    def _keep_rules(self, rulesets: dict[str, tuple[dict, dict, tuple[CompiledRule, ...]]]) -> None:
        for user_id, ruleset in rulesets.items():
            self._rulesets.put(user_id, ruleset)

    async def client_rules(self, user_id: str) -> dict:
        """Spec GET /pushrules/: the ``global`` ruleset."""
        return {"global": client_ruleset(await self.ruleset(user_id))}

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict:
        return client_rule(kind, await self._existing(user_id, kind, rule_id))

    async def _existing(self, user_id: str, kind: str, rule_id: str) -> dict:
        if kind not in KINDS:
            raise invalid_param(f"Unknown push rule kind {kind!r}")
        rule = find_rule(await self.ruleset(user_id), kind, rule_id)
        if rule is None:
            raise not_found("The push rule was not found.")
        return rule

    async def put_rule(self, user_id: str, kind: str, rule_id: str, body: dict, *,
                       before: str | None, after: str | None) -> None:
        """Spec PUT /pushrules/global/{kind}/{ruleId}: create or replace a user rule, optionally placed."""
        if kind not in KINDS:
            raise invalid_param(f"Unknown push rule kind {kind!r}")
        if not rule_id:
            raise invalid_param("A rule id must not be empty")
        if is_default_rule_id(rule_id):
            raise invalid_param("Rule ids starting with '.' are reserved for server-default rules")
        if "/" in rule_id or "\\" in rule_id:
            raise invalid_param("Rule ids may not contain slashes")
        try:
            stored = validate_rule_body(kind, body)
        except InvalidRule as e:
            raise _rule_error(e)
        async with self._user_lock(user_id):
            own, _ = await self._store.get_rules(user_id)
            rules = own.get(kind, [])
            existing = next((r for r in rules if r["rule_id"] == rule_id), None)
            new = dict(stored, rule_id=rule_id, enabled=existing["enabled"] if existing else True)
            if existing is not None and before is None and after is None:
                rules = [new if r["rule_id"] == rule_id else r for r in rules]
            else:
                rules = [r for r in rules if r["rule_id"] != rule_id]
                rules.insert(_insert_index(rules, before, after), new)
            try:
                check_ruleset_size({**own, kind: rules})
            except InvalidRule as e:
                raise _rule_error(e)
            await self._store.replace_kind(user_id, kind, rules)
            await self._rules_changed(user_id)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        """Spec DELETE /pushrules/global/{kind}/{ruleId}; server-default rules cannot be deleted (404, as Synapse)."""
        if kind not in KINDS:
            raise invalid_param(f"Unknown push rule kind {kind!r}")
        async with self._user_lock(user_id):
            own, _ = await self._store.get_rules(user_id)
            rules = own.get(kind, [])
            if not any(r["rule_id"] == rule_id for r in rules):
                raise not_found("The push rule was not found.")
            await self._store.replace_kind(user_id, kind, [r for r in rules if r["rule_id"] != rule_id])
            await self._rules_changed(user_id)

    async def set_attribute(self, user_id: str, kind: str, rule_id: str, attr: str, value) -> None:
        """Spec PUT .../enabled and .../actions, for user and server-default rules alike."""
        if attr == "enabled":
            if not isinstance(value, bool):
                raise MatrixError(400, "M_BAD_JSON", "'enabled' must be a boolean")
        else:
            try:
                value = validate_actions(value)
            except InvalidRule as e:
                raise _rule_error(e)
        async with self._user_lock(user_id):
            await self._existing(user_id, kind, rule_id)
            if is_default_rule_id(rule_id):
                await self._store.change_default(user_id, kind, rule_id, **{attr: value})
            else:
                own, _ = await self._store.get_rules(user_id)
                rules = [dict(r, **{attr: value}) if r["rule_id"] == rule_id else r for r in own.get(kind, [])]
                await self._store.replace_kind(user_id, kind, rules)
            await self._rules_changed(user_id)

    async def get_attribute(self, user_id: str, kind: str, rule_id: str, attr: str) -> dict:
        return {attr: (await self._existing(user_id, kind, rule_id))[attr]}

    async def _rules_changed(self, user_id: str) -> None:
        """Spec "Push Rules: Events": the new rules reach the user's clients as ``m.push_rules`` account data."""
        self._rule_reads.invalidate()
        self._rulesets.pop(user_id, None)
        await self._account_data.put(user_id, None, "m.push_rules", await self.client_rules(user_id))

    def _user_lock(self, user_id: str) -> defer.DeferredLock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = defer.DeferredLock()
        return lock

    # -- push actions ----------------------------------------------------------------------
    def on_room_events(self, events: list[StoredEvent]) -> None:
        """Room event listener: compute push actions off the write path; syncs up to them wait for them."""
        events = [e for e in events if not e.outlier]
        if events:
            token = object()
            self._computing[token] = min(e.stream_ordering for e in events)
            self._seen = max(self._seen, *(e.stream_ordering for e in events))
            self.work.start(self._store_push_actions(events, token), max(e.stream_ordering for e in events))

    async def _store_push_actions(self, events: list[StoredEvent], token: object) -> None:
        actions: list[EventPushActions] = []
        try:
            for ev in events:
                if (computed := await self._actions_for_event(ev)) is not None:
                    actions.append(computed)
        except Exception:
            actions = []  # logged by the ListenerWork; these events' actions are lost
            raise
        finally:
            del self._computing[token]
            self._staged.add(actions, min(self._computing.values()) - 1 if self._computing else self._seen)

    @property
    def stored_through(self) -> int:
        """Every event up to this position has its push actions in the database."""
        return self._staged.stored_through

    def replicated_stored(self, position: int) -> None:
        """A worker's: main stored every event's push actions up to ``position``."""
        self._staged.max_written = max(self._staged.max_written, position)

    async def flush(self) -> None:
        """Finish computing and write every push action (at shutdown)."""
        await self.work.wait()
        await self._staged.flush()

    def _is_local(self, user_id: str | None) -> bool:
        return bool(user_id) and user_id.endswith(self._server_suffix)

    async def _actions_for_event(self, ev: StoredEvent) -> EventPushActions | None:
        """Spec "Server behaviour": evaluate the rules of each local member (and a local invitee) but the sender."""
        members = await self._heads.members(ev.room_id)  # from memory while the room's state stays
        joined = members.joined_count
        names = members.joined.get(self._server_name, {})  # the local members' display names
        recipients = set(names)
        if ev.type == "m.room.member" and ev.content.get("membership") == "invite" and self._is_local(ev.state_key):
            recipients.add(ev.state_key)
            name = ev.content.get("displayname")
            names = {**names, ev.state_key: name if isinstance(name, str) else None}
        recipients.discard(ev.sender)
        version = await self._heads.room_version(ev.room_id)
        if not recipients or version is None:
            return None
        state = await self._heads.current_state(ev.room_id, {("m.room.create", ""), ("m.room.power_levels", "")})
        create, power = state.get(("m.room.create", "")), state.get(("m.room.power_levels", ""))
        sender_level = get_power_level(version, create.pdu if create else None, power.pdu if power else None,
                                       ev.sender)
        thread_id = await self._thread_of(ev)
        event = dict(ev.pdu, room_id=ev.room_id, event_id=ev.event_id)
        power_content = power.content if power is not None else None

        def context(user_id: str) -> PushContext:
            return PushContext(user_id, names.get(user_id), joined, sender_level, power_content)

        ordered = sorted(recipients)
        rulesets = await self._rules_of(ordered)
        groups: dict[tuple[CompiledRule, ...], list[str]] = {}  # members with the same rules evaluate together
        for user_id in ordered:
            groups.setdefault(rulesets[user_id][2], []).append(user_id)
        room_ctx = PushContext("", None, joined, sender_level, power_content)
        shared: dict = {}
        results = {}
        for rules, user_ids in groups.items():
            results.update(evaluate_group(rules, event, user_ids, room_ctx, context, shared))
        ts = ev.pdu.get("origin_server_ts", 0)
        notifying: dict[int, tuple[bool, list] | None] = {}  # per distinct actions list: (highlight, actions)
        user_ids, outcomes = [], []
        for user_id in ordered:
            actions = results[user_id][1]
            key = id(actions)
            if key not in notifying:
                notifying[key] = (highlights(actions), actions) if notifies(actions) else None
            if notifying[key] is not None:
                user_ids.append(user_id)
                outcomes.append(notifying[key])
        if not user_ids:
            return None
        return EventPushActions(ev.stream_ordering, ev.room_id, ev.event_id, thread_id, ts, user_ids, outcomes)

    async def _thread_of(self, ev: StoredEvent) -> str:
        """Spec "Marking notifications as read": the thread root found within three relation hops, or "main"."""
        root, _ = await thread_walk(ev, self._heads.get_event)
        return MAIN_THREAD if root is None else root

    # -- counts ------------------------------------------------------------------------------
    async def unread_counts(self, user_id: str, room_ids: list[str], upto: int, memberships: dict | None = None
                            ) -> dict[str, dict[str, tuple[int, int]]]:
        """room -> thread -> (notifications, highlights) after the user's read receipts.

        Spec "Receiving notifications": an unthreaded receipt reads every thread, a threaded one its
        own thread; the later of the two applies. Without an unthreaded receipt, what came before the
        user's membership event is read (as Synapse). A room's last count is remembered with the
        receipts it used: while they stay, only the actions since are counted. ``memberships``: the
        user's ``rooms_for_user``, when the caller has them.
        """
        if memberships is None:
            memberships = await self._event_store.rooms_for_user(user_id)
        read_positions = await self._read_positions(room_ids, user_id)
        rooms: dict[str, _RoomCount] = {}
        for room_id in room_ids:
            receipts = read_positions[room_id]
            floor = receipts[None] if None in receipts else memberships.get(room_id, (None, None, 0))[2]
            key = (floor, sorted(receipts.items(), key=str))
            memo = self._count_memo.get((user_id, room_id))
            if memo is not None and memo[0] == key and memo[1] <= upto:
                rooms[room_id] = _RoomCount(key, receipts, memo[1], dict(memo[2]))
            else:
                rooms[room_id] = _RoomCount(key, receipts, floor, {})

        async def query():
            delta = await self._store.counts_after(user_id, {r: c.start for r, c in rooms.items()}, upto)
            recounted = {}
            for room_id, threads in delta.items():
                for thread_id in threads:
                    threshold = rooms[room_id].threshold(thread_id)
                    if threshold != rooms[room_id].start:
                        recounted[(room_id, thread_id)] = await self._store.thread_counts_after(
                            user_id, room_id, thread_id, threshold, upto)
            return delta, recounted

        (delta, recounted), staged = await self._staged.read(query, user_id)
        for room_id, threads in delta.items():
            for thread_id, counts in threads.items():
                if (room_id, thread_id) in recounted:
                    rooms[room_id].counts[thread_id] = recounted[(room_id, thread_id)]
                else:
                    rooms[room_id].add(thread_id, counts)
        for action in staged:
            room = rooms.get(action.room_id)
            if room is not None and \
                    room.threshold(action.thread_id) < action.stream_ordering <= upto:
                room.add(action.thread_id, (1, int(action.highlight)))
        for room_id, room in rooms.items():
            self._count_memo.put((user_id, room_id), (room.key, upto, dict(room.counts)))
        return {room_id: room.counts for room_id, room in rooms.items()}

    def current(self) -> int:
        return self._heads.stream.current()

    async def contribute(self, ctx, response) -> None:
        """Spec /sync ``unread_notifications`` (and ``unread_thread_notifications``) of each joined room sent.

        An initial sync also always carries the ``m.push_rules`` account data (as Synapse), even for a
        user who never changed a rule.
        """
        rules_event = {"type": "m.push_rules"}
        global_data = response["account_data"]["events"]
        rooms = response["rooms"]["join"]

        async def rules() -> dict | None:
            if ctx.since_of(self.name) is None and ctx.filter.account_data.allows(rules_event) and not any(
                    e["type"] == "m.push_rules" for e in global_data):
                return await self.client_rules(ctx.user_id)
            return None

        async def unread() -> dict:
            if not rooms:
                return {}
            await self.work.wait(ctx.to["events"])
            return await self.unread_counts(ctx.user_id, list(rooms), ctx.to["events"], ctx.memberships)

        content, counts = await together(rules(), unread())  # the ruleset is read alongside the counts
        if content is not None:
            global_data.append(dict(rules_event, content=content))
        by_thread = ctx.filter.timeline.unread_thread_notifications
        for room_id, room in rooms.items():
            threads = counts.get(room_id, {})
            if by_thread:
                room["unread_notifications"] = _counts_json(threads.get(MAIN_THREAD, (0, 0)))
                others = {t: _counts_json(c) for t, c in threads.items() if t != MAIN_THREAD and c[0]}
                if others:
                    room["unread_thread_notifications"] = others
            else:
                room["unread_notifications"] = _counts_json(
                    (sum(c[0] for c in threads.values()), sum(c[1] for c in threads.values())))

    async def actions_after(self, user_id: str, after: int, upto: int, limit: int) -> list[PushAction]:
        """The user's push actions in (after, upto], oldest first, stored or staged (what pushers send).

        The database is not read when nothing above ``after`` was ever written to it (a pusher keeping up).
        """
        async def query():
            if self._staged.max_written <= after:
                return []
            return await self._store.actions_after(user_id, after, upto, limit)

        stored, staged = await self._staged.read(query, user_id)
        staged = [a for a in staged if after < a.stream_ordering <= upto]
        return sorted(stored + staged, key=lambda a: a.stream_ordering)[:limit]

    # -- listing -----------------------------------------------------------------------------
    async def notifications(self, requester, from_token: str | None, limit: int, only: str | None) -> dict:
        """Spec GET /notifications: newest first, ``read`` after the user's receipt for the event's thread."""
        before = None
        if from_token is not None:
            try:
                before = int(from_token)
            except ValueError:
                raise invalid_param("Unrecognised 'from' token")
        limit = max(0, min(limit, MAX_NOTIFICATIONS_LIMIT))
        await self.work.wait()  # events sent before the request are listed
        user_id, only_highlight = requester.user_id, only == "highlight"
        stored, staged = await self._staged.read(
            lambda: self._store.notifications(user_id, before, limit, only_highlight), user_id)
        staged = [a for a in staged if (before is None or a.stream_ordering < before)
                  and (a.highlight or not only_highlight)]
        actions = sorted(stored + staged, key=lambda a: a.stream_ordering, reverse=True)[:limit]
        events = await self._heads.get_events(a.event_id for a in actions)
        shown = [a for a in actions if a.event_id in events]
        serialized = await self._serializer.serialize([events[a.event_id] for a in shown], requester,
                                                      include_room_id=False)
        positions = await self._read_positions(sorted({a.room_id for a in shown}), requester.user_id)
        out = []
        for action, event in zip(shown, serialized):
            read_at = max(positions[action.room_id].get(None, 0), positions[action.room_id].get(action.thread_id, 0))
            out.append({"room_id": action.room_id, "actions": action.actions, "ts": action.ts,
                        "read": action.stream_ordering <= read_at, "event": event})
        result: dict = {"notifications": out}
        if actions and len(actions) == limit:
            result["next_token"] = str(actions[-1].stream_ordering)
        return result


def _rule_error(e: InvalidRule) -> MatrixError:
    """413 for a rule set past its size caps (M_TOO_LARGE), else 400 with the rule's errcode."""
    return MatrixError(413 if e.errcode == "M_TOO_LARGE" else 400, e.errcode, str(e))


def _insert_index(rules: list[dict], before: str | None, after: str | None) -> int:
    """Where a placed rule goes among the user's rules (most important first); ``before`` wins."""
    anchor = before if before is not None else after
    if anchor is None:
        return 0
    if is_default_rule_id(anchor):
        raise invalid_param("A rule cannot be placed relative to a server-default rule")
    for i, rule in enumerate(rules):
        if rule["rule_id"] == anchor:
            return i if before is not None else i + 1
    raise invalid_param(f"before/after rule not found: {anchor}")


def _counts_json(counts: tuple[int, int]) -> dict:
    return {"notification_count": counts[0], "highlight_count": counts[1]}

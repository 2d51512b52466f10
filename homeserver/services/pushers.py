"""Pushers and the notifications they send (spec v1.19 client-server "Push Notifications": "Pushers",
"Server behaviour"; push gateway API POST /_matrix/push/v1/notify).

Guarantees, per pusher:
- every push action computed for its user (:mod:`homeserver.services.push`) after the pusher was set
  is sent once, in stream order, as one notification;
- the room event listener only wakes the pusher loops: a send never waits for a gateway;
- a notification the gateway did not answer (or answered 429/5xx) is resent after a backoff (1 s
  doubling to 5 min); one it refused (other 4xx) is given up;
- the position of the last notification answered is stored (coalesced over the loops): after a
  restart a loop resumes after it;
- a pushkey listed in the gateway's ``rejected`` answer removes that pusher; so does removing the
  device that set it (logout, device deletion, password change with ``logout_devices``);
- a read receipt of the user sends, after the notifications already due, one notification with the
  updated ``counts`` only (push gateway API: ``event_id`` "may be omitted for notifications that only
  contain updated badge counts"), as Synapse does, so that the device can clear its badge.
E-mail pushers (kind ``email``) run their own loop on the same base (:mod:`homeserver.services.email_notifs`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from twisted.internet import defer, task

from federation.push_client import PushGatewayClient, PushGatewayUnreachable
from homeserver.errors import MatrixError
from homeserver.events.push_gateway import (InvalidPusher, badge_notification, notification, tweaks_of,
                                            validate_pusher_body)
from homeserver.services.background import BatchWriter
from homeserver.storage.push import PushAction
from homeserver.storage.pushers import Pusher, PusherStore

logger = logging.getLogger(__name__)

BATCH = 100
BACKOFF_START_S, BACKOFF_MAX_S = 1.0, 300.0
STOP_TIMEOUT_S = 1.0
MAX_IN_FLIGHT = 10  # notifications under way at once, all pushers together: requests keep their share of the reactor


async def _wait(d: defer.Deferred) -> None:
    """Wait for ``d`` without taking its result (nor being cancelled with it)."""
    waiter: defer.Deferred = defer.Deferred()
    d.addBoth(lambda result: (waiter.callback(None) if not waiter.called else None, result)[1])
    await waiter


class PusherLoop:
    """One pusher's loop (``_loop``, of each kind), woken by new events, stopped with its pusher."""

    def __init__(self, owner: "PusherService", pusher: Pusher):
        self.owner = owner
        self.pusher = pusher
        self.position = pusher.position
        self._wake: defer.Deferred | None = None
        self._running: defer.Deferred | None = None
        self.stopping = False
        self.badge_due = False  # a read receipt changed the user's unread count (HTTP pushers)

    def start(self) -> None:
        self._running = defer.ensureDeferred(self._loop())
        self._running.addErrback(lambda f: None if f.check(defer.CancelledError) else logger.error(
            "Pusher %s of %s stopped: %s", self.pusher.app_id, self.pusher.user_id, f.getTraceback()))

    def wake(self) -> None:
        if self._wake is not None and not self._wake.called:
            self._wake.callback(None)

    def stop(self) -> None:
        if self._running is not None:
            self._running.cancel()

    async def finish(self, timeout_s: float) -> None:
        """At shutdown: let the notification in flight be answered (for ``timeout_s`` at most), then stop."""
        self.stopping = True
        self.wake()
        if self._running is not None and not self._running.called:
            try:
                await defer.Deferred.fromCoroutine(_wait(self._running)).addTimeout(timeout_s, self.owner.reactor)
            except defer.TimeoutError:
                pass
        self.stop()

    async def _loop(self) -> None:
        raise NotImplementedError

    async def next_actions(self, upto: int | None = None) -> tuple[int, list[PushAction]]:
        """The user's push actions after the loop's position (at most BATCH), once there are events past it, up
        to ``upto`` (default: the latest event): (the stream position read up to, the actions). Stopping: none."""
        while upto is None and self.owner.target <= self.position and not self.stopping and not self.badge_due:
            self._wake = defer.Deferred()
            await self._wake
        target = self.owner.target if upto is None else upto
        if self.stopping:
            return target, []
        await self.owner.push.work.wait(target)
        return target, await self.owner.push.actions_after(self.pusher.user_id, self.position, target, BATCH)


class _HttpPusherLoop(PusherLoop):
    """Sends one HTTP pusher's notifications to its gateway, one at a time."""

    async def _loop(self) -> None:
        owner = self.owner
        while not self.stopping:
            target, actions = await self.next_actions()
            unread = await owner.unread(self.pusher.user_id, actions[0].stream_ordering) if actions else 0
            for action in actions:
                if self.stopping:
                    return
                if not await self._deliver(action, unread):
                    return
                unread += 1
                self.position = action.stream_ordering
                owner.record_position(self.pusher.key, self.position)
            if len(actions) < BATCH and not self.stopping:
                self.position = max(self.position, target)
                if self.badge_due:
                    self.badge_due = False
                    if not await self._send_badge():
                        return

    async def _send_badge(self) -> bool:
        """The user's unread count after a read receipt, alone; False once the pusher is removed."""
        unread = await self.owner.unread(self.pusher.user_id, self.position)
        return await self._send(self.owner.badge_for(self.pusher, unread))

    async def _deliver(self, action: PushAction, unread: int) -> bool:
        """Send one notification until answered; False once the pusher is removed."""
        body = await self.owner.notification_for(self.pusher, action, unread)
        if body is None:
            return True
        return await self._send(body)

    async def _send(self, body: dict) -> bool:
        delay = BACKOFF_START_S
        while True:
            try:
                status, answer = await self.owner.sending.run(
                    lambda: defer.ensureDeferred(self.owner.client.notify(self.pusher.data["url"], body)))
            except defer.CancelledError:
                raise
            except PushGatewayUnreachable as e:
                status, answer = None, str(e)
            if status is not None and 200 <= status < 300:
                rejected = answer.get("rejected") if isinstance(answer, dict) else None
                if isinstance(rejected, list) and self.pusher.pushkey in rejected:
                    logger.info("Push gateway rejected pushkey of %s (app %s): pusher removed",
                                self.pusher.user_id, self.pusher.app_id)
                    await self.owner.remove(self.pusher.key)
                    return False
                return True
            if status is not None and 400 <= status < 500 and status != 429:
                logger.warning("Push gateway refused a notification for %s (HTTP %d): given up",
                               self.pusher.user_id, status)
                return True
            logger.info("Push to %s failed (%s); retrying in %.0f s", self.pusher.app_id, status or answer, delay)
            await task.deferLater(self.owner.reactor, delay, lambda: None)
            delay = min(delay * 2, BACKOFF_MAX_S)


class PusherService:
    """The /pushers API, the room event listener waking the pusher loops, and the loops."""

    def __init__(self, *, store: PusherStore, push, room_heads, event_store, client: PushGatewayClient, reactor,
                 email=None, sends: bool = True, sends_for: Callable[[str], bool] = lambda user_id: True,
                 replicated: bool = False, on_changed=None):
        """``sends`` False: other processes (``pusher_instances``) run the loops; this one tells them of the
        pushers set or removed through ``on_changed(keys)``. ``sends_for(user_id)``: whether this process runs
        that user's pushers (several pusher workers share the users). ``replicated``: this process is such a
        worker, whose loops move on as main reports the push actions stored (:meth:`push_stored`)."""
        self._sends = sends
        self._sends_for = sends_for
        self._on_changed = on_changed
        self._replicated = replicated
        self._store = store
        self._email = email  # EmailNotifier (services/email_notifs.py) when email.enable_notifs; else no email pushers
        self.positions = BatchWriter(store.set_positions)
        self.push = push
        self.target = 0  # the highest stream position the listener was told of
        self._heads = room_heads
        self._loops: dict[tuple[str, str, str], PusherLoop] = {}
        self._event_store = event_store
        self.client, self.reactor = client, reactor
        self.sending = defer.DeferredSemaphore(MAX_IN_FLIGHT)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start a loop per stored pusher, each catching up from its stored position (on a worker, once main
        said where the push actions are stored up to)."""
        if not self._replicated:
            self.target = self._heads.stream.current()
        for pusher in await self._store.list_pushers():
            if pusher.kind != "email" or self._email is not None:
                self._run(pusher)

    async def stop(self) -> None:
        """At shutdown: the notifications in flight answered (or given up after a second), positions stored."""
        loops = list(self._loops.values())
        self._loops.clear()
        await defer.DeferredList([defer.ensureDeferred(loop.finish(STOP_TIMEOUT_S)) for loop in loops])
        if loops:  # no transaction for nothing (the database may be the thing that is down)
            await self._store.set_positions([(loop.pusher.key, loop.position) for loop in loops])
        await self.client.close()

    def _run(self, pusher: Pusher) -> None:
        if not self._sends:
            if self._on_changed is not None:
                self._on_changed([pusher.key])
            return
        if not self._sends_for(pusher.user_id):
            return  # another pusher worker's user
        old = self._loops.pop(pusher.key, None)
        if old is not None:
            old.stop()
        loop = self._loops[pusher.key] = (self._email.loop(self, pusher) if pusher.kind == "email"
                                          else _HttpPusherLoop(self, pusher))
        if old is not None:  # a pusher set again: where its loop got to may not be stored yet
            loop.position = max(loop.position, old.position)
        loop.start()

    def _forget(self, keys) -> None:
        if not self._sends:
            if keys and self._on_changed is not None:
                self._on_changed(keys)
            return
        for key in keys:
            loop = self._loops.pop(tuple(key), None)
            if loop is not None:
                loop.stop()

    # -- API -----------------------------------------------------------------------------
    async def list(self, user_id: str) -> list[dict]:
        """Spec GET /pushers."""
        out = []
        for p in await self._store.list_pushers(user_id):
            pusher = {"pushkey": p.pushkey, "kind": p.kind, "app_id": p.app_id, "app_display_name": p.app_display_name,
                      "device_display_name": p.device_display_name, "lang": p.lang, "data": p.data}
            if p.profile_tag is not None:
                pusher["profile_tag"] = p.profile_tag
            out.append(pusher)
        return out

    async def set(self, user_id: str, device_id: str | None, body: dict, now_ms: int) -> None:
        """Spec POST /pushers/set: add, replace or (``kind: null``) delete a pusher."""
        try:
            fields = validate_pusher_body(body, email=self._email is not None)
        except InvalidPusher as e:
            raise MatrixError(400, e.errcode, str(e))
        if fields is None:
            key = (body["app_id"], body["pushkey"], user_id)
            await self._store.delete_pusher(key)
            self._forget([key])
            return
        if fields["kind"] == "email":
            await self._email.check_pushkey(user_id, fields["pushkey"])
        pusher = Pusher(user_id=user_id, device_id=device_id, pushkey_ts=now_ms, position=self._heads.stream.current(),
                        **fields)
        await self._add(pusher, append=body.get("append", False))

    async def set_email_pusher(self, user_id: str, address: str, now_ms: int) -> None:
        """Synapse's ``notif_for_new_users``: the e-mail pusher a new account with an address gets."""
        await self._add(Pusher(user_id=user_id, app_id="m.email", pushkey=address, data={}, kind="email", lang="en",
                               pushkey_ts=now_ms, app_display_name="Email Notifications",
                               device_display_name=address, position=self._heads.stream.current()), append=True)

    async def _add(self, pusher: Pusher, *, append: bool) -> None:
        self._forget(await self._store.set_pusher(pusher, append=append))
        stored = await self._store.get_pusher(pusher.key)
        if stored is not None:
            self._run(stored)

    async def remove(self, key: tuple[str, str, str]) -> None:
        await self._store.delete_pusher(key)
        self._forget([key])

    async def on_devices_removed(self, user_id: str, device_ids: list[str]) -> None:
        """Spec "Pushers": a removed device's pushers go with it."""
        if device_ids:
            self._forget(await self._store.delete_device_pushers(user_id, device_ids))

    # -- sending ------------------------------------------------------------------------------
    def on_room_events(self, events) -> None:
        """Room event listener: only wakes the loops, which read push actions themselves."""
        positions = [e.stream_ordering for e in events if not e.outlier]
        if positions:
            self.target = max(self.target, *positions)
            for loop in self._loops.values():
                loop.wake()

    def on_read(self, user_id: str) -> None:
        """A read receipt of ``user_id``: their HTTP pushers send the new unread count (a badge update)."""
        for loop in self._loops.values():
            if loop.pusher.user_id == user_id and isinstance(loop, _HttpPusherLoop):
                loop.badge_due = True
                loop.wake()

    def push_stored(self, position: int) -> None:
        """A pusher worker's: main stored the push actions of every event up to ``position``."""
        if position > self.target:
            self.target = position
            for loop in self._loops.values():
                loop.wake()

    def reload(self, keys) -> None:
        """A pusher worker's: main set or removed these pushers; stop their loops now (nothing is sent for a
        removed one after this message), then read them again."""
        reached = {key: loop.position for key, loop in self._loops.items() if key in keys}
        self._forget(keys)

        async def read() -> None:
            for key in keys:
                stored = await self._store.get_pusher(tuple(key))
                if stored is not None and (stored.kind != "email" or self._email is not None):
                    self._run(dataclasses.replace(stored, position=max(stored.position,
                                                                      reached.get(key, stored.position))))
        d = defer.ensureDeferred(read())
        d.addErrback(lambda f: logger.error("Reading pushers %s again failed: %s", keys, f.getTraceback()))

    def record_position(self, key: tuple[str, str, str], position: int) -> None:
        """Store a loop's position without waiting: the writes of all loops share transactions."""
        d = defer.ensureDeferred(self.positions.write([(key, position)]))
        d.addErrback(lambda f: logger.error("Storing a pusher position failed: %s", f.getTraceback()))

    async def unread(self, user_id: str, upto: int) -> int:
        """Spec push gateway ``counts.unread``: the user's unread notifications in all joined rooms at ``upto``."""
        rooms = [r for r, m in (await self._event_store.rooms_for_user(user_id)).items() if m[0] == "join"]
        counts = await self.push.unread_counts(user_id, rooms, upto)
        return sum(c[0] for threads in counts.values() for c in threads.values())

    @staticmethod
    def badge_for(pusher: Pusher, unread: int) -> dict:
        device = {"app_id": pusher.app_id, "pushkey": pusher.pushkey, "pushkey_ts": pusher.pushkey_ts}
        return badge_notification(pusher_data=pusher.data, device=device, unread=unread)

    async def notification_for(self, pusher: Pusher, action: PushAction, unread: int) -> dict | None:
        """The notification of one push action; None if the event is gone."""
        ev = await self._heads.get_event(action.event_id)
        if ev is None:
            return None
        keys = {("m.room.member", ev.sender), ("m.room.name", ""), ("m.room.canonical_alias", "")}
        state = await self._heads.current_state(ev.room_id, keys)
        member = state.get(("m.room.member", ev.sender))
        display = member.content.get("displayname") if member is not None else None
        # the room's name, else its canonical alias (as Synapse names rooms in pushes)
        name, alias = state.get(("m.room.name", "")), state.get(("m.room.canonical_alias", ""))
        room_name = name.content.get("name") if name is not None else None
        if not room_name and alias is not None:
            room_name = alias.content.get("alias")
        device = {"app_id": pusher.app_id, "pushkey": pusher.pushkey, "pushkey_ts": pusher.pushkey_ts}
        return notification(event=dict(ev.pdu, event_id=ev.event_id, room_id=ev.room_id), user_id=pusher.user_id,
                            pusher_data=pusher.data, device=device, unread=unread,
                            sender_display_name=display if isinstance(display, str) else None,
                            room_name=room_name if isinstance(room_name, str) else None,
                            tweaks=tweaks_of(action.actions))

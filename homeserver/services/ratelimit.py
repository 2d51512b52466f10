"""Rate limits: every ``rc_*`` key of the configuration, enforced where Synapse enforces it.

One object, :class:`RateLimits`, built once by the composition root and given to what needs it; each
limit is a named attribute (no string keys). Two kinds:

* :class:`Ratelimiter`, a token bucket per key (Synapse's ``per_second`` and ``burst_count``): the action
  is refused with 429 ``M_LIMIT_EXCEEDED`` and ``retry_after_ms`` (spec client-server "Rate limiting");
  the HTTP layer adds the ``Retry-After`` header, as Synapse does.
* :class:`FederationRateLimiter`, Synapse's ``rc_federation`` semantics per remote host: requests beyond
  ``sleep_limit`` in a ``window_size`` are delayed by ``sleep_delay``, at most ``concurrent`` run at once
  (the others wait their turn), and a host with more than ``reject_limit`` requests waiting is refused.

Where each key applies (Synapse's choices; ours where Synapse has none, marked *):

=========================  ==================================================================================
``rc_message``             events a user sends (messages, state, redactions), profile changes; with the
                           same figures but buckets of their own, to-device sends* and ``/keys/upload``*
``rc_admin_redaction``     redactions of another user's event (a moderator's), instead of ``rc_message``
``rc_joins.local/remote``  joins per user, by whether this server is already in the room
``rc_joins_per_room``      joins per room, whoever joins
``rc_invites.*``           invites per room, per invitee (``per_user``) and per inviter (``per_issuer``)
``rc_delayed_event_mgmt``  delayed-event listing and actions, per user (per client IP without a token)
``rc_federation``          every authenticated federation request, per origin; the unauthenticated key
                           server (``/_matrix/key/v2/query``) per client IP*
``rc_media_create``        ``/_matrix/media/v1/create``, per user
``remote_media_download``  bytes of remote media fetched (not cached yet) for a client, per client IP: a
                           fetch is refused while the bucket is full; its size is charged once it is over
others                     registration, login, room creation, presence, user directory: at their endpoint
=========================  ==================================================================================

The keys of features Hexagone does not have yet are parsed and reported at start-up (``config.RC_NOT_ENFORCED``).

An exemption (Synapse's appservice ``rate_limited: false``) belongs in :meth:`RateLimits.exempt`.

A client that ignores ``retry_after_ms`` and keeps sending is slowed down by :class:`Tarpit`: its first 429 is
answered at once, each later one (while it was still told to wait) only after its wait, up to
``TARPIT_MAX_DELAY_S``; a client that waits for its answers before sending again (HTTP/1.1) then sends at
about the limit instead of thousands of refused requests a second, each costing the reactor. Held answers are
bounded in time and in number (per client and in all), so the tarpit cannot itself exhaust memory: past the
bound, refusals are answered at once. ``rc_federation`` already delays a remote server's requests.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet import defer, task

from homeserver.errors import limit_exceeded

T = TypeVar("T")
logger = logging.getLogger(__name__)

class Ratelimiter:
    """One bucket per key: ``burst_count`` actions at once, refilled at ``per_second``."""

    def __init__(self, clock, per_second: float, burst_count: int):
        self._clock = clock
        self.per_second = per_second
        self.burst_count = burst_count
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (level, last time)
        self._prune_at = 100_000  # doubles while the buckets in use do: pruning stays amortised O(1)

    @classmethod
    def of(cls, clock, setting) -> "Ratelimiter":
        """From a configuration ``RateLimit`` (per_second, burst_count)."""
        return cls(clock, setting.per_second, setting.burst_count)

    def check(self, key: str, *, cost: float = 1.0, update: bool = True) -> None:
        """Take one action for ``key`` or raise M_LIMIT_EXCEEDED with retry_after_ms.

        ``update=False`` only checks that ``cost`` actions would be allowed, taking none (Synapse's ``update``)."""
        if self.per_second <= 0 and self.burst_count <= 0:
            return
        now = self._clock.seconds()
        level, last = self._buckets.get(key, (0.0, now))
        level = max(0.0, level - (now - last) * self.per_second)
        if level + cost > self.burst_count:
            wait = (level + cost - self.burst_count) / self.per_second if self.per_second > 0 else 60.0
            raise limit_exceeded(int(wait * 1000) + 1)
        if not update:
            return
        self._buckets[key] = (level + cost, now)
        if len(self._buckets) > self._prune_at:
            self._prune(now)

    def charge(self, key: str, cost: float) -> None:
        """Record ``cost`` actions already done for ``key``, even past ``burst_count`` (the bytes of a download
        known once it is over): later :meth:`check` calls are refused until the bucket has drained."""
        if self.per_second <= 0 and self.burst_count <= 0:
            return
        now = self._clock.seconds()
        level, last = self._buckets.get(key, (0.0, now))
        self._buckets[key] = (max(0.0, level - (now - last) * self.per_second) + cost, now)
        if len(self._buckets) > self._prune_at:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget the keys whose actions have all drained (keys chosen by remote users must not grow memory forever)."""
        for key, (level, last) in list(self._buckets.items()):
            if level - (now - last) * self.per_second <= 0:
                del self._buckets[key]
        self._prune_at = max(100_000, 2 * len(self._buckets))


@dataclass
class _Host:
    times: deque = field(default_factory=deque)  # start times (ms) of its requests in the current window
    running: int = 0
    sleeping: int = 0
    waiting: deque = field(default_factory=deque)  # Deferreds of requests waiting for a free slot


class FederationRateLimiter:
    """Synapse's ``rc_federation`` per remote host (window_size, sleep_limit, sleep_delay, reject_limit,
    concurrent); ``run(host, call)`` runs ``call`` under the host's limits: ``settings``, or what
    ``per_host(host, settings)`` gives (``federation_peer_policy``, read at each request so a reload applies)."""

    def __init__(self, clock, settings, per_host: Callable[[str, Any], Any] | None = None):
        self._clock = clock
        self._settings = settings
        self._per_host = per_host
        self._hosts: dict[str, _Host] = {}

    def settings(self, host: str):
        return self._settings if self._per_host is None else self._per_host(host, self._settings)

    async def run(self, host: str, call: Callable[[], Awaitable[T]]) -> T:
        s = self.settings(host)
        state = self._hosts.get(host)
        if state is None:
            if len(self._hosts) > 10_000:
                self._prune()
            state = self._hosts[host] = _Host()
        now = self._clock.seconds() * 1000
        while state.times and now - state.times[0] >= s.window_size:
            state.times.popleft()
        if len(state.waiting) + state.sleeping > s.reject_limit:
            logger.warning("rc_federation: refusing a request from %s (%d waiting)", host,
                           len(state.waiting) + state.sleeping)
            raise limit_exceeded(max(1, s.window_size // max(1, s.sleep_limit)))
        state.times.append(now)
        if len(state.times) > s.sleep_limit:
            state.sleeping += 1
            try:
                await task.deferLater(self._clock, s.sleep_delay / 1000)
            finally:
                state.sleeping -= 1
        if state.running >= max(1, s.concurrent):
            turn: defer.Deferred = defer.Deferred()
            state.waiting.append(turn)
            await turn  # the slot is handed over by the request that frees it
        else:
            state.running += 1
        try:
            return await call()
        finally:
            if state.waiting:
                state.waiting.popleft().callback(None)
            else:
                state.running -= 1

    def _prune(self) -> None:
        now = self._clock.seconds() * 1000
        for host, state in list(self._hosts.items()):
            if not (state.running or state.sleeping or state.waiting) and \
                    (not state.times or now - state.times[-1] >= self.settings(host).window_size):
                del self._hosts[host]


TARPIT_MAX_DELAY_S = 1.0
TARPIT_MAX_HELD = 1000  # 429 answers held at once, all clients together
TARPIT_MAX_HELD_PER_CLIENT = 16


class Tarpit:
    """Delays the 429 answers of a client that keeps sending while told to wait (see the module docstring)."""

    def __init__(self, clock):
        self._clock = clock
        self._told: dict[str, float] = {}  # client -> when the wait of its last 429 ends
        self._held: dict[str, int] = {}  # client -> answers held now
        self.held = 0
        self._prune_at = 100_000

    async def refused(self, client: str, retry_after_ms: int) -> None:
        """``client`` is refused with ``retry_after_ms``: returns at once, or after the wait if it hammers."""
        now = self._clock.seconds()
        told_until = self._told.get(client, 0.0)
        self._told[client] = max(told_until, now + retry_after_ms / 1000)
        if len(self._told) > self._prune_at:
            self._prune(now)
        held = self._held.get(client, 0)
        if told_until <= now or self.held >= TARPIT_MAX_HELD or held >= TARPIT_MAX_HELD_PER_CLIENT:
            return
        self._held[client] = held + 1
        self.held += 1
        try:
            await task.deferLater(self._clock, min(retry_after_ms / 1000, TARPIT_MAX_DELAY_S))
        finally:
            self.held -= 1
            if self._held[client] == 1:
                del self._held[client]
            else:
                self._held[client] -= 1

    def _prune(self, now: float) -> None:
        """Forget the clients whose wait is over (client keys come from the network: memory stays bounded)."""
        for client, until in list(self._told.items()):
            if until <= now:
                del self._told[client]
        self._prune_at = max(100_000, 2 * len(self._told))


class RatelimitOverrides:
    """Per-user overrides of ``rc_message`` (Synapse's admin API ``override_ratelimit``): (messages per second,
    burst count); 0 per second means no limit. Loaded at start, changed by the admin API."""

    def __init__(self, clock, overrides: dict[str, tuple[int, int]]):
        self._clock = clock
        self._overrides = dict(overrides)
        self._limiters: dict[str, Ratelimiter] = {}

    def get(self, user_id: str) -> tuple[int, int] | None:
        return self._overrides.get(user_id)

    def set(self, user_id: str, override: tuple[int, int] | None) -> None:
        self._limiters.pop(user_id, None)
        if override is None:
            self._overrides.pop(user_id, None)
        else:
            self._overrides[user_id] = override

    def check(self, user_id: str) -> bool:
        """False if the user has no override; else apply it (429 when spent) and True."""
        override = self._overrides.get(user_id)
        if override is None:
            return False
        if override[0] > 0:
            limiter = self._limiters.get(user_id)
            if limiter is None:
                limiter = self._limiters[user_id] = Ratelimiter(self._clock, override[0], max(1, override[1]))
            limiter.check(user_id)
        return True


class RateLimits:
    """Every enforced limit of one server, built from its configuration (see the module docstring)."""

    def __init__(self, config: Any, clock, federation_per_host: Callable[[str, Any], Any] | None = None,
                 overrides: RatelimitOverrides | None = None):
        bucket = lambda key: Ratelimiter.of(clock, getattr(config, key))  # noqa: E731
        self._unlimited_appservices = [r for r in config.app_services if not r.rate_limited]
        self.message = bucket("rc_message")
        self.admin_redaction = bucket("rc_admin_redaction")
        self.registration = bucket("rc_registration")
        self.registration_token_validity = bucket("rc_registration_token_validity")
        self.threepid_validation = bucket("rc_3pid_validation")
        self.login_address = bucket("rc_login_address")
        self.login_account = bucket("rc_login_account")
        self.login_failed = bucket("rc_login_failed_attempts")
        self.joins_local = bucket("rc_joins_local")
        self.joins_remote = bucket("rc_joins_remote")
        self.joins_per_room = bucket("rc_joins_per_room")
        self.invites_per_room = bucket("rc_invites_per_room")
        self.invites_per_user = bucket("rc_invites_per_user")
        self.invites_per_issuer = bucket("rc_invites_per_issuer")
        self.to_device = bucket("rc_message")
        self.key_upload = bucket("rc_message")
        self.room_creation = bucket("rc_room_creation")
        self.third_party_invite = bucket("rc_third_party_invite")
        self.presence = bucket("rc_presence_per_user")
        self.user_directory = bucket("rc_user_directory")
        self.reports = bucket("rc_reports")
        self.delayed_event_mgmt = bucket("rc_delayed_event_mgmt")
        self.media_create = bucket("rc_media_create")
        self.remote_media_download = Ratelimiter(clock, config.remote_media_download_per_second,
                                                 config.remote_media_download_burst_count)
        self.federation = FederationRateLimiter(clock, config.rc_federation, federation_per_host)
        self.key_server = FederationRateLimiter(clock, config.rc_federation)  # by client IP
        self.tarpit = Tarpit(clock)
        self.overrides = overrides if overrides is not None else RatelimitOverrides(clock, {})

    def exempt(self, user_id: str) -> bool:
        """Users no limit applies to: those of an appservice registered with ``rate_limited: false``
        (its sender and its user namespace)."""
        return any(r.is_user_in_namespace(user_id) for r in self._unlimited_appservices)

    def check_user(self, limiter: "Ratelimiter", user_id: str) -> None:
        """A per-account limit, unless the account is exempt."""
        if not self.exempt(user_id):
            limiter.check(user_id)

    def event(self, user_id: str, *, admin_redaction: bool = False) -> None:
        """An event a user sends (Synapse's request ratelimiter): ``rc_admin_redaction`` for a redaction of
        another user's event, else ``rc_message``."""
        if not self.exempt(user_id) and not self.overrides.check(user_id):
            (self.admin_redaction if admin_redaction else self.message).check(user_id)

    def join(self, user_id: str, room_id: str, *, remote: bool) -> None:
        """A join: ``rc_joins_per_room`` for the room, ``rc_joins.remote`` or ``.local`` for the user."""
        if self.exempt(user_id):
            return
        self.joins_per_room.check(room_id)
        (self.joins_remote if remote else self.joins_local).check(user_id)

    def invite(self, inviter: str, room_id: str, invitee: str) -> None:
        """An invite: ``rc_invites.per_room``, ``.per_user`` (the invitee) and ``.per_issuer`` (the inviter)."""
        if self.exempt(inviter):
            return
        self.invites_per_room.check(room_id)
        self.invites_per_user.check(invitee)
        self.invites_per_issuer.check(inviter)

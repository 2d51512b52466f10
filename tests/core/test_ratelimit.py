"""The rate limiters on a fake clock: token buckets, and Synapse's rc_federation semantics per host."""

from __future__ import annotations

import pytest
from twisted.internet import defer, task

from homeserver.config import FederationRateLimit
from homeserver.errors import MatrixError
from homeserver.services.ratelimit import (TARPIT_MAX_DELAY_S, TARPIT_MAX_HELD, TARPIT_MAX_HELD_PER_CLIENT,
                                           FederationRateLimiter, Ratelimiter, Tarpit)


def test_bucket_refills_and_keys_are_independent():
    clock = task.Clock()
    limiter = Ratelimiter(clock, per_second=0.5, burst_count=2)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(MatrixError) as refused:
        limiter.check("a")
    assert (refused.value.status, refused.value.errcode) == (429, "M_LIMIT_EXCEEDED")
    assert refused.value.extra["retry_after_ms"] == 2001  # one action back after 2 s
    limiter.check("b")
    clock.advance(2)
    limiter.check("a")


def test_charge_past_the_burst_refuses_until_drained():
    """remote_media_download_*: a download's bytes are charged once known, even past the bucket's size."""
    clock = task.Clock()
    limiter = Ratelimiter(clock, per_second=1000, burst_count=100_000)
    limiter.check("1.2.3.4", update=False)
    limiter.charge("1.2.3.4", 150_000)
    with pytest.raises(MatrixError) as refused:
        limiter.check("1.2.3.4", update=False)
    assert refused.value.extra["retry_after_ms"] == 50_002  # 50,001 bytes to drain at 1,000 a second
    limiter.check("5.6.7.8", update=False)
    clock.advance(51)
    limiter.check("1.2.3.4", update=False)


def test_bucket_memory_is_bounded_by_pruning_drained_keys():
    clock = task.Clock()
    limiter = Ratelimiter(clock, per_second=1, burst_count=5)
    for n in range(100_000):
        limiter.check(f"@spammer{n}:example.org")
    clock.advance(2)
    limiter.check("@late:example.org")  # one key too many: every drained one is forgotten
    assert len(limiter._buckets) == 1


class Host:
    """Requests of one host through a limiter, each held open until released."""

    def __init__(self, limiter: FederationRateLimiter, name: str = "remote.example"):
        self.limiter, self.name = limiter, name
        self.started: list[int] = []
        self._gates: dict[int, defer.Deferred] = {}

    def request(self, n: int) -> defer.Deferred:
        async def handler():
            self.started.append(n)
            self._gates[n] = defer.Deferred()
            await self._gates[n]
            return n
        return defer.ensureDeferred(self.limiter.run(self.name, handler))

    def release(self, n: int) -> None:
        self._gates.pop(n).callback(None)


SETTINGS = FederationRateLimit(window_size=1000, sleep_limit=2, sleep_delay=500, reject_limit=1, concurrent=2)


def test_federation_limiter_sleeps_queues_and_rejects():
    clock = task.Clock()
    host = Host(FederationRateLimiter(clock, SETTINGS))
    results = [host.request(n) for n in range(4)]
    assert host.started == [0, 1]  # the third and fourth are past sleep_limit: asleep for sleep_delay
    refused = host.request(4)  # two asleep: past reject_limit
    assert isinstance(refused.result.value, MatrixError) and refused.result.value.extra["retry_after_ms"] == 500
    refused.addErrback(lambda _: None)
    clock.advance(0.5)
    assert host.started == [0, 1]  # awake, but two run already (concurrent): they wait their turn
    host.release(0)
    assert host.started == [0, 1, 2] and results[0].result == 0
    host.release(1)
    assert host.started == [0, 1, 2, 3]
    host.release(2)
    host.release(3)
    assert [d.result for d in results] == [0, 1, 2, 3]


def test_federation_limiter_window_and_hosts_are_independent():
    clock = task.Clock()
    limiter = FederationRateLimiter(clock, SETTINGS)
    busy, other = Host(limiter), Host(limiter, "other.example")
    for n in range(2):
        busy.request(n)
        busy.release(n)
    busy.request(2)
    assert busy.started == [0, 1]  # third in the window: asleep
    other.request(0)
    assert other.started == [0]  # another host is not held back
    clock.advance(1.0)
    assert busy.started == [0, 1, 2]
    busy.request(3)
    assert busy.started == [0, 1, 2, 3]  # a new window


def test_tarpit_holds_a_hammering_client_bounded_in_time_and_number():
    clock = task.Clock()
    tarpit = Tarpit(clock)
    first = defer.ensureDeferred(tarpit.refused("@a:x", 5000))
    assert first.called  # the first refusal is answered at once
    held = [defer.ensureDeferred(tarpit.refused("@a:x", 5000)) for _ in range(TARPIT_MAX_HELD_PER_CLIENT + 3)]
    assert [d.called for d in held] == [False] * TARPIT_MAX_HELD_PER_CLIENT + [True] * 3
    assert tarpit.held == TARPIT_MAX_HELD_PER_CLIENT
    assert defer.ensureDeferred(tarpit.refused("@b:x", 5000)).called  # another client: told first
    clock.advance(TARPIT_MAX_DELAY_S)  # the hold never exceeds the cap, whatever retry_after_ms says
    assert all(d.called for d in held) and tarpit.held == 0
    # a short wait is held for that wait only
    short = defer.ensureDeferred(tarpit.refused("@b:x", 100))
    clock.advance(0.099)
    assert not short.called
    clock.advance(0.002)
    assert short.called


def test_tarpit_total_held_is_bounded_and_told_clients_are_pruned():
    clock = task.Clock()
    tarpit = Tarpit(clock)
    clients = [f"@u{i}:x" for i in range(TARPIT_MAX_HELD // 2 + 1)]
    for client in clients:
        defer.ensureDeferred(tarpit.refused(client, 1000))
    held = [defer.ensureDeferred(tarpit.refused(c, 1000)) for c in clients for _ in range(2)]
    assert sum(not d.called for d in held) == TARPIT_MAX_HELD == tarpit.held
    clock.advance(TARPIT_MAX_DELAY_S)
    assert tarpit.held == 0
    for n in range(100_001):  # clients come from the network: the told ones whose wait is over are forgotten
        defer.ensureDeferred(tarpit.refused(f"ip{n}", 1))
        clock.advance(0.01)
    assert len(tarpit._told) < 1000


def test_federation_limiter_per_peer_limits_follow_the_peer_policy_live():
    """federation_peer_policy's rc_federation for one peer; the others keep rc_federation; a reload applies."""
    from federation.peers import FederationPeers
    from homeserver.config.values import PeerPolicy

    clock = task.Clock()
    strict = FederationRateLimit(window_size=1000, sleep_limit=100, sleep_delay=500, reject_limit=100, concurrent=1)
    peers = FederationPeers(None, {"slow.example": PeerPolicy(rc_federation=strict)})
    limiter = FederationRateLimiter(clock, SETTINGS, peers.rc_federation)
    slow, other = Host(limiter, "slow.example"), Host(limiter, "other.example")
    slow.request(0), slow.request(1)
    other.request(0), other.request(1)
    assert (slow.started, other.started) == ([0], [0, 1])  # one at a time for slow.example only
    peers.update(None, {})  # reloaded without the entry: the next requests get rc_federation
    slow.release(0)
    clock.advance(1)  # a new window
    slow.request(2)
    assert slow.started == [0, 1, 2]  # two at once now (SETTINGS.concurrent)


def test_peer_policy_default_entry_and_unknown_peers():
    from federation.peers import FederationPeers
    from homeserver.config.values import PeerPolicy

    peers = FederationPeers([], {"*": PeerPolicy(invite_users=False), "b.example": PeerPolicy()})
    assert not peers.allows("b.example")  # the allow-list first: [] is nobody
    assert peers.policy("b.example").invite_users and not peers.policy("c.example").invite_users
    assert FederationPeers().allows("anyone.example") and FederationPeers().policy("x").join_rooms

"""Finding the host and port behind a server name (server-server "Resolving server names").

The spec's order: an IP literal; a hostname with an explicit port;
``/.well-known/matrix/server`` delegation (cached per its headers); SRV
``_matrix-fed._tcp`` then the deprecated ``_matrix._tcp``; else port 8448.
The ``Host`` header and the TLS certificate name are the server name before
SRV (the delegated one after ``.well-known``).

:class:`ServerResolver` is the logic; the network comes in as two functions
(``fetch_well_known`` and ``lookup_srv``) so tests can fake it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from federation.policy import DEFAULT_FEDERATION_PORT, is_ip_literal, split_server_name

logger = logging.getLogger(__name__)

WELL_KNOWN_DEFAULT_CACHE_MS = 24 * 3600 * 1000
WELL_KNOWN_MIN_CACHE_MS = 5 * 60 * 1000
WELL_KNOWN_MAX_CACHE_MS = 48 * 3600 * 1000
WELL_KNOWN_ERROR_FIRST_MS = 5 * 60 * 1000  # doubling per repeated failure...
WELL_KNOWN_ERROR_MAX_MS = 3600 * 1000  # ...up to an hour (spec recommendation)
WELL_KNOWN_MAX_SIZE = 50 * 1024
SRV_PREFIXES = ("_matrix-fed._tcp.", "_matrix._tcp.")


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Route:
    """Where to send requests for a server name."""

    host_header: str  # the Host header, and the name the connection pool keys on
    tls_name: str  # the name the certificate must be valid for (an IP for IP literals)
    targets: list[tuple[str, int]]  # hosts (or IPs) and ports to try in order


@dataclass(frozen=True)
class WellKnownResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class _CacheEntry:
    server: str | None  # the delegated server name, None if there is none
    expires_ms: int
    failures: int = 0


def parse_well_known(body: bytes) -> str | None:
    """``m.server`` of a ``/.well-known/matrix/server`` body, if valid (the body is JSON whatever its type)."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    server = value.get("m.server") if isinstance(value, dict) else None
    if not isinstance(server, str):
        return None
    try:
        split_server_name(server)
    except ValueError:
        return None
    return server


def cache_period_ms(headers: dict[str, str], now_ms: int) -> int:
    """How long to cache a valid response: ``Cache-Control`` (``no-store``, ``max-age``), else
    ``Expires``, else 24 h; kept between 5 minutes and 48 hours."""
    period = None
    cache_control = headers.get("cache-control", "").lower()
    if "no-store" in cache_control or "no-cache" in cache_control:
        period = 0
    else:
        m = re.search(r"max-age\s*=\s*(\d+)", cache_control)
        if m:
            period = int(m.group(1)) * 1000
        elif headers.get("expires"):
            try:
                expires = email.utils.parsedate_to_datetime(headers["expires"])
                period = int(expires.timestamp() * 1000) - now_ms
            except (TypeError, ValueError):
                period = 0
    if period is None:
        period = WELL_KNOWN_DEFAULT_CACHE_MS
    return max(WELL_KNOWN_MIN_CACHE_MS, min(WELL_KNOWN_MAX_CACHE_MS, period))


def order_srv(records: list[SrvRecord], rng: random.Random) -> list[tuple[str, int]]:
    """RFC 2782 order: lowest priority first, weighted random among equal priorities.
    A single record with target ``.`` means the service is not offered (no targets)."""
    usable = [r for r in records if r.target not in (".", "")]
    out: list[tuple[str, int]] = []
    for priority in sorted({r.priority for r in usable}):
        group = [r for r in usable if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            pick = rng.uniform(0, total) if total else 0
            chosen = group[0]
            for r in group:
                pick -= r.weight
                if pick <= 0:
                    chosen = r
                    break
            group.remove(chosen)
            out.append((chosen.target.rstrip("."), chosen.port))
    return out


@dataclass
class ServerResolver:
    """Server name -> :class:`Route`, with the ``.well-known`` cache."""

    now_ms: Callable[[], int]
    fetch_well_known: Callable[[str], Awaitable[WellKnownResponse]]  # raises on connection failure
    lookup_srv: Callable[[str], Awaitable[list[SrvRecord]]]  # [] when there is no record
    rng: random.Random = field(default_factory=random.Random)
    _cache: dict[str, _CacheEntry] = field(default_factory=dict)

    async def resolve(self, server_name: str) -> Route:
        effective = await self.delegated_name(server_name)
        return Route(host_header=effective, tls_name=tls_name_of(effective), targets=await self.targets(effective))

    async def delegated_name(self, server_name: str) -> str:
        """Steps 1-3: the server name itself, or the one ``.well-known`` delegates to."""
        host, port = split_server_name(server_name)
        if is_ip_literal(host) or port is not None:
            return server_name
        entry = self._cache.get(host)
        if entry is None or entry.expires_ms <= self.now_ms():
            entry = await self._fetch(host, entry)
            self._cache[host] = entry
        return entry.server or server_name

    async def _fetch(self, host: str, previous: _CacheEntry | None) -> _CacheEntry:
        now = self.now_ms()
        server = None
        try:
            response = await self.fetch_well_known(host)
            if response.status == 200 and len(response.body) <= WELL_KNOWN_MAX_SIZE:
                server = parse_well_known(response.body)
        except Exception as e:
            logger.info("No .well-known/matrix/server for %s: %s", host, e)
        if server is not None:
            return _CacheEntry(server, now + cache_period_ms(response.headers, now))
        failures = (previous.failures if previous is not None and previous.server is None else 0) + 1
        backoff = min(WELL_KNOWN_ERROR_MAX_MS, WELL_KNOWN_ERROR_FIRST_MS * 2 ** (failures - 1))
        return _CacheEntry(None, now + backoff, failures)

    async def targets(self, name: str) -> list[tuple[str, int]]:
        """Steps for a (possibly delegated) name: IP literal, explicit port, SRV records, port 8448."""
        host, port = split_server_name(name)
        if is_ip_literal(host):
            return [(tls_name_of(name), port or DEFAULT_FEDERATION_PORT)]
        if port is not None:
            return [(host, port)]
        for prefix in SRV_PREFIXES:
            try:
                records = await self.lookup_srv(prefix + host)
            except Exception as e:
                logger.info("SRV lookup %s%s failed: %s", prefix, host, e)
                records = []
            if records:
                return order_srv(records, self.rng)
        return [(host, DEFAULT_FEDERATION_PORT)]


def tls_name_of(server_name: str) -> str:
    """The host part, without port or IPv6 brackets: what the certificate must name."""
    host, _ = split_server_name(server_name)
    return host[1:-1] if host.startswith("[") else host


async def twisted_srv_lookup(name: str) -> list[SrvRecord]:
    """SRV records through ``twisted.names`` (the system's resolv.conf); [] if none."""
    from twisted.names import client, dns, error

    try:
        answers, _authority, _additional = await client.lookupService(name)
    except (error.DNSNameError, error.DNSServerError, error.DomainError):
        return []
    return [SrvRecord(a.payload.priority, a.payload.weight, a.payload.port, a.payload.target.name.decode("ascii"))
            for a in answers if a.type == dns.SRV]

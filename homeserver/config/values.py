"""Configuration values: the error type, value objects and the small value parsers.

Pure: no Twisted, no network, only file reads (secret files).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

class ConfigError(Exception):
    """A configuration value we cannot start with.

    The message starts with the key path, e.g.
    ``listeners[0].port: must be an integer between 1 and 65535``.
    """


# ---------------------------------------------------------------------------
# Value objects
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst_count: int


@dataclass(frozen=True)
class FederationRateLimit:
    """Synapse's ``rc_federation`` shape."""

    window_size: int = 1000  # ms
    sleep_limit: int = 10
    sleep_delay: int = 500  # ms
    reject_limit: int = 50
    concurrent: int = 3


@dataclass(frozen=True)
class PeerPolicy:
    """One entry of ``federation_peer_policy`` (Hexagone's key): what a peer server may do here."""

    invite_users: bool = True  # its users may invite ours (inbound /invite)
    join_rooms: bool = True  # its users may join or knock on our rooms (make_join, send_join, knock)
    rc_federation: FederationRateLimit | None = None  # its own limits instead of rc_federation


@dataclass(frozen=True)
class PurgeJob:
    """One of ``retention.purge_jobs``: every ``interval`` ms, purge the rooms whose max_lifetime lies in
    (shortest_max_lifetime, longest_max_lifetime] (an unset bound: no bound)."""

    interval: int
    shortest_max_lifetime: int | None = None
    longest_max_lifetime: int | None = None


@dataclass(frozen=True)
class RetentionConfig:
    """Synapse's ``retention`` (docs/message_retention_policies.md); lifetimes in milliseconds."""

    enabled: bool = False
    default_min_lifetime: int | None = None
    default_max_lifetime: int | None = None
    allowed_lifetime_min: int | None = None
    allowed_lifetime_max: int | None = None
    purge_jobs: tuple[PurgeJob, ...] = (PurgeJob(interval=24 * 60 * 60 * 1000),)


@dataclass(frozen=True)
class ListenerConfig:
    port: int
    bind_addresses: list[str]
    type: str
    tls: bool
    # Resource names served on this listener, including the ones Synapse
    # implies (client -> media, static; federation -> media, keys, openid).
    resources: list[str]
    x_forwarded: bool
    compress: bool = False
    # Peers whose X-Forwarded-For is believed when x_forwarded is on (Hexagone's key; Synapse has none).
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class DatabaseConfig:
    engine: str  # "sqlite" or "postgresql"
    sqlite_path: str | None
    # libpq keyword/value conninfo; may contain the password, so not in repr.
    pg_dsn: str | None = field(repr=False)
    cp_min: int
    cp_max: int


# Synapse's default outbound blacklist (private / special-use ranges).
DEFAULT_IP_RANGE_BLACKLIST: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
)

_DURATION_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60 * 1000,
    "h": 60 * 60 * 1000,
    "d": 24 * 60 * 60 * 1000,
    "w": 7 * 24 * 60 * 60 * 1000,
    "y": 365 * 24 * 60 * 60 * 1000,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$")

# server_name: a DNS name, IPv4 literal or bracketed IPv6 literal, optional port.
_DNS_NAME_RE = re.compile(r"^[A-Za-z0-9.\-]{1,255}$")

# ---------------------------------------------------------------------------
# Small value parsers (usable by other modules)
# ---------------------------------------------------------------------------


def parse_duration_ms(value: Any, key: str) -> int:
    """Synapse duration: an int (milliseconds) or a string like "5m", "1h",
    "86400000" (milliseconds). Returns milliseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: must be a duration like 30s, 5m, 1h or milliseconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return int(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            number, unit = m.group(1), m.group(2) or "ms"
            return int(float(number) * _DURATION_UNITS_MS[unit])
    raise ConfigError(
        f"{key}: must be a duration like 30s, 5m, 1h, 7d or a number of "
        f"milliseconds, got {value!r}"
    )


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def parse_size(value: Any, key: str) -> int:
    """Synapse size: an int (bytes) or a string like "50M", "10K", "1G" (powers of 1024). Returns bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    raise ConfigError(f"{key}: must be a size like 50M, 10K, 1G or a number of bytes, got {value!r}")


class ThumbnailSize(NamedTuple):
    """One ``thumbnail_sizes`` entry: generated at upload for every image (content repository "Thumbnails");
    ``method`` is crop or scale."""
    width: int
    height: int
    method: str


class UploadLimit(NamedTuple):
    """One ``media_upload_limits`` entry: at most ``max_size`` bytes uploaded per user in ``time_period_ms``."""
    time_period_ms: int
    max_size: int


@dataclass(frozen=True)
class MediaRetention:
    """``media_retention``: local media not accessed for this long, and remote media cached for this long,
    are deleted (None: kept forever)."""

    local_media_lifetime_ms: int | None = None
    remote_media_lifetime_ms: int | None = None


def validate_server_name(value: Any, key: str = "server_name") -> str:
    """A Matrix server name: hostname / IP literal with an optional port."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty hostname such as example.org")
    if "://" in value:
        raise ConfigError(
            f"{key}: must be a bare hostname such as example.org, not a URL "
            f"(got {value!r}; put URLs in public_baseurl)"
        )
    if value != value.strip() or any(c in value for c in "/?#@ \t"):
        raise ConfigError(
            f"{key}: must be a bare hostname with an optional :port, got {value!r}"
        )
    host, port = value, None
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            raise ConfigError(f"{key}: unterminated IPv6 literal in {value!r}")
        host, rest = value[: end + 1], value[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ConfigError(f"{key}: invalid IPv6 literal {host!r}") from None
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{key}: unexpected text after IPv6 literal in {value!r}")
            port = rest[1:]
    else:
        if value.count(":") > 1:
            raise ConfigError(f"{key}: IPv6 literals must be in brackets, e.g. [::1]:8448")
        if ":" in value:
            host, port = value.split(":", 1)
        if not host or not _DNS_NAME_RE.match(host):
            raise ConfigError(
                f"{key}: {host!r} is not a valid hostname (letters, digits, '-' and '.')"
            )
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"{key}: port must be an integer between 1 and 65535")
    return value


def is_empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def check_int(value: Any, path: str, lo: int | None, hi: int | None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and isinstance(value, str) and value.strip().isdigit():
        value, ok = int(value), True
    if ok and (lo is None or value >= lo) and (hi is None or value <= hi):
        return value
    if lo is not None and hi is not None:
        raise ConfigError(f"{path}: must be an integer between {lo} and {hi}")
    if lo is not None:
        raise ConfigError(f"{path}: must be an integer >= {lo}")
    raise ConfigError(f"{path}: must be an integer")


# Listener resource names.
IMPLEMENTED_RESOURCES = frozenset({"client", "federation", "keys", "media", "openid", "static", "health", "metrics",
                                   "replication"})
SYNAPSE_RESOURCES = frozenset({"consent"})  # known to Synapse, not served here
_IMPLIED_RESOURCES = {
    "client": ("media", "static"),
    "federation": ("media", "keys", "openid"),
}


def expand_resources(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for n in (name, *_IMPLIED_RESOURCES.get(name, ())):
            if n not in out:
                out.append(n)
    return out


def conninfo_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def read_secret_file(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror or e}") from None
    if not value:
        raise ConfigError(f"{key}: {path} is empty")
    return value



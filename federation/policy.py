"""Who we federate with: server ACLs, the domain allow-list and outbound IP ranges.

Pure functions, no I/O. Spec v1.19: client-server "Server Access Control Lists
(ACLs) for rooms" (``m.room.server_acl``), appendices "Server Name" and
"Glob-style matching". The allow-list and IP ranges are Synapse's
``federation_domain_whitelist`` and ``ip_range_blacklist``/``ip_range_whitelist``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

from homeserver.events.glob import glob_matches

DEFAULT_FEDERATION_PORT = 8448


def split_server_name(server_name: str) -> tuple[str, int | None]:
    """``host[:port]`` -> (host, port or None); an IPv6 literal keeps its brackets.

    Raises ``ValueError`` for a name that is not a valid server name (appendices "Server Name").
    """
    if not isinstance(server_name, str) or not server_name:
        raise ValueError("empty server name")
    if server_name.startswith("["):
        end = server_name.find("]")
        if end == -1:
            raise ValueError(f"unterminated IPv6 literal in {server_name!r}")
        host, rest = server_name[:end + 1], server_name[end + 1:]
        ipaddress.IPv6Address(host[1:-1])
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"unexpected text after IPv6 literal in {server_name!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = server_name.partition(":")
        if not sep:
            port_text = None
        if not re.fullmatch(r"[A-Za-z0-9.\-]{1,255}", host):
            raise ValueError(f"invalid host {host!r}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"invalid port in {server_name!r}")
    return host, int(port_text)


def is_ip_literal(host: str) -> bool:
    """True for ``1.2.3.4`` and ``[::1]`` (also bare ``::1``)."""
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def server_acl_allows(acl_content: dict | None, server_name: str) -> bool:
    """Evaluate an ``m.room.server_acl`` content for ``server_name`` (port never considered).

    ``acl_content`` None means the room has no ACL: allowed. Non-list ``allow``/``deny``
    and non-string entries are ignored, a non-boolean ``allow_ip_literals`` counts as true
    (as Synapse does).
    """
    if acl_content is None:
        return True
    try:
        host, _ = split_server_name(server_name)
    except ValueError:
        return False
    if is_ip_literal(host) and acl_content.get("allow_ip_literals", True) is False:
        return False
    if any(glob_matches(g, host) for g in _string_list(acl_content.get("deny"))):
        return False
    return any(glob_matches(g, host) for g in _string_list(acl_content.get("allow")))


def _string_list(value) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def federation_allowed(whitelist: Iterable[str] | None, server_name: str) -> bool:
    """``federation_domain_whitelist``: None lets everyone in; a list only exactly those server names."""
    return whitelist is None or server_name in whitelist


# Refused whatever ip_range_blacklist says ("this network" and the unspecified address reach our own
# host on Linux). Synapse always adds 0.0.0.0 and ::; we refuse all of 0.0.0.0/8.
ALWAYS_BLOCKED = ("0.0.0.0/8", "::/128")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped, IPv4-compatible (RFC 4291 2.5.5) or 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


class IpRangeFilter:
    """Outbound IP policy: refused if in ``blacklist`` (or ALWAYS_BLOCKED) unless also in ``whitelist``.
    An IPv6 address standing for an IPv4 one is judged as both, as in Synapse."""

    def __init__(self, blacklist: Iterable[str], whitelist: Iterable[str] = ()):
        self._black = [ipaddress.ip_network(r, strict=False) for r in (*ALWAYS_BLOCKED, *blacklist)]
        self._white = [ipaddress.ip_network(r, strict=False) for r in whitelist]

    def allows(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
            candidates.append(embedded)
        if any(a in net for a in candidates for net in self._white if a.version == net.version):
            return True
        return not any(a in net for a in candidates for net in self._black if a.version == net.version)

"""Identifier grammar helpers (appendices "Identifier Grammar")."""

from __future__ import annotations

import re

_SERVER_NAME_RE = re.compile(
    r"^(?:"
    r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"  # IPv4 literal
    r"|\[[0-9A-Fa-f:.]{2,45}\]"  # IPv6 literal
    r"|[A-Za-z0-9.-]{1,255}"  # DNS name
    r")(?::\d{1,5})?$"
)


def is_valid_server_name(name: str) -> bool:
    """True if ``name`` matches the server name grammar (appendices "Server Name")."""
    return isinstance(name, str) and bool(_SERVER_NAME_RE.match(name))


def is_valid_user_id(user_id: object) -> bool:
    """True if ``user_id`` is ``@localpart:server_name`` within 255 bytes.

    The localpart follows the *historical* grammar that servers must accept
    (appendices "Historical User IDs"): any code points except ``:`` and NUL,
    possibly empty.
    """
    if not isinstance(user_id, str) or not user_id.startswith("@"):
        return False
    if len(user_id.encode("utf-8", "surrogatepass")) > 255:
        return False
    localpart, sep, server = user_id[1:].partition(":")
    if not sep or "\x00" in localpart:
        return False
    return is_valid_server_name(server)


def domain_of(identifier: str) -> str | None:
    """The part after the first ``:`` of an identifier, or ``None``."""
    if not isinstance(identifier, str) or ":" not in identifier:
        return None
    return identifier.split(":", 1)[1]

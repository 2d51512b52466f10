"""Application service registration files (spec v1.19 application service API, "Registration"),
listed in ``app_service_config_files`` as in Synapse.

Pure: reads the YAML files and checks them. A wrong file refuses start-up with a
:class:`ConfigError` naming the file, the key and the reason; two registrations sharing an ``id``,
an ``as_token`` or an ``hs_token`` are refused too.

Keys read (Synapse's names and meanings): ``id``, ``url`` (a string or an explicit null),
``as_token``, ``hs_token``, ``sender_localpart``, ``namespaces`` (``users``, ``aliases``, ``rooms``:
lists of ``{regex, exclusive}``), ``rate_limited``, ``protocols``, ``receive_ephemeral`` (MSC2409, with
its older name ``de.sorunome.msc2409.push_ephemeral``), ``org.matrix.msc3202`` (device lists and
one-time key counts in transactions), ``io.element.msc4190`` (device management by the appservice)
and ``ip_range_whitelist`` (where the as_token may be used from). Other keys are ignored.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field

import yaml

from homeserver.config.values import ConfigError

NAMESPACE_KINDS = ("users", "aliases", "rooms")


@dataclass(frozen=True)
class Namespace:
    """One entry of a registration's namespace list: a regex matched against the whole identifier."""

    regex: re.Pattern
    exclusive: bool

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None


@dataclass(frozen=True)
class Registration:
    """One application service, as its registration file declares it."""

    id: str
    url: str | None
    as_token: str = field(repr=False)
    hs_token: str = field(repr=False)
    sender: str  # the full user id of sender_localpart
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False  # stable key "ephemeral" in transactions
    push_ephemeral_legacy: bool = False  # de.sorunome.msc2409.ephemeral in transactions
    msc3202: bool = False
    msc4190: bool = False
    ip_range_whitelist: tuple = ()  # ip_network objects; empty: from anywhere

    @property
    def wants_ephemeral(self) -> bool:
        return self.receive_ephemeral or self.push_ephemeral_legacy

    def is_user_in_namespace(self, user_id: str) -> bool:
        """Spec "Identity assertion": the users the appservice may act as (its sender included)."""
        return user_id == self.sender or any(ns.matches(user_id) for ns in self.users)

    def is_exclusive_user(self, user_id: str) -> bool:
        return user_id == self.sender or any(ns.exclusive and ns.matches(user_id) for ns in self.users)

    def is_alias_in_namespace(self, alias: str) -> bool:
        return any(ns.matches(alias) for ns in self.aliases)

    def is_exclusive_alias(self, alias: str) -> bool:
        return any(ns.exclusive and ns.matches(alias) for ns in self.aliases)

    def is_room_in_namespace(self, room_id: str) -> bool:
        return any(ns.matches(room_id) for ns in self.rooms)

    def allows_address(self, ip: str) -> bool:
        """``ip_range_whitelist``: whether the as_token may be used from this client address."""
        if not self.ip_range_whitelist:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.ip_range_whitelist)


def _flag(raw: dict, key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key}: must be true or false, got {value!r}")
    return value


def _namespaces(raw: dict, kind: str, where: str) -> tuple[Namespace, ...]:
    entries = raw.get(kind)
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: namespaces.{kind}: must be a list of {{regex, exclusive}} objects")
    found = []
    for i, entry in enumerate(entries):
        path = f"{where}: namespaces.{kind}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: must be an object with regex and exclusive")
        if not isinstance(entry.get("regex"), str):
            raise ConfigError(f"{path}.regex: missing, or not a string")
        if not isinstance(entry.get("exclusive"), bool):
            raise ConfigError(f"{path}.exclusive: missing, or not true/false")
        try:
            pattern = re.compile(entry["regex"])
        except re.error as e:
            raise ConfigError(f"{path}.regex: not a valid regular expression: {e}") from None
        found.append(Namespace(pattern, entry["exclusive"]))
    return tuple(found)


def parse_registration(raw, where: str, server_name: str) -> Registration:
    """Check one registration mapping; ``where`` names it in errors (the config key and the file)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys to values")
    for key in ("id", "as_token", "hs_token", "sender_localpart"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}: {key}: required, a non-empty string")
    if "url" not in raw or not isinstance(raw["url"], (str, type(None))):
        raise ConfigError(f"{where}: url: required, a string or an explicit null")
    url = raw["url"]
    if url is not None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{where}: url: must be an http:// or https:// URL, got {url!r}")
        url = url.rstrip("/")
    localpart = raw["sender_localpart"]
    if urllib.parse.quote(localpart) != localpart or localpart.lower() != localpart:
        raise ConfigError(f"{where}: sender_localpart: must be a lowercase localpart needing no URL encoding")
    namespaces = raw.get("namespaces")
    if not isinstance(namespaces, dict):
        raise ConfigError(f"{where}: namespaces: required, a mapping with users, aliases and rooms lists")
    protocols = raw.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) for p in protocols):
        raise ConfigError(f"{where}: protocols: must be a list of strings")
    rate_limited = raw.get("rate_limited", True)
    if not isinstance(rate_limited, bool):
        raise ConfigError(f"{where}: rate_limited: must be true or false")
    whitelist = raw.get("ip_range_whitelist") or []
    if not isinstance(whitelist, list):
        raise ConfigError(f"{where}: ip_range_whitelist: must be a list of IP ranges")
    try:
        networks = tuple(ipaddress.ip_network(r, strict=False) for r in whitelist)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: ip_range_whitelist: {e}") from None
    return Registration(
        id=raw["id"], url=url, as_token=raw["as_token"], hs_token=raw["hs_token"],
        sender=f"@{localpart}:{server_name}",
        **{kind: _namespaces(namespaces, kind, where) for kind in NAMESPACE_KINDS},
        rate_limited=rate_limited, protocols=tuple(protocols),
        receive_ephemeral=_flag(raw, "receive_ephemeral", where),
        push_ephemeral_legacy=_flag(raw, "de.sorunome.msc2409.push_ephemeral", where),
        msc3202=_flag(raw, "org.matrix.msc3202", where), msc4190=_flag(raw, "io.element.msc4190", where),
        ip_range_whitelist=networks)


def load_registrations(paths: list[str], server_name: str, key: str = "app_service_config_files"
                       ) -> tuple[Registration, ...]:
    """Read every file; refuse a broken one, and two sharing an id, an as_token or an hs_token."""
    found: list[Registration] = []
    seen: dict[tuple[str, str], str] = {}
    for i, path in enumerate(paths):
        where = f"{key}[{i}] ({path})"
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f)
        except OSError as e:
            raise ConfigError(f"{where}: cannot read the file: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: not valid YAML: {e}") from None
        registration = parse_registration(raw, where, server_name)
        for what, value in (("id", registration.id), ("as_token", registration.as_token),
                            ("hs_token", registration.hs_token)):
            if (what, value) in seen:
                raise ConfigError(f"{where}: {what}: already used by {seen[what, value]}"
                                  " (each application service needs its own)")
            seen[what, value] = path
        if registration.as_token == registration.hs_token:
            raise ConfigError(f"{where}: hs_token: must differ from as_token")
        found.append(registration)
    return tuple(found)

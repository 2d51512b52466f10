"""A bridge's configuration (``config.yaml``) and its appservice registration (``registration.yaml``).

Both files are written by ``hexagone bridge NAME init`` from the same generated tokens; the
registration goes to the homeserver (``app_service_config_files``), the configuration stays with the
bridge. Reading checks every key and refuses a wrong value with the key and the reason.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import yaml

PERMISSION_LEVELS = ("relay", "user", "admin")
ENCRYPTING_BRIDGES = ("oodrive", "tixeo")  # ``init`` allows encryption for these (team rooms are encrypted)


class BridgeConfigError(Exception):
    """A configuration value the bridge cannot run with: the message names the key."""


@dataclass(frozen=True)
class BridgeConfig:
    name: str
    homeserver_url: str
    domain: str
    appservice_id: str
    address: str
    hostname: str
    port: int
    as_token: str
    hs_token: str
    bot_localpart: str
    bot_displayname: str
    ghost_prefix: str
    database: str
    command_prefix: str
    permissions: dict[str, str]
    relay_default: bool
    relay_format: str
    max_attachment_size: int
    portal_invites: list[str]
    delivery_retry_s: float
    network: dict[str, Any] = field(default_factory=dict)  # the product's own section (``olvid:`` ...)
    encryption: bool = False  # the bot has its own encryption device (the ``bridges-e2e`` extra)
    crypto_store: str = ""  # where that device's keys and sessions are kept

    @property
    def bot_mxid(self) -> str:
        return f"@{self.bot_localpart}:{self.domain}"

    def ghost_mxid(self, remote_user: str) -> str:
        return f"@{self.ghost_prefix}{remote_user}:{self.domain}"

    def is_ours(self, user_id: str) -> bool:
        """The bot or a ghost: events they send are echoes and never go back to the remote side."""
        return user_id == self.bot_mxid or (user_id.startswith(f"@{self.ghost_prefix}")
                                            and user_id.endswith(f":{self.domain}"))


def new_config(name: str, homeserver: str, domain: str, directory: str, port: int,
               network: dict[str, Any]) -> tuple[dict, dict]:
    """The (config, registration) documents of a new bridge, with fresh tokens."""
    as_token, hs_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    address = f"http://127.0.0.1:{port}"
    config = {
        "homeserver": {"url": homeserver, "domain": domain},
        "appservice": {"id": name, "address": address, "hostname": "127.0.0.1", "port": port,
                       "as_token": as_token, "hs_token": hs_token, "bot_localpart": f"{name}bot",
                       "bot_displayname": f"{name.capitalize()} bridge bot", "ghost_prefix": f"{name}_"},
        "database": f"sqlite:///{directory}/{name}.db",
        "bridge": {"command_prefix": f"!{name}", "permissions": {domain: "user"},
                   "relay": {"default": True, "format": "{displayname}: {body}"},
                   "max_attachment_size": 100 * 1024 * 1024, "portal_invites": [], "delivery_retry_s": 60,
                   "encryption": {"allow": name in ENCRYPTING_BRIDGES, "store": f"{directory}/crypto"}},
        name: network,
    }
    return config, registration_for(config)


def registration_for(config: dict) -> dict:
    """The appservice registration matching a configuration document (spec: application service registration)."""
    domain = re.escape(config["homeserver"]["domain"])
    appservice = config["appservice"]
    return {
        "id": appservice["id"], "url": appservice["address"],
        "as_token": appservice["as_token"], "hs_token": appservice["hs_token"],
        "sender_localpart": appservice["bot_localpart"], "rate_limited": False,
        "namespaces": {"users": [{"exclusive": True,
                                  "regex": f"@{re.escape(appservice['ghost_prefix'])}.*:{domain}"}],
                       "aliases": [], "rooms": []},
        "receive_ephemeral": True, "de.sorunome.msc2409.push_ephemeral": True,
        # MSC3202: device lists and one-time key counts in transactions, for a bot device that cannot sync
        "org.matrix.msc3202": bool((config["bridge"].get("encryption") or {}).get("allow")),
    }


def _get(doc: dict, path: str, kind: type, default: Any = ...) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is ...:
                raise BridgeConfigError(f"{path}: missing")
            return default
        node = node[part]
    if kind in (int, (int, float)) and isinstance(node, bool) or not isinstance(node, kind):
        expected = kind.__name__ if isinstance(kind, type) else "number"
        raise BridgeConfigError(f"{path}: expected {expected}, got {type(node).__name__}")
    return node


def parse_config(name: str, doc: Any) -> BridgeConfig:
    """Check a configuration document; raise BridgeConfigError naming the first wrong key."""
    if not isinstance(doc, dict):
        raise BridgeConfigError("the configuration must be a mapping")
    url = _get(doc, "homeserver.url", str)
    if not url.startswith(("http://", "https://")):
        raise BridgeConfigError("homeserver.url: must start with http:// or https://")
    permissions = _get(doc, "bridge.permissions", dict, {})
    for who, level in permissions.items():
        if level not in PERMISSION_LEVELS:
            raise BridgeConfigError(f"bridge.permissions.{who}: {level!r} is not one of {PERMISSION_LEVELS}")
    port = _get(doc, "appservice.port", int)
    if not 0 < port < 65536:
        raise BridgeConfigError("appservice.port: not a TCP port")
    encryption = _get(doc, "bridge.encryption.allow", bool, False)
    crypto_store = _get(doc, "bridge.encryption.store", str, "")
    if encryption and not crypto_store:
        raise BridgeConfigError("bridge.encryption.store: a directory is needed when encryption is allowed")
    size = _get(doc, "bridge.max_attachment_size", int, 100 * 1024 * 1024)
    if size <= 0:
        raise BridgeConfigError("bridge.max_attachment_size: must be positive")
    return BridgeConfig(
        name=name, homeserver_url=url.rstrip("/"), domain=_get(doc, "homeserver.domain", str),
        appservice_id=_get(doc, "appservice.id", str), address=_get(doc, "appservice.address", str),
        hostname=_get(doc, "appservice.hostname", str, "127.0.0.1"), port=port,
        as_token=_get(doc, "appservice.as_token", str), hs_token=_get(doc, "appservice.hs_token", str),
        bot_localpart=_get(doc, "appservice.bot_localpart", str),
        bot_displayname=_get(doc, "appservice.bot_displayname", str, ""),
        ghost_prefix=_get(doc, "appservice.ghost_prefix", str), database=_get(doc, "database", str),
        command_prefix=_get(doc, "bridge.command_prefix", str, f"!{name}"), permissions=permissions,
        relay_default=_get(doc, "bridge.relay.default", bool, True),
        relay_format=_get(doc, "bridge.relay.format", str, "{displayname}: {body}"),
        max_attachment_size=size, portal_invites=_get(doc, "bridge.portal_invites", list, []),
        delivery_retry_s=float(_get(doc, "bridge.delivery_retry_s", (int, float), 60)),
        network=_get(doc, name, dict, {}), encryption=encryption, crypto_store=crypto_store,
    )


def load_config(name: str, path: str) -> BridgeConfig:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise BridgeConfigError(f"{path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise BridgeConfigError(f"{path}: not YAML ({e})") from None
    return parse_config(name, doc)


def permission_level(permissions: dict[str, str], user_id: str) -> str | None:
    """The level of ``user_id``: its own entry, else its server's, else ``*``; None when not allowed."""
    server = user_id.split(":", 1)[1] if ":" in user_id else ""
    for key in (user_id, server, "*"):
        if key in permissions:
            return permissions[key]
    return None


def allows(permissions: dict[str, str], user_id: str, needed: str) -> bool:
    level = permission_level(permissions, user_id)
    return level is not None and PERMISSION_LEVELS.index(level) >= PERMISSION_LEVELS.index(needed)

"""Policy Servers (spec v1.18+): the room's choice of one, its signature on events, and what ours refuses.

Pure functions, no I/O. Spec v1.19 client-server "Policy Servers" and ``m.room.policy``; server-server
"Policy Servers" and ``POST /_matrix/policy/v1/sign``. Where the spec is silent this follows Synapse
(``synapse/handlers/room_policy.py``): the room's policy server is read from its current state; the
``m.room.policy`` state event with an empty state key is never sent for signing nor required to carry a
signature; a policy server signature is checked against the key of the state event only, never against
keys the policy server publishes on ``/_matrix/key/v2/server``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from nacl.signing import VerifyKey
from unpaddedbase64 import decode_base64

from .glob import compile_glob
from .hashing import reference_bytes
from .room_versions import RoomVersion
from .identifiers import is_valid_server_name
from .signing import sign_event, verify_signed_json

POLICY_EVENT = "m.room.policy"
POLICY_KEY_ID = "ed25519:policy_server"  # "ed25519:policy_server is *always* used for Ed25519 signatures"
POLICY_KEY_VERSION = "policy_server"
BAN = "m.ban"
RULE_TYPES = {"m.policy.rule.user": "user", "m.policy.rule.server": "server"}


@dataclass(frozen=True)
class RoomPolicyServer:
    """A room's policy server as its ``m.room.policy`` names it: server name and Ed25519 public key (base64)."""

    via: str
    ed25519: str

    def verify_key(self) -> VerifyKey:
        return VerifyKey(decode_base64(self.ed25519))


def is_policy_state_event(pdu: dict) -> bool:
    """The one event a policy server never signs and no server requires its signature on."""
    return pdu.get("type") == POLICY_EVENT and pdu.get("state_key") == ""


def room_policy_server(content) -> RoomPolicyServer | None:
    """The policy server an ``m.room.policy`` content names, or None when it is invalid (the room then uses
    none): ``via`` a server name, ``public_keys.ed25519`` a base64 Ed25519 public key."""
    if not isinstance(content, dict):
        return None
    via, keys = content.get("via"), content.get("public_keys")
    if not isinstance(via, str) or not is_valid_server_name(via) or not isinstance(keys, dict):
        return None
    key = keys.get("ed25519")
    if not isinstance(key, str):
        return None
    try:
        if len(decode_base64(key)) != 32:
            return None
    except Exception:
        return None
    return RoomPolicyServer(via, key)


def has_policy_signature(pdu: dict, version: RoomVersion, server: RoomPolicyServer) -> bool:
    """Whether ``pdu`` carries a valid ``ed25519:policy_server`` signature of ``server.via`` by its key
    (over the redacted event, as every event signature)."""
    sigs = pdu.get("signatures")
    if not isinstance(sigs, dict) or not isinstance(sigs.get(server.via), dict) \
            or POLICY_KEY_ID not in sigs[server.via]:
        return False
    key = server.verify_key()
    try:
        verify_signed_json({"signatures": {server.via: {POLICY_KEY_ID: sigs[server.via][POLICY_KEY_ID]}}},
                           server.via, lambda s, k: key if k == POLICY_KEY_ID else None,
                           reference_bytes(pdu, version))
    except Exception:
        return False
    return True


def policy_signature(pdu: dict, version: RoomVersion, server_name: str, signing_key) -> dict:
    """The answer of ``/sign``: ``{server_name: {"ed25519:policy_server": signature}}`` over the event.
    ``signing_key`` has version ``policy_server``."""
    signed = sign_event({k: v for k, v in pdu.items() if k != "signatures"}, server_name, signing_key, version)
    return {server_name: {POLICY_KEY_ID: signed["signatures"][server_name][POLICY_KEY_ID]}}


def with_signature(pdu: dict, signature: dict, via: str) -> dict:
    """``pdu`` with the policy server's signature added, its other signatures kept (the sender may be the
    policy server itself)."""
    sig = (signature.get(via) or {}).get(POLICY_KEY_ID) if isinstance(signature, dict) else None
    if not isinstance(sig, str):
        return pdu
    sigs = {s: dict(v) for s, v in (pdu.get("signatures") or {}).items()}
    sigs.setdefault(via, {})[POLICY_KEY_ID] = sig
    return {**pdu, "signatures": sigs}


@dataclass
class RefusalRules:
    """What our policy server refuses to sign: senders and servers (globs) banned by the admin or by an
    ``m.ban`` rule of the moderation policy lists it follows, and keywords in the content's text."""

    banned_users: list[str] = field(default_factory=list)
    banned_servers: list[str] = field(default_factory=list)
    spam_keywords: list[str] = field(default_factory=list)

    def with_policy_rules(self, rules: Iterable[dict]) -> "RefusalRules":
        """These rules plus the ``m.ban`` ``m.policy.rule.user``/``.server`` state events of a policy list
        (client-server "Moderation policy lists"; a rule with empty content was removed)."""
        users, servers = list(self.banned_users), list(self.banned_servers)
        for rule in rules:
            kind = RULE_TYPES.get(rule.get("type"))
            content = rule.get("content") or {}
            entity = content.get("entity")
            if kind is None or content.get("recommendation") != BAN or not isinstance(entity, str):
                continue
            (users if kind == "user" else servers).append(entity)
        return RefusalRules(users, servers, list(self.spam_keywords))


def refusal(pdu: dict, rules: RefusalRules) -> str | None:
    """Why our policy server does not recommend ``pdu`` for the room, or None when it signs it."""
    sender = pdu.get("sender")
    if not isinstance(sender, str) or ":" not in sender:
        return "The event has no valid sender"
    server = sender.split(":", 1)[1]
    if any(compile_glob(g).matches(sender) for g in rules.banned_users):
        return "The sender is banned by this room's policy server"
    if any(compile_glob(g).matches(server) for g in rules.banned_servers):
        return "The sender's server is banned by this room's policy server"
    text = " ".join(_texts(pdu.get("content"))).casefold()
    if any(k.casefold() in text for k in rules.spam_keywords if k):
        return "The message appears to contain possible spam"
    return None


def _texts(content, depth: int = 0) -> list[str]:
    """The strings of an event content (nested objects and lists included, to a bounded depth)."""
    if depth > 8:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, dict):
        return [t for v in content.values() for t in _texts(v, depth + 1)]
    if isinstance(content, list):
        return [t for v in content for t in _texts(v, depth + 1)]
    return []

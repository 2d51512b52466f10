"""The redaction algorithm (client-server API "Redactions"; room version fragments
v1-redactions, v6-redactions, v9-redactions, v11-redactions).

The result is the PDU-level redacted form used for signing and reference hashes.
``unsigned`` is *not* kept: the spec's allow-list does not contain it, so the
redacted PDU never carries it (servers that want to keep local unsigned metadata
such as ``redacted_because`` must re-attach it themselves for clients).
"""

from __future__ import annotations

from typing import Any

from .client_format import copy_json
from .room_versions import RoomVersion, get_room_version

_TOP_LEVEL_V1 = frozenset(
    {
        "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
        "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",
        "origin_server_ts", "membership",
    }
)
_TOP_LEVEL_V11 = frozenset(
    {
        "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
        "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
    }
)
_PL_KEYS_V1 = (
    "ban", "events", "events_default", "kick", "redact", "state_default", "users",
    "users_default",
)


def _allowed_content_keys(event_type: str, rv: RoomVersion) -> tuple[str, ...] | None:
    """Content keys kept for ``event_type``; ``None`` means "keep everything"."""
    if event_type == "m.room.member":
        if rv.restricted_join_redaction:
            return ("membership", "join_authorised_via_users_server")
        return ("membership",)
    if event_type == "m.room.create":
        return None if rv.updated_redaction_rules else ("creator",)
    if event_type == "m.room.join_rules":
        return ("join_rule", "allow") if rv.restricted_join_redaction else ("join_rule",)
    if event_type == "m.room.power_levels":
        return _PL_KEYS_V1 + ("invite",) if rv.updated_redaction_rules else _PL_KEYS_V1
    if event_type == "m.room.aliases" and rv.redaction_rule_aliases:
        return ("aliases",)
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    if event_type == "m.room.redaction" and rv.updated_redaction_rules:
        return ("redacts",)
    return ()


def redact_event(event: dict[str, Any], room_version: RoomVersion | str) -> dict[str, Any]:
    """Return a redacted deep copy of ``event`` following its room version's algorithm.

    v1: base algorithm; v6: ``m.room.aliases`` no longer special; v9: keeps
    ``join_authorised_via_users_server`` and join rule ``allow``; v11: drops
    ``origin``/``membership``/``prev_state``, keeps all of ``m.room.create``,
    ``invite`` in power levels, ``third_party_invite.signed`` in members and
    ``redacts`` in redactions. Idempotent.
    """
    return copy_json(redacted_view(event, room_version))


def redacted_view(event: dict[str, Any], room_version: RoomVersion | str) -> dict[str, Any]:
    """What :func:`redact_event` returns, but sharing the kept values with ``event`` (only the
    top level and ``content`` are new): to encode at once, never to keep or change."""
    rv = get_room_version(room_version)
    allowed_top = _TOP_LEVEL_V11 if rv.updated_redaction_rules else _TOP_LEVEL_V1
    out = {k: v for k, v in event.items() if k in allowed_top and k != "content"}
    content = event.get("content")
    if not isinstance(content, dict):
        out["content"] = {}
        return out
    keep = _allowed_content_keys(event.get("type", ""), rv)
    new_content = dict(content) if keep is None else {k: content[k] for k in keep if k in content}
    if (
        rv.updated_redaction_rules
        and event.get("type") == "m.room.member"
        and isinstance(content.get("third_party_invite"), dict)
        and "signed" in content["third_party_invite"]
    ):
        new_content["third_party_invite"] = {"signed": content["third_party_invite"]["signed"]}
    out["content"] = new_content
    return out

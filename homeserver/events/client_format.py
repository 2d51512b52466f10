"""Client-server event format (client-server API "Room Event Format" / ClientEvent)."""

from __future__ import annotations

from typing import Any

_CLIENT_KEYS = ("event_id", "type", "content", "sender", "origin_server_ts", "state_key", "unsigned")


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data: its leaves are immutable, so only objects and arrays are copied (several
    times faster than ``copy.deepcopy``, which serializing a sync's events spent most of its time in)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [copy_json(v) for v in value]
    return value


def to_client_event(pdu: dict[str, Any], *, include_room_id: bool = True) -> dict[str, Any]:
    """Convert a PDU to the ClientEvent shape.

    Keeps ``event_id``, ``type``, ``content``, ``sender``, ``origin_server_ts``,
    ``room_id`` (unless ``include_room_id`` is false), ``state_key`` if present,
    ``unsigned`` (always present, possibly empty) and top-level ``redacts`` (v1-v10).
    For redactions with ``content.redacts`` (v11+) a top-level ``redacts`` is added
    too, and for top-level ``redacts`` it is mirrored into ``content`` (room v11
    "Moving the redacts property", backwards/forwards compatibility).
    Drops ``hashes``, ``signatures``, ``auth_events``, ``prev_events``, ``depth``,
    ``origin`` and anything else federation-only.
    """
    out = {k: copy_json(pdu[k]) for k in _CLIENT_KEYS if k in pdu}
    out.setdefault("content", {})
    out.setdefault("unsigned", {})
    if include_room_id and "room_id" in pdu:
        out["room_id"] = pdu["room_id"]
    if pdu.get("type") == "m.room.redaction":
        content = out["content"] if isinstance(out["content"], dict) else {}
        redacts = pdu.get("redacts", content.get("redacts"))
        if isinstance(redacts, str):
            out["redacts"] = redacts
            if isinstance(out["content"], dict):
                out["content"].setdefault("redacts", redacts)
    elif "redacts" in pdu:
        out["redacts"] = pdu["redacts"]
    return out

"""Building and validating PDUs (room version "Event format" sections; client-server
API "Size limits"; server-server API "PDUs").

``build_event`` returns the PDU with an ``event_id`` key in every room version. For
v1/v2 this is a real PDU field; for v3+ it is a *convenience* key that must be
stripped before the PDU is sent over federation (``hashing.strip_convenience_keys``).
Hashing/signing functions ignore it for v3+.
"""

from __future__ import annotations

import secrets
import string
from typing import Any, Iterable

from .canonical_json import check_canonical_values, encode_canonical_json
from .errors import EventFormatError
from .hashing import add_content_hash, compute_event_id
from .room_versions import RoomVersion, get_room_version
from .signing import sign_event

MAX_PDU_SIZE = 65536
MAX_ID_BYTES = 255
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10


def room_id_from_create_event(event_id: str) -> str:
    """v12 room ID: the create event's ID with ``!`` instead of ``$`` (appendices "Room IDs")."""
    if not isinstance(event_id, str) or not event_id.startswith("$"):
        raise ValueError(f"not an event ID: {event_id!r}")
    return "!" + event_id[1:]


def create_event_id_from_room_id(room_id: str) -> str:
    """Inverse of :func:`room_id_from_create_event` (v12 only)."""
    if not isinstance(room_id, str) or not room_id.startswith("!"):
        raise ValueError(f"not a room ID: {room_id!r}")
    return "$" + room_id[1:]


def event_id_list(field: Any) -> list[str]:
    """Normalise ``prev_events``/``auth_events`` of any format (v1 ``[id, hashes]``
    pairs or v3+ plain IDs) to a list of event IDs. Malformed entries are skipped."""
    out: list[str] = []
    if not isinstance(field, (list, tuple)):
        return out
    for item in field:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, (list, tuple)) and item and isinstance(item[0], str):
            out.append(item[0])
    return out


def _reference_list(rv: RoomVersion, ids: Iterable[Any]) -> list[Any]:
    if not rv.event_id_in_pdu:
        return [i if isinstance(i, str) else i[0] for i in ids]
    out = []
    for i in ids:
        if isinstance(i, str):
            out.append([i, {}])
        else:
            out.append([i[0], dict(i[1]) if len(i) > 1 and isinstance(i[1], dict) else {}])
    return out


def _opaque_event_id(server_name: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return "$" + "".join(secrets.choice(alphabet) for _ in range(18)) + ":" + server_name


def build_event(
    room_version: RoomVersion | str,
    *,
    server_name: str,
    signing_key,
    room_id: str | None,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    state_key: str | None = None,
    prev_events: list,
    auth_events: list,
    depth: int,
    origin_server_ts: int,
    redacts: str | None = None,
    unsigned: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a complete, hashed and signed PDU (server-server "Adding hashes and
    signatures to outgoing events").

    * v1/v2: a random ``$opaque:server_name`` event ID; ``prev_events`` and
      ``auth_events`` become ``[id, {}]`` pairs (plain IDs accepted).
    * v3+: the event ID is the reference hash, added as convenience key ``event_id``.
    * v12 ``m.room.create``: ``room_id`` must be ``None`` and is omitted; the room ID
      is :func:`room_id_from_create_event` of the returned ``event_id``.
    * v1-v10 ``m.room.create`` without ``creator`` gets ``creator = sender``.
    * ``redacts`` is top-level for v1-v10 and ``content.redacts`` for v11+.
    * ``unsigned`` is attached after hashing/signing (it is not covered).
    """
    rv = get_room_version(room_version)
    content = dict(content)
    is_v12_create = rv.room_id_from_create_event and event_type == "m.room.create"
    if is_v12_create and room_id is not None:
        raise ValueError("v12 m.room.create events have no room_id")
    if not is_v12_create and room_id is None:
        raise ValueError("room_id is required")
    if event_type == "m.room.create" and not rv.implicit_room_creator:
        content.setdefault("creator", sender)
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": content,
        "origin_server_ts": origin_server_ts,
        "depth": depth,
        "prev_events": _reference_list(rv, prev_events),
        "auth_events": _reference_list(rv, auth_events),
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        if rv.redacts_in_content:
            content["redacts"] = redacts
        else:
            pdu["redacts"] = redacts
    if rv.event_id_in_pdu:
        pdu["event_id"] = _opaque_event_id(server_name)
    pdu = add_content_hash(pdu, rv)
    pdu = sign_event(pdu, server_name, signing_key, rv)
    if unsigned is not None:
        pdu["unsigned"] = dict(unsigned)
    if not rv.event_id_in_pdu:
        pdu["event_id"] = compute_event_id(pdu, rv)
    return pdu


def _check_str(event: dict, key: str, required: bool, max_bytes: int | None = MAX_ID_BYTES) -> None:
    if key not in event:
        if required:
            raise EventFormatError(f"missing required key {key!r}")
        return
    value = event[key]
    if not isinstance(value, str):
        raise EventFormatError(f"{key!r} must be a string")
    if max_bytes is not None and len(value.encode("utf-8")) > max_bytes:
        raise EventFormatError(f"{key!r} exceeds {max_bytes} bytes")


def _check_int(event: dict, key: str, lo: int, hi: int) -> None:
    value = event.get(key)
    if key not in event:
        raise EventFormatError(f"missing required key {key!r}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise EventFormatError(f"{key!r} must be an integer")
    if not lo <= value <= hi:
        raise EventFormatError(f"{key!r} out of range [{lo}, {hi}]")


def _check_refs(event: dict, key: str, rv: RoomVersion, limit: int) -> None:
    refs = event.get(key)
    if not isinstance(refs, list):
        raise EventFormatError(f"{key!r} must be a list")
    if len(refs) > limit:
        raise EventFormatError(f"{key!r} has more than {limit} entries")
    for ref in refs:
        if rv.event_id_in_pdu:
            ok = (
                isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], str)
                and isinstance(ref[1], dict)
            )
            eid = ref[0] if ok else None
        else:
            ok = isinstance(ref, str)
            eid = ref
        if not ok or not eid.startswith("$") or len(eid.encode("utf-8")) > MAX_ID_BYTES:
            raise EventFormatError(f"malformed entry in {key!r}: {ref!r}")


def _check_signatures_shape(event: dict) -> None:
    hashes = event.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        raise EventFormatError("'hashes' must be an object with a string 'sha256'")
    sigs = event.get("signatures")
    if not isinstance(sigs, dict):
        raise EventFormatError("'signatures' must be an object")
    for server, by_key in sigs.items():
        if not isinstance(by_key, dict) or not all(isinstance(v, str) for v in by_key.values()):
            raise EventFormatError(f"signatures of {server!r} must map key IDs to strings")


def validate_pdu(event: dict[str, Any], room_version: RoomVersion | str) -> bytes:
    """Check a PDU's format (room version "Event format", "Size limits"); raise
    ``EventFormatError`` naming the problem. Returns the PDU's canonical JSON (without the
    v3+ convenience ``event_id``), which its size was measured on: callers may store it.

    Checks required keys and types, 65536-byte canonical JSON size (without the
    v3+ convenience ``event_id``), 255-byte limits on ``sender``, ``room_id``,
    ``state_key``, ``type``, ``event_id``, ``depth`` range (2**63-1, v6+ 2**53-1),
    ``prev_events`` <= 20 and ``auth_events`` <= 10 entries, and canonical JSON
    number rules for v6+.
    """
    rv = get_room_version(room_version)
    if not isinstance(event, dict):
        raise EventFormatError("event must be a JSON object")
    _check_str(event, "type", True)
    _check_str(event, "sender", True)
    if not event["sender"].startswith("@") or ":" not in event["sender"]:
        raise EventFormatError("'sender' is not a user ID")
    v12_create = rv.room_id_from_create_event and event["type"] == "m.room.create"
    _check_str(event, "room_id", not v12_create)
    if "room_id" in event and not event["room_id"].startswith("!"):
        raise EventFormatError("'room_id' is not a room ID")
    _check_str(event, "state_key", False)
    _check_str(event, "event_id", rv.event_id_in_pdu)
    if "event_id" in event and not event["event_id"].startswith("$"):
        raise EventFormatError("'event_id' is not an event ID")
    if not isinstance(event.get("content"), dict):
        raise EventFormatError("'content' must be an object")
    _check_int(event, "origin_server_ts", -(2**63), 2**63 - 1)
    _check_int(event, "depth", 0, rv.max_depth)
    _check_refs(event, "prev_events", rv, MAX_PREV_EVENTS)
    _check_refs(event, "auth_events", rv, MAX_AUTH_EVENTS)
    _check_signatures_shape(event)
    if "unsigned" in event and not isinstance(event["unsigned"], dict):
        raise EventFormatError("'unsigned' must be an object")
    if "redacts" in event and not isinstance(event["redacts"], str):
        raise EventFormatError("'redacts' must be a string")
    pdu = event if rv.event_id_in_pdu else {k: v for k, v in event.items() if k != "event_id"}
    check_canonical_values(pdu, rv)
    encoded = encode_canonical_json(pdu, may_hold_floats=not rv.strict_canonical_json)
    if len(encoded) > MAX_PDU_SIZE:
        raise EventFormatError(f"event exceeds {MAX_PDU_SIZE} bytes as canonical JSON")
    return encoded

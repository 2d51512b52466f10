"""Content hashes, reference hashes and event IDs (server-server API "Signing
Events": "Calculating the content hash/reference hash for an event"; room version
fragments v1/v4 "Event IDs" and room v3 "Event IDs").

About the ``event_id`` key: for room versions 3+ the event ID is not part of the
PDU. :func:`homeserver.events.builder.build_event` nevertheless adds it to the
returned dict as a convenience; every function here (and in ``signing``) drops
``event_id`` before hashing/signing for v3+ events, and callers must strip it
(see :func:`strip_convenience_keys`) before sending a v3+ PDU over federation.
"""

from __future__ import annotations

import hashlib
from typing import Any

from unpaddedbase64 import decode_base64, encode_base64

from .canonical_json import encode_canonical_json
from .redaction import redacted_view
from .room_versions import EventFormat, RoomVersion, get_room_version


def _drop_convenience_event_id(event: dict[str, Any], rv: RoomVersion | None) -> dict[str, Any]:
    if "event_id" not in event:
        return event
    if rv is not None:
        drop = not rv.event_id_in_pdu
    else:
        # Without a room version: v1/v2 event IDs always contain a ':' (domain),
        # hash-derived (v3+) event IDs never do.
        eid = event["event_id"]
        drop = isinstance(eid, str) and ":" not in eid
    if not drop:
        return event
    return {k: v for k, v in event.items() if k != "event_id"}


def strip_convenience_keys(event: dict[str, Any], room_version: RoomVersion | str) -> dict[str, Any]:
    """Return a shallow copy of ``event`` fit to send over federation (drops the
    v3+ convenience ``event_id``)."""
    rv = get_room_version(room_version)
    out = dict(event)
    if not rv.event_id_in_pdu:
        out.pop("event_id", None)
    return out


def _content_hash_bytes(event: dict[str, Any], rv: RoomVersion | None) -> bytes:
    obj = {
        k: v
        for k, v in _drop_convenience_event_id(event, rv).items()
        if k not in ("unsigned", "signatures", "hashes")
    }
    return hashlib.sha256(encode_canonical_json(
        obj, may_hold_floats=rv is None or not rv.strict_canonical_json)).digest()


def compute_content_hash(event: dict[str, Any], room_version: RoomVersion | str | None = None) -> str:
    """Unpadded base64 SHA-256 content hash ("Calculating the content hash for an event").

    ``unsigned``, ``signatures`` and ``hashes`` are removed first. Pass
    ``room_version`` when known so the v3+ convenience ``event_id`` is dropped
    reliably (otherwise it is dropped when it has no ``:``).
    """
    rv = get_room_version(room_version) if room_version is not None else None
    return encode_base64(_content_hash_bytes(event, rv))


def add_content_hash(event: dict[str, Any], room_version: RoomVersion | str | None = None) -> dict[str, Any]:
    """Return a copy of ``event`` with ``hashes.sha256`` set to its content hash."""
    out = dict(event)
    hashes = dict(out.get("hashes") or {})
    hashes["sha256"] = compute_content_hash(event, room_version)
    out["hashes"] = hashes
    return out


def check_content_hash(event: dict[str, Any], room_version: RoomVersion | str | None = None) -> bool:
    """True iff ``hashes.sha256`` matches the content hash ("Validating hashes and
    signatures on received events"). Malformed hashes give ``False``."""
    hashes = event.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        return False
    try:
        expected = decode_base64(hashes["sha256"])
    except Exception:
        return False
    rv = get_room_version(room_version) if room_version is not None else None
    return expected == _content_hash_bytes(event, rv)


def reference_bytes(event: dict[str, Any], room_version: RoomVersion | str) -> bytes:
    """What the reference hash digests ("Calculating the reference hash for an event": the redacted
    event without ``signatures`` and ``unsigned``, as canonical JSON). It is also exactly what the
    event's signatures sign, so a receiver can encode it once for both."""
    rv = get_room_version(room_version)
    redacted = redacted_view(_drop_convenience_event_id(event, rv), rv)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return encode_canonical_json(redacted, may_hold_floats=not rv.strict_canonical_json)


def reference_hash(event: dict[str, Any], room_version: RoomVersion | str) -> bytes:
    """SHA-256 reference hash ("Calculating the reference hash for an event")."""
    return hashlib.sha256(reference_bytes(event, room_version)).digest()


def event_id_from_reference(reference: bytes, room_version: RoomVersion | str) -> str:
    """The v3+ event ID of an event whose :func:`reference_bytes` are ``reference``
    (v3: standard unpadded base64; v4+: URL-safe)."""
    rv = get_room_version(room_version)
    return "$" + encode_base64(hashlib.sha256(reference).digest(), urlsafe=rv.event_format is EventFormat.V4)


def compute_event_id(event: dict[str, Any], room_version: RoomVersion | str) -> str:
    """The event ID of ``event`` (room v1 "Event IDs", v3 and v4 "Event IDs").

    v1/v2: the PDU's own ``event_id``; v3 and later: from the reference hash.
    """
    rv = get_room_version(room_version)
    if rv.event_id_in_pdu:
        return event["event_id"]
    return event_id_from_reference(reference_bytes(event, rv), rv)


def event_id_of(event: dict[str, Any], room_version: RoomVersion | str) -> str:
    """The event's ID, trusting a present ``event_id`` key (also the v3+ convenience
    key) and computing it otherwise."""
    eid = event.get("event_id")
    if isinstance(eid, str):
        return eid
    return compute_event_id(event, room_version)

"""Pure Matrix event core: room versions, canonical JSON, hashing, redaction,
signing, PDU building/validation, authorisation rules and state resolution.

Plain-dict PDUs in, plain data out: no I/O, no database, no Twisted.
"""

from .auth_rules import auth_types_for_event, check_auth, check_auth_events, get_power_level
from .builder import build_event, event_id_list, room_id_from_create_event, validate_pdu
from .canonical_json import check_canonical_values, encode_canonical_json
from .errors import AuthError, EventFormatError, SignatureError
from .hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    reference_hash,
)
from .redaction import redact_event
from .room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS, RoomVersion
from .signing import required_signers, sign_event, verify_event_signatures
from .state_res import resolve_state

__all__ = [
    "AuthError", "EventFormatError", "SignatureError", "RoomVersion", "KNOWN_ROOM_VERSIONS",
    "DEFAULT_ROOM_VERSION", "encode_canonical_json", "check_canonical_values",
    "compute_content_hash", "add_content_hash", "check_content_hash", "reference_hash",
    "compute_event_id", "redact_event", "sign_event", "verify_event_signatures",
    "required_signers", "build_event", "validate_pdu", "event_id_list",
    "room_id_from_create_event", "auth_types_for_event", "check_auth", "check_auth_events",
    "get_power_level", "resolve_state",
]

"""Event signatures (server-server API "Signing Events", "Validating hashes and
signatures on received events"; appendices "Signing JSON", "Checking for a Signature").

The one JSON signing code of the tree (federation keys, events, end-to-end device keys), kept over
``signedjson`` because it signs the bytes of the one :func:`~.canonical_json.encode_canonical_json`
(``signedjson`` signs ``canonicaljson``'s, which differ on integral floats) and splits finding the
checks from the cryptography (:func:`signed_json_checks`, which federation verifies in a thread pool).
Measured by ``tests/bench/bench_primitives.py`` (CPython 3.11, best of 5, microseconds, ours / signedjson):

====================================  ===========  ===========
input                                 sign         verify
====================================  ===========  ===========
event, 1.1 KB                         30.2 / 27.1  52.9 / 48.9
device keys, 0.3 KB                   22.7 / 20.4  46.9 / 43.8
power levels of 2000 users, 70 KB     740 / 638    644 / 544
====================================  ===========  ===========

signedjson is faster by the canonical JSON's search for integral floats, the spec's number rule: with
``canonicaljson``'s encoder alone ours signs in 28.6, 21.8, 663 and verifies in 52.4, 46.6, 565.
ed25519 itself is 39 of the 47 to verify device keys.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from .canonical_json import encode_canonical_json
from .errors import EventFormatError, InvalidSignatureError, MissingSignatureError
from .hashing import _drop_convenience_event_id, add_content_hash, reference_bytes
from .redaction import redacted_view
from .room_versions import RoomVersion, get_room_version


def server_name_of(identifier: str) -> str:
    """The server name (domain) of a ``@user:domain``/``$event:domain``/``!room:domain`` ID."""
    if not isinstance(identifier, str) or ":" not in identifier:
        raise EventFormatError(f"identifier {identifier!r} has no server name")
    return identifier.split(":", 1)[1]


def signing_bytes(obj: dict[str, Any]) -> bytes:
    """Canonical JSON of ``obj`` without ``signatures`` and ``unsigned`` (appendices
    "Signing Details")."""
    return encode_canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def sign_json(obj: dict[str, Any], server_name: str, signing_key) -> dict[str, Any]:
    """Return a copy of ``obj`` with an added signature (appendices "Signing JSON"; as the spec's algorithm, an
    ``unsigned`` of null is not put back)."""
    alg = getattr(signing_key, "alg", "ed25519")
    key_id = f"{alg}:{signing_key.version}"
    sig = signing_key.sign(signing_bytes(obj)).signature
    out = {k: v for k, v in obj.items() if not (k == "unsigned" and v is None)}
    sigs = copy.deepcopy(obj.get("signatures") or {})
    sigs.setdefault(server_name, {})[key_id] = encode_base64(sig)
    out["signatures"] = sigs
    return out


def _redacted_for_signing(event: dict[str, Any], rv: RoomVersion) -> dict[str, Any]:
    return redacted_view(_drop_convenience_event_id(event, rv), rv)


def sign_event(event: dict[str, Any], server_name: str, signing_key, room_version: RoomVersion | str) -> dict[str, Any]:
    """Return a copy of ``event`` signed by ``server_name`` ("Adding hashes and
    signatures to outgoing events").

    If ``hashes.sha256`` is missing the content hash is added first. The signature
    covers the redacted form (so it survives redaction); existing signatures are kept.
    ``signing_key`` is a signedjson/nacl ``SigningKey`` with a ``version`` attribute.
    """
    rv = get_room_version(room_version)
    if not isinstance((event.get("hashes") or {}).get("sha256"), str):
        event = add_content_hash(event, rv)
    signed = sign_json(_redacted_for_signing(event, rv), server_name, signing_key)
    out = dict(event)
    sigs = copy.deepcopy(event.get("signatures") or {})
    sigs.setdefault(server_name, {}).update(signed["signatures"][server_name])
    out["signatures"] = sigs
    return out


def required_signers(event: dict[str, Any], room_version: RoomVersion | str) -> set[str]:
    """Servers that must have signed ``event`` ("Validating hashes and signatures").

    * the ``sender``'s server, except for invites made from a third-party invite
      (the sending server may differ; behaves like Synapse);
    * v1/v2: the server of the ``event_id``;
    * v8+: for joins with ``join_authorised_via_users_server``, that user's server
      (auth rule "join_authorised_via_users_server ... validly signed").
    """
    rv = get_room_version(room_version)
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    is_member = event.get("type") == "m.room.member"
    membership = content.get("membership")
    servers: set[str] = set()
    if not (is_member and membership == "invite" and "third_party_invite" in content):
        servers.add(server_name_of(event.get("sender")))
    if rv.event_id_in_pdu:
        servers.add(server_name_of(event.get("event_id")))
    authoriser = content.get("join_authorised_via_users_server")
    if rv.restricted_join_rule and is_member and membership == "join" and authoriser is not None:
        servers.add(server_name_of(authoriser))
    return servers


def _as_verify_key(key) -> VerifyKey:
    if isinstance(key, VerifyKey):
        return key
    if isinstance(key, (bytes, bytearray)):
        return VerifyKey(bytes(key))
    if hasattr(key, "verify"):
        return key
    raise TypeError(f"unsupported verify key {key!r}")


@dataclass(frozen=True)
class SignatureCheck:
    """One signature to verify: ``signature`` by ``server_name``'s key ``key_id`` over ``data``."""

    server_name: str
    key_id: str
    key: Any
    signature: bytes
    data: bytes

    def verify(self) -> None:
        """The cryptography alone (libsodium, which releases the GIL); raise InvalidSignatureError."""
        try:
            _as_verify_key(self.key).verify(self.data, self.signature)
        except (BadSignatureError, ValueError) as e:
            raise InvalidSignatureError(self.server_name, f"{self.key_id}: signature does not verify") from e


def signed_json_checks(obj: dict[str, Any], server_name: str, get_verify_key: Callable,
                       data: bytes | None = None) -> list[SignatureCheck]:
    """What checking that ``server_name`` signed ``obj`` takes (appendices "Checking for a Signature"),
    the cryptography left to :meth:`SignatureCheck.verify` of each.

    Signatures with unknown algorithms or keys (``get_verify_key`` returns ``None``) are
    skipped; at least one known key must be there (else MissingSignatureError), and every
    check returned must verify. ``data``: the :func:`signing_bytes` of ``obj`` when the
    caller has them already.
    """
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict):
        raise EventFormatError("'signatures' must be an object")
    server_sigs = sigs.get(server_name)
    if server_sigs is None:
        raise MissingSignatureError(server_name, "no signature from this server")
    if not isinstance(server_sigs, dict):
        raise EventFormatError(f"signatures of {server_name} must be an object")
    checks = []
    for key_id in sorted(server_sigs):
        if not key_id.startswith("ed25519:"):
            continue
        key = get_verify_key(server_name, key_id)
        if key is None:
            continue
        try:
            sig = decode_base64(server_sigs[key_id])
        except Exception as e:
            raise InvalidSignatureError(server_name, f"{key_id}: bad base64 ({e})") from e
        if data is None:
            data = signing_bytes(obj)
        checks.append(SignatureCheck(server_name, key_id, key, sig, data))
    if not checks:
        raise MissingSignatureError(server_name, "no signature with a known ed25519 key")
    return checks


def verify_signed_json(obj: dict[str, Any], server_name: str, get_verify_key: Callable,
                       data: bytes | None = None) -> None:
    """Check that ``server_name`` signed ``obj`` (appendices "Checking for a Signature"); see
    :func:`signed_json_checks`."""
    for check in signed_json_checks(obj, server_name, get_verify_key, data):
        check.verify()


def event_signature_checks(event: dict[str, Any], room_version: RoomVersion | str, get_verify_key: Callable,
                           reference: bytes | None = None) -> list[SignatureCheck]:
    """The signatures :func:`verify_event_signatures` verifies, without verifying them: raises
    ``EventFormatError`` or ``MissingSignatureError`` as it does, and each check returned must verify."""
    rv = get_room_version(room_version)
    if not isinstance(event, dict) or not isinstance(event.get("signatures"), dict):
        raise EventFormatError("event has no 'signatures' object")
    signed = {"signatures": event["signatures"]}
    data = reference if reference is not None else reference_bytes(event, rv)
    return [check for server in sorted(required_signers(event, rv))
            for check in signed_json_checks(signed, server, get_verify_key, data)]


def verify_event_signatures(event: dict[str, Any], room_version: RoomVersion | str, get_verify_key: Callable,
                            reference: bytes | None = None) -> None:
    """Verify the signatures of every :func:`required_signers` server on the redacted
    event ("Validating hashes and signatures on received events").

    ``get_verify_key(server_name, key_id)`` returns a nacl/signedjson ``VerifyKey``
    (or 32 raw bytes) or ``None`` when the key is unknown/expired (then skipped).
    ``reference``: the event's :func:`~.hashing.reference_bytes` if the caller computed
    them for its event ID (they are what the signatures sign).
    Raises ``EventFormatError`` for malformed input, else a ``SignatureError`` subclass.
    Does not check the content hash (see ``hashing.check_content_hash``).
    """
    for check in event_signature_checks(event, room_version, get_verify_key, reference):
        check.verify()

"""Checks on a received PDU that need no room state (server-server "Checks performed on receipt of a PDU").

1. Is a valid event (format, size) for the room version;
2. passes signature checks (keys fetched first, then verified synchronously);
3. passes hash checks: on a mismatch the event is redacted before use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from twisted.internet import defer

from homeserver.events.builder import validate_pdu
from homeserver.events.errors import EventFormatError, SignatureError
from homeserver.events.hashing import (check_content_hash, event_id_from_reference, reference_bytes,
                                       strip_convenience_keys)
from homeserver.events.redaction import redact_event
from homeserver.events.policy_servers import POLICY_KEY_ID
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import event_signature_checks, required_signers

logger = logging.getLogger(__name__)

PARALLEL_BATCH = 64  # from this many PDUs, checking them on two worker threads beats the reactor thread alone


class PduRejected(Exception):
    """A PDU that failed a check; ``reason`` goes into the per-PDU result and the log, ``kind`` (which check
    failed: a short, fixed word) keys the rejection counter."""

    def __init__(self, reason: str, kind: str = "format"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class Reason(str):
    """Why :func:`check_signatures_and_hashes` refused a PDU (the text), with ``kind`` as in PduRejected."""

    kind: str

    def __new__(cls, text: str, kind: str) -> "Reason":
        reason = super().__new__(cls, text)
        reason.kind = kind
        return reason


@dataclass
class Encodings:
    """Canonical JSON already computed for received PDUs, by event id, so that no PDU is encoded twice."""

    reference: dict[str, bytes] = field(default_factory=dict)  # what its event id and signatures cover
    whole: dict[str, bytes] = field(default_factory=dict)  # the whole PDU: its size, and its stored form


def normalise_pdu(pdu: dict, version: RoomVersion, encodings: Encodings | None = None) -> dict:
    """The PDU with its event id as a convenience key (computed for v3+, never trusted from the sender).
    ``encodings`` keeps the reference bytes it computed, for :func:`check_signatures_and_hashes`."""
    if not isinstance(pdu, dict):
        raise PduRejected("PDU is not an object")
    clean = strip_convenience_keys(pdu, version)
    if version.event_id_in_pdu:
        if not isinstance(clean.get("event_id"), str):
            raise PduRejected("cannot compute event id: no event_id")
        return clean
    try:
        reference = reference_bytes(clean, version)
    except Exception as e:
        raise PduRejected(f"cannot compute event id: {e}")
    clean["event_id"] = event_id_from_reference(reference, version)
    if encodings is not None:
        encodings.reference[clean["event_id"]] = reference
    return clean


async def check_signatures_and_hashes(pdus: list[dict], version: RoomVersion, key_fetcher, threads,
                                      encodings: Encodings | None = None) -> tuple[list[dict], dict]:
    """Steps 1-3 for a batch. Returns (accepted PDUs, possibly redacted; {event_id: reason} rejections).
    ``threads`` (:class:`homeserver.worker_threads.WorkerThreads`) checks batches of PARALLEL_BATCH or more.
    ``encodings``: what :func:`normalise_pdu` encoded is used, and each accepted PDU's whole
    canonical JSON is added (unless it was redacted)."""
    encodings = encodings if encodings is not None else Encodings()
    stamps: dict[tuple[str, str], set[int]] = {}  # the times each key must be valid at (room v5+)
    for pdu in pdus:
        ts = pdu.get("origin_server_ts", 0) if version.enforce_key_validity else 0
        signatures = pdu.get("signatures")
        for server in _signers(pdu, version) if isinstance(signatures, dict) else ():
            for key_id in (signatures.get(server) or {}):
                if key_id == POLICY_KEY_ID:  # a policy server's, checked against m.room.policy's key only
                    continue
                stamps.setdefault((server, key_id), set()).add(ts if isinstance(ts, int) else 0)
    keys = {signer: await _key_and_horizon(key_fetcher, *signer, sorted(times)) for signer, times in stamps.items()}

    if len(pdus) < PARALLEL_BATCH:
        outcomes = _verify_each(_prepare_each(pdus, version, keys, encodings.reference))
    else:  # the Python on a worker thread, then the cryptography (libsodium releases the GIL) on two
        prepared = await threads.run(_prepare_each, pdus, version, keys, encodings.reference)
        middle = (len(prepared) + 1) // 2
        halves = await defer.gatherResults([threads.run(_verify_each, part)
                                            for part in (prepared[:middle], prepared[middle:])], consumeErrors=True)
        outcomes = halves[0] + halves[1]
    accepted, rejected = [], {}
    for pdu, whole, reason in outcomes:
        if reason is not None:
            rejected[pdu.get("event_id", "?")] = reason
            continue
        if whole is not None:
            encodings.whole[pdu["event_id"]] = whole
        accepted.append(pdu)
    return accepted, rejected


async def _key_and_horizon(key_fetcher, server: str, key_id: str, stamps: list[int]) -> tuple[object, int]:
    """The key and the latest of ``stamps`` (ascending) it is valid at, found with as few lookups as
    the stamps need (one when the key is valid at them all); (None, -1) when there is no such key."""
    found: tuple[object, int] = (None, -1)
    low, high = 0, len(stamps) - 1
    probe = high  # the latest first: usually every event falls within the key's validity
    while low <= high:
        try:
            found = (await key_fetcher.get_verify_key(server, key_id, stamps[probe]), stamps[probe])
            low = probe + 1
        except Exception as e:  # unreachable server, bad key response, or not valid that late
            logger.info("No key %s of %s valid at %d: %s", key_id, server, stamps[probe], e)
            high = probe - 1
        probe = (low + high) // 2
    return found


def _prepare_each(pdus: list[dict], version: RoomVersion, keys: dict[tuple[str, str], tuple[object, int]],
                  references: dict[str, bytes]) -> list[tuple]:
    """Format, content hash, and the signature checks of each PDU short of their cryptography (pure: safe
    on a worker thread). One (PDU, its canonical JSON or None, rejection reason or None, signature checks)
    per PDU, in order; a PDU whose content hash does not match comes back redacted, without its encoding.
    A key counts for an event only if it is valid at the event's time (``keys``: key and latest valid time)."""
    outcomes = []
    for pdu in pdus:
        eid = pdu.get("event_id", "?")
        ts = pdu.get("origin_server_ts", 0) if version.enforce_key_validity else 0

        def lookup(server: str, key_id: str):
            key, horizon = keys.get((server, key_id), (None, -1))
            return key if isinstance(ts, int) and ts <= horizon else None

        try:
            whole = validate_pdu(pdu, version)
            checks = event_signature_checks(pdu, version, lookup, references.get(eid))
        except (EventFormatError, SignatureError) as e:
            kind = "format" if isinstance(e, EventFormatError) else "signature"
            outcomes.append((pdu, None, Reason(str(e) or e.__class__.__name__, kind), ()))
            continue
        if check_content_hash(pdu, version):
            outcomes.append((pdu, whole, None, checks))
        else:
            logger.info("Content hash mismatch on %s: redacting", eid)
            redacted = redact_event(pdu, version)
            redacted["event_id"] = eid
            outcomes.append((redacted, None, None, checks))
    return outcomes


def _verify_each(prepared: list[tuple]) -> list[tuple]:
    """The signature cryptography of :func:`_prepare_each`'s outcomes: (PDU, canonical JSON or None,
    rejection reason or None) each."""
    outcomes = []
    for pdu, whole, reason, checks in prepared:
        try:
            for check in checks:
                check.verify()
        except SignatureError as e:
            whole, reason = None, Reason(str(e) or e.__class__.__name__, "signature")
        outcomes.append((pdu, whole, reason))
    return outcomes


def _signers(pdu: dict, version: RoomVersion) -> set[str]:
    try:
        return set(required_signers(pdu, version))
    except Exception:
        return set()

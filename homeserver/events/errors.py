"""Exceptions raised by the pure event core (``homeserver.events``)."""

from __future__ import annotations


class EventFormatError(ValueError):
    """An event has the wrong shape, is too large, or is not canonical JSON.

    Corresponds to failing check 1 of "Checks performed on receipt of a PDU"
    (server-server API): such events are dropped, not rejected.
    """


class AuthError(Exception):
    """An event failed the authorisation rules of its room version.

    ``rule`` is a stable, version-independent rule name such as
    ``"member.join.banned"`` (see ``homeserver.events.auth_rules`` for the list);
    ``reason`` is a human-readable explanation.
    """

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"[{rule}] {reason}")
        self.rule = rule
        self.reason = reason


class SignatureError(Exception):
    """Base class for signature verification failures (spec: "Checking for a Signature")."""

    def __init__(self, server_name: str, reason: str) -> None:
        super().__init__(f"{server_name}: {reason}")
        self.server_name = server_name
        self.reason = reason


class MissingSignatureError(SignatureError):
    """A required server has no signature (at all, or with a known key) on the event."""


class InvalidSignatureError(SignatureError):
    """A signature made with a known key does not verify (or is not valid base64)."""

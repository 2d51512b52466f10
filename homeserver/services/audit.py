"""The audit trail of security events: who did what to whom, from where, when.

``record(kind, actor, target, origin, details)`` appends one row (``homeserver/storage/audit.py``, never
updated or deleted): ``actor`` a user ID or server name, ``target`` what was acted on, ``origin`` the client
IP or the remote server. Nothing secret is ever stored: any detail whose name says password, token, secret,
key, mac or signature is dropped before the write, whatever the caller passed. Kinds are listed in
:data:`KINDS`; the media repository calls :meth:`AuditLog.media_infected` for an infected file it refuses.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer


logger = logging.getLogger(__name__)

KINDS = (
    "login", "login_failed", "logout", "registration", "password_change", "device_delete", "deactivate",
    "admin_action", "config_reload", "federation_refused", "event_rejected", "media_infected",
    "access_rule_denied", "content_report",
)
_SECRET_WORDS = ("password", "token", "secret", "key", "mac", "signature", "nonce")
MAX_DETAIL_TEXT = 500


def scrub(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` without anything secret-looking (by name), texts bounded; nested mappings too."""
    clean: dict[str, Any] = {}
    for name, value in details.items():
        if any(word in str(name).lower() for word in _SECRET_WORDS):
            continue
        if isinstance(value, dict):
            value = scrub(value)
        elif isinstance(value, str):
            value = value[:MAX_DETAIL_TEXT]
        clean[str(name)] = value
    return clean


@dataclass(frozen=True)
class AuditQuery:
    """Filters of a read (each None: any), newest first from ``before_id`` (None: the newest)."""

    kind: str | None = None
    actor: str | None = None
    target: str | None = None
    origin: str | None = None
    since_ts: int | None = None
    until_ts: int | None = None
    before_id: int | None = None
    limit: int = 100


class AuditLog:
    def __init__(self, *, store, clock):
        self._store = store
        self._clock = clock
        self._ids = itertools.count(store.max_id_sync() + 1)

    async def record(self, kind: str, actor: str | None = None, target: str | None = None,
                     origin: str | None = None, details: dict[str, Any] | None = None) -> None:
        """Append one security event; returns once it is committed."""
        await self._store.append(next(self._ids), int(self._clock.seconds() * 1000), kind, actor, target, origin,
                                 scrub(details or {}))

    async def media_infected(self, uploader: str | None, media_id: str, origin: str | None, virus: str) -> None:
        """The media repository's hook: an upload (or remote fetch) refused because the scanner found ``virus``."""
        await self.record("media_infected", uploader, media_id, origin, {"virus": virus})

    def note(self, kind: str, actor: str | None = None, target: str | None = None, origin: str | None = None,
             details: dict[str, Any] | None = None) -> None:
        """:meth:`record` from code that cannot wait (a refusal being answered); a failed write is logged."""
        d = defer.ensureDeferred(self.record(kind, actor, target, origin, details))
        d.addErrback(lambda f: logger.error("Audit event %s not stored: %s", kind, f.getErrorMessage()))

    async def query(self, query: AuditQuery) -> list[dict]:
        return await self._store.query(query)

"""What other servers send that is refused (spec server-server "Checks performed on receipt of a PDU", and
the EDUs a server may send): each counted by reason, for the metrics to come, and logged with its origin."""

from __future__ import annotations

import logging
from typing import Callable

from homeserver.metrics import Counter

logger = logging.getLogger(__name__)

MAX_LOGGED = 300  # characters of an event id or reason in a log line


def _safe(text: str) -> str:
    """Remote text as it may go into one log line: printable (a newline could forge another line), bounded."""
    return (text if text.isprintable() else repr(text))[:MAX_LOGGED]


class FederationRejections:
    """One log line per refused PDU or EDU, naming the server that sent it and ending with the reason's count."""

    def __init__(self, counter: Counter, audit: Callable[..., None] | None = None):
        self.counter = counter
        self._audit = audit  # AuditLog.note: refused PDUs go to the audit trail too

    def pdu(self, origin: str, event_id: str | None, reason: str, kind: str) -> None:
        count = self.counter.inc(kind)
        logger.info("rejected PDU %s from %s: %s [%s #%d]", _safe(event_id or "(no event id)"), origin, _safe(reason),
                    kind, count)
        if self._audit is not None:
            self._audit("event_rejected", origin, event_id, origin, {"reason": reason, "kind": kind})

    def soft_failed(self, origin: str, event_id: str, reason: str = "the current state forbids it") -> None:
        """Step 6 (or the room's policy server): accepted but kept out of the timeline and the forward
        extremities."""
        count = self.counter.inc("soft_failed")
        logger.info("soft-failed PDU %s from %s: %s [soft_failed #%d]", event_id, origin, reason, count)

    def edu(self, origin: str, edu_type: str, reason: str, kind: str) -> None:
        count = self.counter.inc(kind)
        logger.info("rejected EDU %s from %s: %s [%s #%d]", _safe(edu_type), origin, _safe(reason), kind, count)

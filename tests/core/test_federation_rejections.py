"""The rejection counter and its log lines (issue 13: each refused PDU or EDU counted and logged)."""

from __future__ import annotations

import logging

from hypothesis import given, strategies as st

from federation.rejections import MAX_LOGGED, FederationRejections
from homeserver.metrics import Counter


def test_counts_by_reason_and_logs_the_origin(caplog):
    rejections = FederationRejections(Counter("federation_rejected", "reason"))
    with caplog.at_level(logging.INFO, logger="federation.rejections"):
        rejections.pdu("evil.example", "$a", "bad signature", "signature")
        rejections.pdu("evil.example", None, "not an object", "format")
        rejections.pdu("other.example", "$b", "bad signature", "signature")
        rejections.soft_failed("evil.example", "$c")
        rejections.edu("evil.example", "m.typing", "@x:elsewhere is not its user", "edu_invalid")
    assert rejections.counter.snapshot() == {"signature": 2, "format": 1, "soft_failed": 1, "edu_invalid": 1}
    assert caplog.messages == [
        "rejected PDU $a from evil.example: bad signature [signature #1]",
        "rejected PDU (no event id) from evil.example: not an object [format #1]",
        "rejected PDU $b from other.example: bad signature [signature #2]",
        "soft-failed PDU $c from evil.example: the current state forbids it [soft_failed #1]",
        "rejected EDU m.typing from evil.example: @x:elsewhere is not its user [edu_invalid #1]",
    ]


@given(event_id=st.text(), reason=st.text())
def test_remote_text_never_forges_or_floods_a_log_line(event_id, reason):
    """Whatever a server puts in an event id or reason, the line stays one printable line of bounded size."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("federation.rejections")
    logger.addHandler(handler)
    old_level, logger.level = logger.level, logging.INFO
    try:
        FederationRejections(Counter("c", "reason")).pdu("evil.example", event_id, reason, "format")
    finally:
        logger.removeHandler(handler)
        logger.level = old_level
    line = records[0].getMessage()
    assert line.isprintable()
    assert len(line) <= 2 * MAX_LOGGED + len("rejected PDU  from evil.example:  [format #1]")

"""Hypothesis strategies for malformed federation transactions (PUT /_matrix/federation/v1/send/{txnId}).

A case starts from a well-formed PDU a real peer could send in a real room (built and signed with the
peer's key), then breaks it: fields of the wrong type or missing, the shapes of other room versions,
random or deeply nested content, an oversize PDU; the result is signed again or not (a broken
signature); the transaction around it may be broken too. The body is then encoded as bytes, possibly
with duplicate keys, invalid UTF-8 or nesting deeper than any parser's limit.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import strategies as st

from homeserver.events.builder import MAX_PDU_SIZE
from homeserver.events.hashing import add_content_hash, compute_event_id
from homeserver.events.signing import sign_event

PDU_KEYS = ("type", "room_id", "sender", "content", "prev_events", "auth_events", "depth", "origin_server_ts",
            "state_key", "hashes", "signatures", "redacts", "unsigned", "origin", "event_id")

json_scalars = st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
# Shapes that are valid in some room version, or nearly valid: event references as [id, hashes] pairs
# (v1/v2), bare ids (v3+), ids of the wrong sigil, too many of them.
other_shapes = st.sampled_from([
    [["$abc:example.org", {"sha256": "x"}]], ["$abc:example.org"], [["$abc"]], ["!room:example.org"], [""],
    ["$" + "a" * 300], ["$x"] * 30, [{"event_id": "$x"}], "$abc", {"$abc": {}},
    "!not-a-room", "@user", "@user:bad host", "", "x" * 300, 2 ** 63, -1, 1.5,
])
field_values = json_values | other_shapes


@dataclass(frozen=True)
class Malformed:
    """One transaction body as bytes, and what was done to it (for the failure message)."""

    body: bytes
    how: str


def deeply_nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def broken_pdu(draw, base: dict, version, server_name: str, signing_key) -> tuple[dict, list[str]]:
    pdu, how = copy.deepcopy(base), []
    for key in draw(st.lists(st.sampled_from(PDU_KEYS), unique=True, max_size=4)):
        if draw(st.booleans()) and key in pdu:
            del pdu[key]
            how.append(f"no {key}")
        else:
            pdu[key] = draw(field_values)
            how.append(f"{key}={pdu[key]!r:.60}")
    if draw(st.integers(0, 5)) == 0:
        pdu["content"] = {"body": "x" * (MAX_PDU_SIZE + draw(st.integers(-200, 200)))}
        how.append("oversize")
    if draw(st.booleans()):
        try:
            pdu.pop("signatures", None)
            pdu = sign_event(add_content_hash(pdu, version), server_name, signing_key, version)
            if not version.event_id_in_pdu:
                pdu["event_id"] = compute_event_id(pdu, version)
            how.append("re-signed")
        except Exception:  # the broken PDU cannot even be signed: send it as it is
            how.append("unsignable")
    return pdu, how


@st.composite
def malformed_transaction(draw, base: Callable[[], dict], version, server_name: str, signing_key) -> Malformed:
    """A transaction from ``server_name`` holding broken variants of ``base()`` (a fresh well-formed PDU)."""
    pdus, how = [], []
    for _ in range(draw(st.integers(1, 3))):
        pdu, changes = draw(broken_pdu(base(), version, server_name, signing_key))
        pdus.append(pdu)
        how.append(",".join(changes) or "intact")
    body: dict[str, Any] = {"origin": server_name, "origin_server_ts": 1, "pdus": pdus}
    envelope = draw(st.sampled_from(["ok", "ok", "ok", "pdus not a list", "edus junk", "origin type",
                                     "too many pdus", "no pdus"]))
    if envelope == "pdus not a list":
        body["pdus"] = {"0": pdus[0]}
    elif envelope == "edus junk":
        body["edus"] = draw(st.lists(json_values, max_size=3))
    elif envelope == "origin type":
        body["origin"] = draw(field_values)
    elif envelope == "too many pdus":
        body["pdus"] = pdus * 60
    elif envelope == "no pdus":
        del body["pdus"]
    text = json.dumps(body)
    encoding = draw(st.sampled_from(["plain", "plain", "duplicate keys", "invalid utf-8", "lone surrogate",
                                     "deep nesting"]))
    if encoding == "duplicate keys":
        text = text.replace('"pdus": ', '"pdus": [], "pdus": ', 1).replace('"type": ', '"type": 1, "type": ', 1)
    elif encoding == "lone surrogate":
        text = text.replace('"sender": "', '"sender": "\\ud800', 1)
    elif encoding == "deep nesting":
        text = text[:-1] + ', "deep": ' + deeply_nested(draw(st.sampled_from([100, 1000, 100_000]))) + "}"
    raw = text.encode()
    if encoding == "invalid utf-8":
        raw = raw.replace(b'"sender": "', b'"sender": "\xff\xfe', 1)
    return Malformed(raw, f"{envelope}, {encoding}; PDUs: " + " | ".join(how))

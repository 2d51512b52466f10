"""Spec test vectors: appendices "Canonical JSON" examples, "Cryptographic Test Vectors"."""

import copy
import json

import canonicaljson
import pytest
import signedjson.sign
from hypothesis import example, given, settings
from hypothesis import strategies as st
from signedjson.key import decode_signing_key_base64, get_verify_key
from unpaddedbase64 import encode_base64

from homeserver.events.canonical_json import decode_json, encode_canonical_json
from homeserver.events.errors import EventFormatError
from homeserver.events.hashing import check_content_hash, compute_content_hash
from homeserver.events.signing import sign_event, sign_json, verify_event_signatures, verify_signed_json
from homeserver.services.e2e_keys import signature_valid

SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
KEY = decode_signing_key_base64("ed25519", "1", SEED)


def lookup(server, key_id):
    return KEY.verify_key if (server, key_id) == ("domain", "ed25519:1") else None


CANONICAL_CASES = [
    ("{}", "{}"),
    ('{"one": 1, "two": "Two"}', '{"one":1,"two":"Two"}'),
    ('{"b": "2", "a": "1"}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        '{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe",'
        ' "three_pids": [{"medium": "email", "address": "john.doe@example.org"},'
        ' {"medium": "msisdn", "address": "123456789"}]}}}',
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        '"success":true}}',
    ),
    ('{"a": "日本語"}', '{"a":"日本語"}'),
    ('{"本": 2, "日": 1}', '{"日":1,"本":2}'),
    ('{"a": "\\u65E5"}', '{"a":"日"}'),
    ('{"a": null}', '{"a":null}'),
    ('{"a": -0, "b": 1e10}', '{"a":0,"b":10000000000}'),
]


@pytest.mark.parametrize("given,expected", CANONICAL_CASES)
def test_canonical_json_examples(given, expected):
    assert encode_canonical_json(json.loads(given)) == expected.encode("utf-8")


def test_canonical_json_control_characters_escaped():
    assert encode_canonical_json({"a": "\x01\n\"\\"}) == b'{"a":"\\u0001\\n\\"\\\\"}'


def test_decode_json_rejects_nan_and_duplicates():
    with pytest.raises(EventFormatError):
        decode_json('{"a": NaN}')
    with pytest.raises(EventFormatError):
        decode_json('{"a": 1, "a": 2}')
    assert decode_json(b'{"a": [1, "x"]}') == {"a": [1, "x"]}


def test_json_signing_empty_object():
    assert sign_json({}, "domain", KEY) == {
        "signatures": {"domain": {"ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}
    }


def test_json_signing_with_data():
    signed = sign_json({"one": 1, "two": "Two"}, "domain", KEY)
    assert signed == {
        "one": 1,
        "signatures": {"domain": {"ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},
        "two": "Two",
    }
    verify_signed_json(signed, "domain", lookup)


MINIMAL_EVENT = {
    "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain", "origin_server_ts": 1000000,
    "signatures": {}, "hashes": {}, "type": "X", "content": {}, "prev_events": [], "auth_events": [],
    "depth": 3, "unsigned": {"age_ts": 1000000},
}

REDACTABLE_EVENT = {
    "content": {"body": "Here is the message content"}, "event_id": "$0:domain", "origin": "domain",
    "origin_server_ts": 1000000, "type": "m.room.message", "room_id": "!r:domain", "sender": "@u:domain",
    "signatures": {}, "unsigned": {"age_ts": 1000000},
}


def test_event_signing_minimal_event():
    signed = sign_event(MINIMAL_EVENT, "domain", KEY, "1")
    assert signed == {
        "auth_events": [], "content": {}, "depth": 3,
        "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
        "origin": "domain", "origin_server_ts": 1000000, "prev_events": [], "room_id": "!x:domain",
        "sender": "@a:domain",
        "signatures": {"domain": {"ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
        "type": "X", "unsigned": {"age_ts": 1000000},
    }
    assert check_content_hash(signed)


def test_event_signing_redactable_event():
    signed = sign_event(REDACTABLE_EVENT, "domain", KEY, "1")
    assert signed["hashes"] == {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"}
    assert signed["signatures"] == {
        "domain": {"ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"}
    }
    assert signed["content"] == REDACTABLE_EVENT["content"]
    # The signature covers the redacted form, so it still verifies after redaction.
    verify_event_signatures(signed, "1", lookup)
    from homeserver.events.redaction import redact_event
    verify_event_signatures(redact_event(signed, "1"), "1", lookup)


def test_content_hash_vectors():
    assert compute_content_hash(MINIMAL_EVENT) == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
    assert compute_content_hash(REDACTABLE_EVENT) == "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
    assert compute_content_hash(REDACTABLE_EVENT, "1") == "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"


def test_key_server_example_signature_verifies_shape():
    # appendices "Signing Details" example object: signature covers everything
    # except "signatures"/"unsigned"; changing unsigned must not matter.
    signed = sign_json({"name": "example.org", "unsigned": {"age_ts": 1}}, "domain", KEY)
    signed["unsigned"] = {"age_ts": 2}
    verify_signed_json(signed, "domain", lookup)


# --- The one canonical JSON and the one signing code against the libraries (canonicaljson, signedjson) ---

_LIBRARY_FAILS = {'{"a": -0, "b": 1e10}'}  # 1e10 parses to a float: the library writes 10000000000.0


@pytest.mark.parametrize("given,expected", CANONICAL_CASES)
def test_canonical_json_examples_same_as_library(given, expected):
    """Ours gives the library's bytes on every spec example but the integral float, where only ours is right."""
    ours, library = encode_canonical_json(json.loads(given)), canonicaljson.encode_canonical_json(json.loads(given))
    assert ours == expected.encode("utf-8")
    assert (library == ours) is (given not in _LIBRARY_FAILS)


_CANONICAL_INT = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
_CANONICAL_JSON = st.recursive(
    st.none() | st.booleans() | _CANONICAL_INT | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(_CANONICAL_JSON)
def test_canonical_json_same_bytes_as_library(value):
    """Any JSON within the spec's constraints (appendices "Canonical JSON": integers in
    [-(2**53)+1, 2**53-1], no floats) encodes to the library's bytes, and decodes back to itself."""
    encoded = encode_canonical_json(value)
    assert encoded == canonicaljson.encode_canonical_json(value)
    assert encode_canonical_json(value, may_hold_floats=False) == encoded
    assert decode_json(encoded) == value


@pytest.mark.parametrize("obj", [{}, {"one": 1, "two": "Two"}])
def test_json_signing_examples_same_as_signedjson(obj):
    """appendices "Signing JSON" examples: signedjson signs them as ours does, and each verifies the other's."""
    ours = sign_json(obj, "domain", KEY)
    library = signedjson.sign.sign_json(copy.deepcopy(obj), "domain", KEY)
    assert ours == library
    signedjson.sign.verify_signed_json(ours, "domain", get_verify_key(KEY))
    verify_signed_json(library, "domain", lookup)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), _CANONICAL_JSON, max_size=5))
@example({"unsigned": None})  # found by hypothesis in a CI run: a null unsigned is not put back
def test_json_signing_same_as_signedjson(obj):
    obj.pop("signatures", None)
    ours = sign_json(obj, "domain", KEY)
    assert ours == signedjson.sign.sign_json(copy.deepcopy(obj), "domain", KEY)
    signedjson.sign.verify_signed_json(copy.deepcopy(ours), "domain", get_verify_key(KEY))
    verify_signed_json(ours, "domain", lookup)


def test_device_key_signature_check():
    """services.e2e_keys.signature_valid (ours) accepts what signedjson signs, and nothing else."""
    public = encode_base64(KEY.verify_key.encode())
    device = signedjson.sign.sign_json({"user_id": "@a:domain", "device_id": "D", "keys": {}}, "@a:domain", KEY)
    assert signature_valid(device, "@a:domain", "ed25519:1", public)
    assert not signature_valid(device, "@a:domain", "ed25519:2", public)
    assert not signature_valid(device, "@b:domain", "ed25519:1", public)
    assert not signature_valid(dict(device, device_id="E"), "@a:domain", "ed25519:1", public)
    assert not signature_valid(device, "@a:domain", "ed25519:1", "not base64!")
    assert not signature_valid(dict(device, signatures={"@a:domain": "x"}), "@a:domain", "ed25519:1", public)

"""Redaction, hashing, event IDs, building/validation, signing, client format."""

import copy
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.builder import (
    build_event,
    event_id_list,
    room_id_from_create_event,
    validate_pdu,
)
from homeserver.events.canonical_json import (_canonical_values, _has_float, _raise_first_bad_value,
                                              check_canonical_values, encode_canonical_json)
from homeserver.events.client_format import to_client_event
from homeserver.events.errors import EventFormatError, InvalidSignatureError, MissingSignatureError, SignatureError
from homeserver.events.hashing import (
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    event_id_from_reference,
    reference_bytes,
    reference_hash,
    strip_convenience_keys,
)
from homeserver.events.redaction import redact_event, redacted_view
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS
from homeserver.events.signing import event_signature_checks, required_signers, sign_event, verify_event_signatures

from .roomkit import key_for, verify_key_lookup

ALL = [str(v) for v in range(1, 13)]


def make(v, etype="m.room.message", content=None, state_key=None, room_id="!r:a.test", sender="@u:a.test", **kw):
    return build_event(
        v, server_name=sender.split(":", 1)[1], signing_key=key_for(sender.split(":", 1)[1]), room_id=room_id,
        sender=sender, event_type=etype, content=content if content is not None else {"body": "hi"},
        state_key=state_key, prev_events=kw.pop("prev_events", ["$p:a.test" if v in "12" else "$prev"]),
        auth_events=kw.pop("auth_events", []), depth=kw.pop("depth", 5),
        origin_server_ts=kw.pop("origin_server_ts", 1234), **kw)


def test_room_versions_table():
    assert set(KNOWN_ROOM_VERSIONS) == set(ALL) and DEFAULT_ROOM_VERSION == "12"
    rv = KNOWN_ROOM_VERSIONS
    assert rv["1"].state_res.value == "v1" and rv["2"].state_res.value == "v2" and rv["12"].state_res.value == "v2.1"
    assert [v for v in ALL if rv[v].knock] == [str(i) for i in range(7, 13)]
    assert [v for v in ALL if rv[v].restricted_join_rule] == [str(i) for i in range(8, 13)]
    assert rv["10"].enforce_int_power_levels and not rv["9"].enforce_int_power_levels
    assert rv["12"].creators_infinite_power and rv["12"].room_id_from_create_event
    assert not rv["11"].creators_infinite_power


# ---------------------------------------------------------------- redaction


def test_redaction_per_version():
    member = {"type": "m.room.member", "state_key": "@u:a", "sender": "@u:a", "room_id": "!r:a",
              "content": {"membership": "join", "displayname": "U", "join_authorised_via_users_server": "@x:a",
                          "third_party_invite": {"signed": {"mxid": "@u:a"}, "display_name": "d"}},
              "origin": "a", "membership": "join", "prev_state": [], "unsigned": {"age": 1}, "extra": 1}
    r1 = redact_event(member, "1")
    assert r1["content"] == {"membership": "join"}
    assert "origin" in r1 and "membership" in r1 and "unsigned" not in r1 and "extra" not in r1
    assert redact_event(member, "9")["content"] == {"membership": "join", "join_authorised_via_users_server": "@x:a"}
    r11 = redact_event(member, "11")
    assert r11["content"] == {"membership": "join", "join_authorised_via_users_server": "@x:a",
                              "third_party_invite": {"signed": {"mxid": "@u:a"}}}
    assert "origin" not in r11 and "membership" not in r11 and "prev_state" not in r11
    create = {"type": "m.room.create", "content": {"creator": "@u:a", "room_version": "1", "m.federate": False}}
    assert redact_event(create, "10")["content"] == {"creator": "@u:a"}
    assert redact_event(create, "11")["content"] == create["content"]
    jr = {"type": "m.room.join_rules", "content": {"join_rule": "restricted", "allow": [], "x": 1}}
    assert redact_event(jr, "8")["content"] == {"join_rule": "restricted"}
    assert redact_event(jr, "9")["content"] == {"join_rule": "restricted", "allow": []}
    pl = {"type": "m.room.power_levels", "content": {"ban": 1, "invite": 2, "notifications": {}, "users": {}}}
    assert redact_event(pl, "10")["content"] == {"ban": 1, "users": {}}
    assert redact_event(pl, "11")["content"] == {"ban": 1, "invite": 2, "users": {}}
    aliases = {"type": "m.room.aliases", "content": {"aliases": ["#a:a"]}}
    assert redact_event(aliases, "5")["content"] == {"aliases": ["#a:a"]}
    assert redact_event(aliases, "6")["content"] == {}
    red = {"type": "m.room.redaction", "redacts": "$x", "content": {"redacts": "$x", "reason": "r"}}
    assert redact_event(red, "10") == {"type": "m.room.redaction", "content": {}}
    assert redact_event(red, "11") == {"type": "m.room.redaction", "content": {"redacts": "$x"}}
    hv = {"type": "m.room.history_visibility", "content": {"history_visibility": "shared", "x": 1}}
    assert redact_event(hv, "3")["content"] == {"history_visibility": "shared"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(v=st.sampled_from(ALL), etype=st.sampled_from(["m.room.member", "m.room.create", "m.room.power_levels",
                                                        "m.room.join_rules", "m.room.message", "m.room.redaction"]),
       content=st.dictionaries(st.sampled_from(["membership", "creator", "ban", "users", "join_rule", "allow",
                                                "body", "redacts", "third_party_invite"]), json_values, max_size=5),
       extra=st.dictionaries(st.text(max_size=6), json_values, max_size=3))
def test_redaction_idempotent(v, etype, content, extra):
    event = {**extra, "type": etype, "content": content, "sender": "@u:a", "room_id": "!r:a"}
    once = redact_event(event, v)
    assert redact_event(once, v) == once
    assert redacted_view(event, v) == once  # the shared-values form hashing and signing encode
    assert event["content"] == content  # input not mutated


@settings(max_examples=80, deadline=None)
@given(value=json_values)
def test_canonical_json_round_trip(value):
    encoded = encode_canonical_json(value)
    assert json.loads(encoded) == value
    assert encode_canonical_json(json.loads(encoded)) == encoded
    check_canonical_values(value, "12")


any_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=4) | st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)


def _naive_has_float(value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_naive_has_float(v) for v in value.values())
    return isinstance(value, (list, tuple)) and any(_naive_has_float(v) for v in value)


@settings(max_examples=150, deadline=None)
@given(value=any_values)
def test_fast_number_walks_agree_with_the_reporting_walk(value):
    """The exact-type fast paths (float detection before encoding, v6+ number rules) judge every value
    as the path-reporting walk does."""
    assert _has_float(value) == _naive_has_float(value)
    try:
        _raise_first_bad_value(value)
        reported = None
    except EventFormatError as e:
        reported = e
    assert _canonical_values(value) == (reported is None)
    if reported is not None:
        with pytest.raises(EventFormatError, match="at /"):
            check_canonical_values(value, "6")


def test_check_canonical_values():
    for bad in (1.5, 2**53, -(2**53), {"a": [0.0]}):
        with pytest.raises(EventFormatError):
            check_canonical_values(bad, "6")
        check_canonical_values(bad, "5")
    check_canonical_values({"a": [2**53 - 1, -(2**53) + 1, True, None]}, "12")


# ---------------------------------------------------------------- hashing / IDs


def test_event_id_formats():
    ev1 = make("1")
    assert ev1["event_id"].endswith(":a.test") and ev1["prev_events"] == [["$p:a.test", {}]]
    assert compute_event_id(ev1, "1") == ev1["event_id"]
    ev3 = make("3")
    ev4 = make("4")
    assert ev3["event_id"].startswith("$") and ":" not in ev3["event_id"]
    assert compute_event_id(ev3, "3") == ev3["event_id"]
    assert compute_event_id(ev4, "4") == ev4["event_id"]
    assert "+" not in ev4["event_id"] and "/" not in ev4["event_id"]
    # v3 and v4 differ only in the base64 alphabet of the same reference hash
    same = {k: v for k, v in ev4.items() if k != "event_id"}
    assert compute_event_id(same, "3").replace("+", "-").replace("/", "_") == compute_event_id(same, "4")
    # the convenience event_id key is ignored
    assert compute_event_id(ev4, "4") == compute_event_id(same, "4")
    assert reference_hash(ev4, "4") == reference_hash(same, "4")
    # reference hash ignores signatures/unsigned and is stable under redaction
    assert reference_hash(dict(ev4, unsigned={"age": 5}, signatures={}), "4") == reference_hash(ev4, "4")
    assert compute_event_id(redact_event(ev4, "4"), "4") == ev4["event_id"]
    assert check_content_hash(ev4, "4") and check_content_hash(ev4)
    assert not check_content_hash(dict(ev4, content={"body": "changed"}), "4")
    assert not check_content_hash(dict(ev4, hashes={}))
    assert compute_content_hash(ev4) == ev4["hashes"]["sha256"]


def test_build_v12_create_and_room_id():
    create = make("12", "m.room.create", {"room_version": "12"}, "", room_id=None, prev_events=[])
    assert "room_id" not in create and "creator" not in create["content"]
    room_id = room_id_from_create_event(create["event_id"])
    assert room_id == "!" + create["event_id"][1:]
    validate_pdu(create, "12")
    msg = make("12", room_id=room_id, auth_events=[create["event_id"]])
    validate_pdu(msg, "12")
    with pytest.raises(ValueError):
        make("12", "m.room.create", {}, "", room_id="!x:a")
    with pytest.raises(ValueError):
        make("11", room_id=None)
    assert make("10", "m.room.create", {}, "", prev_events=[])["content"]["creator"] == "@u:a.test"


def test_redacts_placement_and_unsigned():
    old = make("10", "m.room.redaction", {}, redacts="$x")
    new = make("11", "m.room.redaction", {}, redacts="$x")
    assert old["redacts"] == "$x" and "redacts" not in old["content"]
    assert new["content"]["redacts"] == "$x" and "redacts" not in new
    withu = make("11", unsigned={"age": 3})
    assert withu["unsigned"] == {"age": 3} and check_content_hash(withu, "11")
    verify_event_signatures(withu, "11", verify_key_lookup)


def test_strip_convenience_keys():
    ev = make("12", room_id="!r")
    assert "event_id" not in strip_convenience_keys(ev, "12")
    ev1 = make("1")
    assert "event_id" in strip_convenience_keys(ev1, "1")


def test_event_id_list():
    assert event_id_list([["$a", {}], ["$b", {"sha256": "x"}]]) == ["$a", "$b"]
    assert event_id_list(["$a", "$b"]) == ["$a", "$b"]
    assert event_id_list(None) == []


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("v", ALL)
def test_validate_good_pdu(v):
    ev = make(v, "m.room.topic", {"topic": "t"}, "")
    encoded = validate_pdu(ev, v)
    # what it returns is the PDU as sent over federation, in canonical JSON
    assert encoded == encode_canonical_json(strip_convenience_keys(ev, v))


@pytest.mark.parametrize("mutation,needle", [
    (lambda e: e.pop("type"), "type"),
    (lambda e: e.update(sender="x" * 10), "sender"),
    (lambda e: e.update(sender="@" + "u" * 250 + ":a.test"), "sender"),
    (lambda e: e.update(state_key="s" * 256), "state_key"),
    (lambda e: e.update(type="t" * 256), "type"),
    (lambda e: e.update(room_id="!" + "r" * 255), "room_id"),
    (lambda e: e.update(depth=-1), "depth"),
    (lambda e: e.update(depth=2**53), "depth"),
    (lambda e: e.update(depth="5"), "depth"),
    (lambda e: e.update(content=[]), "content"),
    (lambda e: e.update(prev_events=["$x"] * 21), "prev_events"),
    (lambda e: e.update(auth_events=["$x"] * 11), "auth_events"),
    (lambda e: e.update(auth_events=[["$x", {}]]), "auth_events"),
    (lambda e: e.update(hashes={}), "hashes"),
    (lambda e: e.update(signatures=[]), "signatures"),
    (lambda e: e.update(content={"f": 1.5}), "float"),
    (lambda e: e.update(content={"i": 2**60}), "integer"),
    (lambda e: e.update(content={"big": "x" * 70000}), "65536"),
    (lambda e: e.update(origin_server_ts="now"), "origin_server_ts"),
])
def test_validate_rejects(mutation, needle):
    ev = make("12", "m.room.topic", {"topic": "t"}, "", room_id="!r")
    ev = copy.deepcopy(ev)
    mutation(ev)
    with pytest.raises(EventFormatError) as ei:
        validate_pdu(ev, "12")
    assert needle in str(ei.value)


def test_validate_v1_specifics():
    ev = make("1")
    validate_pdu(ev, "1")
    validate_pdu(dict(ev, content={"f": 1.5, "i": 2**60}), "1")
    validate_pdu(dict(ev, depth=2**63 - 1), "1")
    with pytest.raises(EventFormatError):
        validate_pdu({k: v for k, v in ev.items() if k != "event_id"}, "1")
    with pytest.raises(EventFormatError):
        validate_pdu(dict(ev, prev_events=["$plain:a.test"]), "1")
    with pytest.raises(EventFormatError):
        validate_pdu(dict(ev, event_id="$" + "e" * 255), "1")


# ---------------------------------------------------------------- signing


def test_required_signers():
    ev1 = make("1", sender="@u:b.test")
    ev1["event_id"] = "$x:c.test"
    assert required_signers(ev1, "1") == {"b.test", "c.test"}
    join = {"type": "m.room.member", "sender": "@u:b.test", "state_key": "@u:b.test",
            "content": {"membership": "join", "join_authorised_via_users_server": "@x:d.test"}}
    assert required_signers(join, "8") == {"b.test", "d.test"}
    assert required_signers(join, "7") == {"b.test"}
    tpi = {"type": "m.room.member", "sender": "@u:b.test", "state_key": "@v:e.test",
           "content": {"membership": "invite", "third_party_invite": {"signed": {}}}}
    assert required_signers(tpi, "10") == set()


@pytest.mark.parametrize("v", ["1", "3", "10", "12"])
def test_sign_verify_and_failures(v):
    ev = make(v, room_id="!r:a.test")
    verify_event_signatures(ev, v, verify_key_lookup)
    # redacted copies still verify
    verify_event_signatures(redact_event(ev, v), v, verify_key_lookup)
    # second signer keeps the first
    both = sign_event(ev, "b.test", key_for("b.test"), v)
    assert set(both["signatures"]) == {"a.test", "b.test"}
    verify_event_signatures(both, v, verify_key_lookup)
    with pytest.raises(MissingSignatureError):
        verify_event_signatures(dict(ev, signatures={}), v, verify_key_lookup)
    with pytest.raises(MissingSignatureError):
        verify_event_signatures(ev, v, lambda s, k: None)
    tampered = dict(ev, origin_server_ts=ev["origin_server_ts"] + 1)
    with pytest.raises(InvalidSignatureError):
        verify_event_signatures(tampered, v, verify_key_lookup)
    with pytest.raises(EventFormatError):
        verify_event_signatures(dict(ev, signatures=None), v, verify_key_lookup)
    # content is covered by the hash, not the signature
    changed = dict(ev, content={"body": "other"})
    verify_event_signatures(changed, v, verify_key_lookup)
    assert not check_content_hash(changed, v)
    # the reference bytes (what the reference hash digests) are what the signatures sign
    reference = reference_bytes(ev, v)
    assert hashlib.sha256(reference).digest() == reference_hash(ev, v)
    verify_event_signatures(ev, v, verify_key_lookup, reference)
    with pytest.raises(InvalidSignatureError):
        verify_event_signatures(ev, v, verify_key_lookup, reference_bytes(tampered, v))
    if v != "1":
        assert event_id_from_reference(reference, v) == compute_event_id(ev, v)



@pytest.mark.parametrize("v", ["1", "10", "12"])
def test_signature_checks_leave_only_the_cryptography_for_later(v):
    """event_signature_checks finds what to verify (missing signatures and bad shapes fail at once);
    a forged signature fails only when its check is verified."""
    ev = sign_event(make(v, room_id="!r:a.test"), "b.test", key_for("b.test"), v)
    checks = event_signature_checks(ev, v, verify_key_lookup)
    assert {(c.server_name, c.key_id) for c in checks} >= {("a.test", f"ed25519:{key_for('a.test').version}")}
    for check in checks:
        check.verify()
    with pytest.raises(MissingSignatureError):
        event_signature_checks(dict(ev, signatures={}), v, verify_key_lookup)
    with pytest.raises(EventFormatError):
        event_signature_checks(dict(ev, signatures=None), v, verify_key_lookup)
    tampered = dict(ev, origin_server_ts=ev["origin_server_ts"] + 1)
    forged = event_signature_checks(tampered, v, verify_key_lookup)
    with pytest.raises(InvalidSignatureError):
        for check in forged:
            check.verify()

_SIGNED = make("10", "m.room.topic", {"topic": "hello world"}, "", room_id="!r:a.test")
_SIGNED_FIELDS = ["type", "sender", "room_id", "state_key", "origin_server_ts", "depth", "prev_events", "hashes"]


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(_SIGNED_FIELDS), data=st.data())
def test_any_one_byte_change_of_signed_field_fails(field, data):
    raw = json.dumps(_SIGNED[field])
    pos = data.draw(st.integers(0, len(raw) - 1))
    new_char = data.draw(st.sampled_from("0123456789abcdefXYZ$@!:"))
    mutated_raw = raw[:pos] + new_char + raw[pos + 1:]
    try:
        mutated_value = json.loads(mutated_raw)
    except ValueError:
        return
    if mutated_value == _SIGNED[field]:
        return
    ev = dict(_SIGNED, **{field: mutated_value})
    with pytest.raises((SignatureError, EventFormatError)):
        verify_event_signatures(ev, "10", verify_key_lookup)


# ---------------------------------------------------------------- client format


def test_to_client_event():
    ev = make("10", "m.room.topic", {"topic": "t"}, "", unsigned={"age": 1})
    ce = to_client_event(ev)
    assert set(ce) == {"event_id", "type", "content", "sender", "origin_server_ts", "room_id", "state_key", "unsigned"}
    assert "room_id" not in to_client_event(ev, include_room_id=False)
    red10 = to_client_event(make("10", "m.room.redaction", {}, redacts="$x"))
    assert red10["redacts"] == "$x" and red10["content"]["redacts"] == "$x"
    red11 = to_client_event(make("11", "m.room.redaction", {}, redacts="$x"))
    assert red11["redacts"] == "$x" and red11["content"] == {"redacts": "$x"}
    msg = to_client_event(make("12", room_id="!r"))
    assert msg["unsigned"] == {} and "hashes" not in msg and "depth" not in msg

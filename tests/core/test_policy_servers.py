"""Policy Servers' pure rules (homeserver/events/policy_servers.py): the m.room.policy content, the
``ed25519:policy_server`` signature, and what our policy server refuses."""

import pytest
from signedjson.key import generate_signing_key
from unpaddedbase64 import encode_base64

from homeserver.events.builder import build_event
from homeserver.events.policy_servers import (POLICY_KEY_ID, POLICY_KEY_VERSION, RefusalRules, RoomPolicyServer,
                                              has_policy_signature, is_policy_state_event, policy_signature,
                                              refusal, room_policy_server, with_signature)
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import verify_event_signatures

from .roomkit import key_for

PS_KEY = generate_signing_key(POLICY_KEY_VERSION)
PS = RoomPolicyServer("ps.test", encode_base64(PS_KEY.verify_key.encode()))


def event(version: str, body="hello", sender="@u:a.test", **kw):
    return build_event(KNOWN_ROOM_VERSIONS[version], server_name="a.test", signing_key=key_for("a.test"),
                       room_id="!r:a.test", sender=sender, event_type=kw.pop("type", "m.room.message"),
                       content=kw.pop("content", {"msgtype": "m.text", "body": body}),
                       state_key=kw.pop("state_key", None),
                       prev_events=["$p:a.test" if version in "12" else "$prev"], auth_events=[], depth=3,
                       origin_server_ts=1234)


def test_room_policy_content_must_name_a_server_and_an_ed25519_key():
    key = PS.ed25519
    assert room_policy_server({"via": "ps.test", "public_keys": {"ed25519": key}}) == PS
    for bad in (None, {}, {"via": "ps.test"}, {"public_keys": {"ed25519": key}},
                {"via": 3, "public_keys": {"ed25519": key}},
                {"via": "not a server", "public_keys": {"ed25519": key}}, {"via": "ps.test", "public_keys": {}},
                {"via": "ps.test", "public_keys": {"ed25519": "short"}}, {"via": "ps.test", "public_key": key},
                {"via": "ps.test", "public_keys": {"ed25519": "!!!"}}):
        assert room_policy_server(bad) is None, bad


def test_only_the_empty_state_key_policy_event_is_exempt():
    assert is_policy_state_event({"type": "m.room.policy", "state_key": ""})
    assert not is_policy_state_event({"type": "m.room.policy", "state_key": "x"})
    assert not is_policy_state_event({"type": "m.room.policy"})
    assert not is_policy_state_event({"type": "m.room.message", "state_key": ""})


@pytest.mark.parametrize("version", ["1", "3", "10", "11", "12"])
def test_signature_verifies_only_with_the_room_key_and_keeps_the_senders(version):
    rv = KNOWN_ROOM_VERSIONS[version]
    pdu = event(version)
    assert not has_policy_signature(pdu, rv, PS)
    signature = policy_signature(pdu, rv, "ps.test", PS_KEY)
    assert list(signature) == ["ps.test"] and list(signature["ps.test"]) == [POLICY_KEY_ID]
    signed = with_signature(pdu, signature, "ps.test")
    assert has_policy_signature(signed, rv, PS)
    verify_event_signatures(signed, rv, lambda s, k: key_for(s).verify_key if k == "ed25519:1" else None)
    other_key = generate_signing_key(POLICY_KEY_VERSION)
    other_server = RoomPolicyServer("ps.test", encode_base64(other_key.verify_key.encode()))
    assert not has_policy_signature(signed, rv, other_server)
    assert not has_policy_signature(signed, rv, RoomPolicyServer("other.test", PS.ed25519))
    tampered = dict(signed, content={"body": "changed"}, hashes={"sha256": "x"})
    assert not has_policy_signature(tampered, rv, PS)
    # The sender may be the policy server: its own signatures stay beside the policy server's.
    same = with_signature(pdu, policy_signature(pdu, rv, "a.test", PS_KEY), "a.test")
    assert set(same["signatures"]["a.test"]) == {"ed25519:1", POLICY_KEY_ID}
    assert with_signature(pdu, {}, "ps.test") is pdu


def test_refusals_by_user_server_policy_list_and_keyword():
    rules = RefusalRules(banned_users=["@spam*:*"], banned_servers=["*.bad.test"], spam_keywords=["Buy Followers"])
    assert refusal(event("10"), rules) is None
    assert refusal(event("10", sender="@spammer:a.test"), rules)
    assert refusal(event("10", sender="@u:x.bad.test"), rules)
    assert refusal(event("10", body="please BUY followers now"), rules)
    assert refusal(event("10", content={"m.new_content": {"body": "buy followers"}, "body": "* ok"}), rules)
    assert refusal(event("10", sender="@mallory:evil.test"), rules) is None
    listed = rules.with_policy_rules([
        {"type": "m.policy.rule.user", "content": {"entity": "@mallory:*", "recommendation": "m.ban"}},
        {"type": "m.policy.rule.server", "content": {"entity": "worse.test", "recommendation": "m.ban"}},
        {"type": "m.policy.rule.user", "content": {"entity": "@eve:*", "recommendation": "org.example.mute"}},
        {"type": "m.policy.rule.user", "content": {}},  # a removed rule
        {"type": "m.room.topic", "content": {"entity": "@bob:*", "recommendation": "m.ban"}},
    ])
    assert refusal(event("10", sender="@mallory:evil.test"), listed)
    assert refusal(event("10", sender="@u:worse.test"), listed)
    assert refusal(event("10", sender="@eve:evil.test"), listed) is None
    assert refusal(event("10", sender="@bob:evil.test"), listed) is None
    assert rules.banned_users == ["@spam*:*"]  # the admin's rules are not changed by a list

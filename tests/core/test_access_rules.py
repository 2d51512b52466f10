"""Room access rules (Tchap's im.vector.room.access_rules), the pure checks."""

from __future__ import annotations

from hypothesis import given, strategies as st

from homeserver.events.access_rules import (DIRECT, RESTRICTED, RULES, UNRESTRICTED, membership_refusal,
                                            rule_change_refusal, rule_of)

INTERNAL = {"a.gouv.example", "b.gouv.example"}


def internal(user_id: str) -> bool:
    return user_id.split(":", 1)[1] in INTERNAL


def test_a_room_without_a_valid_rule_is_restricted():
    assert rule_of(None) == rule_of({}) == rule_of({"rule": "open sesame"}) == RESTRICTED
    assert rule_of({"rule": DIRECT}) == DIRECT


@given(st.sampled_from(RULES), st.sampled_from(RULES))
def test_the_rule_only_moves_from_restricted_to_unrestricted(old, new):
    allowed = rule_change_refusal({"rule": old}, {"rule": new}) is None
    assert allowed == (old == new or (old, new) == (RESTRICTED, UNRESTRICTED))
    assert rule_change_refusal(None, {"rule": new}) is None  # set freely when the room has none


def test_an_unknown_rule_is_refused():
    assert "one of" in rule_change_refusal(None, {"rule": "everyone"})
    assert rule_change_refusal({"rule": RESTRICTED}, {}) is not None


def test_restricted_rooms_take_internal_users_only():
    assert membership_refusal(RESTRICTED, "join", "@x:a.gouv.example", internal, []) is None
    assert membership_refusal(RESTRICTED, "invite", "@x:outside.example", internal, []) is not None
    assert membership_refusal(UNRESTRICTED, "invite", "@x:outside.example", internal, []) is None
    assert membership_refusal(RESTRICTED, "leave", "@x:outside.example", internal, []) is None


@given(st.lists(st.sampled_from(["@a:a.gouv.example", "@b:a.gouv.example", "@c:b.gouv.example"]), max_size=3),
       st.sampled_from(["@a:a.gouv.example", "@d:b.gouv.example"]))
def test_direct_rooms_hold_two_people(members, target):
    refused = membership_refusal(DIRECT, "invite", target, internal, members) is not None
    assert refused == (len(set(members) | {target}) > 2)

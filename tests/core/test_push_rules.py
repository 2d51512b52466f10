"""The pure push rule evaluator (spec v1.19 "Push Rules", "Conditions", "Predefined Rules")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.push_rules import (MAX_PATTERN_CHARS, MAX_PATTERN_LENGTH, MAX_USER_RULES, InvalidRule,
                                          PushContext, check_ruleset_size, client_ruleset, condition_matches,
                                          compile_ruleset, default_rules, evaluate, evaluate_group, highlights,
                                          merge_ruleset, notifies,
                                          validate_actions, validate_rule_body)

ME = "@me:example.org"
OTHER = "@other:example.org"
ROOM = "!room:example.org"


def ctx(**kw) -> PushContext:
    base = dict(user_id=ME, display_name="Mr Me", member_count=5, sender_power_level=0, power_levels=None)
    return PushContext(**(base | kw))


def message(body: str = "hello", **content) -> dict:
    return {"type": "m.room.message", "sender": OTHER, "room_id": ROOM, "event_id": "$e",
            "content": {"msgtype": "m.text", "body": body, **content}}


def rules(own=None, defaults=None) -> dict:
    return merge_ruleset(ME, own or {}, defaults or {})


def outcome(event: dict, ruleset=None, **kw) -> tuple[str | None, bool, bool]:
    rule_id, actions = evaluate(ruleset or rules(), event, ctx(**kw))
    return rule_id, notifies(actions), highlights(actions)


# -- conditions -------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern, value, expected", [
    ("lunc?*", "Lunch plans", True), ("lunc?*", "LUNCH", True), ("lunc?*", " lunch", False),
    ("lunc?*", "lunc", False), ("m.notice", "m.notice", True), ("m.notice", "m.noticeX", False),
    ("", "", True), ("", "x", False), ("*", "", True), ("a[b]c", "a[b]c", True), ("a[b]c", "abc", False),
])
def test_event_match_whole_value(pattern, value, expected):
    cond = {"kind": "event_match", "key": "content.topic", "pattern": pattern}
    assert condition_matches(cond, {"content": {"topic": value}}, ctx()) is expected


@pytest.mark.parametrize("value", [None, 1, True, ["x"], {"a": "b"}])
def test_event_match_needs_a_string_even_for_star(value):
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "*"}
    assert not condition_matches(cond, {"content": {"topic": value}}, ctx())
    assert not condition_matches(cond, {"content": {}}, ctx())


@pytest.mark.parametrize("body, expected", [
    ("An example event.", True), ("exple", True), ("An exciting triple-whammy", True),
    ("anexample", False), ("examples", False), ("EXAMPLE!", True), ("_example", False), ("ex_ample", True),
])
def test_event_match_body_is_word_bounded(body, expected):
    cond = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
    assert condition_matches(cond, {"content": {"body": body}}, ctx()) is expected


@pytest.mark.parametrize("value, expected", [(True, True), ("true", False), (1, False), (None, False)])
def test_event_property_is_is_exact(value, expected):
    event = {"content": {"m.federate": value}}
    cond = {"kind": "event_property_is", "key": "content.m\\.federate", "value": True}
    assert condition_matches(cond, event, ctx()) is expected


def test_event_property_is_null_and_integers():
    cond = {"kind": "event_property_is", "key": "content.x", "value": None}
    assert condition_matches(cond, {"content": {"x": None}}, ctx())
    assert not condition_matches(cond, {"content": {}}, ctx())
    one = {"kind": "event_property_is", "key": "content.x", "value": 1}
    assert condition_matches(one, {"content": {"x": 1}}, ctx())
    assert not condition_matches(one, {"content": {"x": True}}, ctx())
    assert not condition_matches(one, {"content": {"x": 1.0}}, ctx())
    big = {"kind": "event_property_is", "key": "content.x", "value": 2**60}
    assert not condition_matches(big, {"content": {"x": 2**60}}, ctx())
    compound = {"kind": "event_property_is", "key": "content.x", "value": ["a"]}
    assert not condition_matches(compound, {"content": {"x": ["a"]}}, ctx())


def test_event_property_contains():
    event = {"content": {"alt_aliases": ["#somewhere:example.org", "#myroom:example.com", 3, True]}}
    cond = {"kind": "event_property_contains", "key": "content.alt_aliases"}
    assert condition_matches(dict(cond, value="#myroom:example.com"), event, ctx())
    assert not condition_matches(dict(cond, value=":example.com"), event, ctx())
    assert condition_matches(dict(cond, value=3), event, ctx())
    assert not condition_matches(dict(cond, value=1), event, ctx())
    assert condition_matches(dict(cond, value=True), event, ctx())
    assert not condition_matches(dict(cond, value="x"), {"content": {"alt_aliases": "x"}}, ctx())
    assert not condition_matches(cond, event, ctx())  # no value at all


@pytest.mark.parametrize("body, name, expected", [
    ("hi Mr Me!", "Mr Me", True), ("hi mr me", "Mr Me", True), ("hi Mr Meeting", "Mr Me", False),
    ("hi Mr Me", None, False), ("hi", "", False), ("a.*b here", "a.*b", True), ("axxb here", "a.*b", False),
])
def test_contains_display_name(body, name, expected):
    cond = {"kind": "contains_display_name"}
    assert condition_matches(cond, {"content": {"body": body}}, ctx(display_name=name)) is expected


@pytest.mark.parametrize("spec, count, expected", [
    ("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<3", 2, True), ("<3", 3, False), (">1", 2, True),
    (">=2", 2, True), ("<=1", 2, False), ("abc", 2, False), ("=2", 2, False), (2, 2, False), ("", 0, False),
])
def test_room_member_count(spec, count, expected):
    assert condition_matches({"kind": "room_member_count", "is": spec}, {}, ctx(member_count=count)) is expected


@pytest.mark.parametrize("levels, sender_level, expected", [
    (None, 50, True), (None, 49, False), ({"notifications": {"room": 10}}, 10, True),
    ({"notifications": {"room": "20"}}, 10, False), ({"notifications": {"room": "bad"}}, 50, True),
    ({"notifications": "x"}, 50, True), ({"notifications": {}}, float("inf"), True),
])
def test_sender_notification_permission(levels, sender_level, expected):
    cond = {"kind": "sender_notification_permission", "key": "room"}
    assert condition_matches(cond, {}, ctx(power_levels=levels, sender_power_level=sender_level)) is expected


@pytest.mark.parametrize("cond", [{"kind": "org.example.unknown"}, {}, "event_match", None,
                                  {"kind": "event_match", "key": 3, "pattern": "x"}])
def test_unrecognised_or_malformed_conditions_never_match(cond):
    assert not condition_matches(cond, message(), ctx())


# -- predefined rules -----------------------------------------------------------------------

def test_group_message_notifies_without_highlight():
    assert outcome(message()) == (".m.rule.message", True, False)


def test_direct_message_notifies_with_sound():
    rule_id, actions = evaluate(rules(), message(), ctx(member_count=2))
    assert rule_id == ".m.rule.room_one_to_one"
    assert {"set_tweak": "sound", "value": "default"} in actions and not highlights(actions)


def test_user_mention_highlights():
    event = message("hey", **{"m.mentions": {"user_ids": [ME]}})
    assert outcome(event) == (".m.rule.is_user_mention", True, True)
    assert outcome(message("hey", **{"m.mentions": {"user_ids": [OTHER]}}))[0] == ".m.rule.message"


def test_room_mention_needs_power():
    event = message("@room", **{"m.mentions": {"room": True}})
    assert outcome(event, sender_power_level=50) == (".m.rule.is_room_mention", True, True)
    assert outcome(event, sender_power_level=0) == (".m.rule.message", True, False)


def test_display_name_in_body_is_no_longer_a_mention():
    assert outcome(message("Mr Me, look"))[2] is False


@pytest.mark.parametrize("event, rule_id", [
    (message("fyi", msgtype="m.notice"), ".m.rule.suppress_notices"),
    ({"type": "m.reaction", "sender": OTHER, "content": {}}, ".m.rule.reaction"),
    ({"type": "m.room.member", "sender": OTHER, "state_key": OTHER, "content": {"membership": "join"}},
     ".m.rule.member_event"),
    (message("* edit", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}), ".m.rule.suppress_edits"),
    ({"type": "m.room.server_acl", "sender": OTHER, "state_key": "", "content": {}}, ".m.rule.room.server_acl"),
])
def test_suppressing_rules(event, rule_id):
    assert outcome(event) == (rule_id, False, False)


def test_invite_for_me_and_others():
    invite = {"type": "m.room.member", "sender": OTHER, "state_key": ME, "content": {"membership": "invite"}}
    assert outcome(invite) == (".m.rule.invite_for_me", True, False)
    assert outcome(dict(invite, state_key="@third:example.org"))[0] == ".m.rule.member_event"


def test_tombstone_highlights_and_calls_ring():
    tombstone = {"type": "m.room.tombstone", "sender": OTHER, "state_key": "", "content": {}}
    assert outcome(tombstone) == (".m.rule.tombstone", True, True)
    assert outcome(dict(tombstone, state_key="x"))[1] is False
    rule_id, actions = evaluate(rules(), {"type": "m.call.invite", "sender": OTHER, "content": {}}, ctx())
    assert rule_id == ".m.rule.call" and {"set_tweak": "sound", "value": "ring"} in actions


def test_encrypted_events():
    encrypted = {"type": "m.room.encrypted", "sender": OTHER, "content": {"ciphertext": "x"}}
    assert outcome(encrypted, member_count=2)[0] == ".m.rule.encrypted_room_one_to_one"
    assert outcome(encrypted, member_count=3) == (".m.rule.encrypted", True, False)


def test_unmatched_events_do_nothing():
    assert outcome({"type": "m.room.name", "sender": OTHER, "state_key": "", "content": {"name": "x"}}) == (
        None, False, False)


def test_master_rule_disables_everything():
    muted = rules(defaults={("override", ".m.rule.master"): {"enabled": True}})
    own = {"override": [{"rule_id": "mine", "enabled": True, "conditions": [], "actions": ["notify"]}]}
    muted_with_own = rules(own, {("override", ".m.rule.master"): {"enabled": True}})
    for ruleset in (muted, muted_with_own):
        assert outcome(message("hey", **{"m.mentions": {"user_ids": [ME]}}), ruleset) == (
            ".m.rule.master", False, False)


def test_user_rules_outrank_defaults_but_not_master():
    own = {"override": [{"rule_id": "shh", "enabled": True, "conditions": [
        {"kind": "event_match", "key": "room_id", "pattern": ROOM}], "actions": []}]}
    ruleset = rules(own)
    assert [r["rule_id"] for r in ruleset["override"][:3]] == [".m.rule.master", "shh", ".m.rule.suppress_notices"]
    assert outcome(message("hey", **{"m.mentions": {"user_ids": [ME]}}), ruleset) == ("shh", False, False)


def test_kind_order_and_room_sender_content_rules():
    own = {"content": [{"rule_id": "cake", "enabled": True, "pattern": "cake", "actions": [
               "notify", {"set_tweak": "highlight"}]}],
           "room": [{"rule_id": ROOM, "enabled": True, "actions": []}],
           "sender": [{"rule_id": OTHER, "enabled": True, "actions": ["notify"]}]}
    ruleset = rules(own)
    assert outcome(message("cake time"), ruleset) == ("cake", True, True)
    assert outcome(message("pie time"), ruleset) == (ROOM, False, False)
    assert outcome(dict(message("pie"), room_id="!elsewhere:x"), ruleset) == (OTHER, True, False)
    assert outcome(dict(message("pie"), room_id="!elsewhere:x", sender="@third:x"), ruleset)[0] == ".m.rule.message"


def test_disabled_rules_and_changed_default_actions():
    ruleset = rules(defaults={("underride", ".m.rule.message"): {"enabled": False}})
    assert outcome(message(), ruleset) == (None, False, False)
    ruleset = rules(defaults={("underride", ".m.rule.message"): {"actions": ["notify", {"set_tweak": "highlight"}]}})
    assert outcome(message(), ruleset) == (".m.rule.message", True, True)


def test_historical_actions_are_ignored():
    own = {"override": [{"rule_id": "old", "enabled": True, "conditions": [], "actions": ["dont_notify", "coalesce"]}]}
    assert evaluate(rules(own), message(), ctx()) == ("old", [])
    # Stored as given (a client reads back what it set), skipped when evaluating.
    assert validate_actions(["notify", "dont_notify", {"set_tweak": "sound", "value": "x"}]) == [
        "notify", "dont_notify", {"set_tweak": "sound", "value": "x"}]


def test_highlight_tweak_values():
    assert highlights([{"set_tweak": "highlight"}])
    assert highlights([{"set_tweak": "highlight", "value": True}])
    assert not highlights([{"set_tweak": "highlight", "value": False}])
    assert not highlights(["notify", {"set_tweak": "sound", "value": "default"}])


def test_defaults_name_the_user_and_client_shape():
    defaults = default_rules(ME)
    assert [r["rule_id"] for r in defaults["override"]][:1] == [".m.rule.master"]
    invite = next(r for r in defaults["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert invite["conditions"][2] == {"kind": "event_match", "key": "state_key", "pattern": ME}
    mention = next(r for r in defaults["override"] if r["rule_id"] == ".m.rule.is_user_mention")
    assert mention["conditions"][0]["value"] == ME
    shown = client_ruleset(rules({"room": [{"rule_id": ROOM, "enabled": True, "actions": []}],
                                  "content": [{"rule_id": "c", "enabled": False, "pattern": "p", "actions": []}]}))
    assert shown["room"] == [{"rule_id": ROOM, "default": False, "enabled": True, "actions": []}]
    assert shown["content"] == [{"rule_id": "c", "default": False, "enabled": False, "actions": [], "pattern": "p"}]
    assert set(shown) == {"override", "content", "room", "sender", "underride"}


@pytest.mark.parametrize("kind, body, errcode", [
    ("override", {}, "M_BAD_JSON"), ("override", {"actions": "notify"}, "M_BAD_JSON"),
    ("override", {"actions": ["explode"]}, "M_INVALID_PARAM"), ("override", {"actions": [3]}, "M_BAD_JSON"),
    ("override", {"actions": [{"value": 1}]}, "M_BAD_JSON"),
    ("override", {"actions": [], "conditions": [{"key": "x"}]}, "M_BAD_JSON"),
    ("underride", {"actions": [], "conditions": "x"}, "M_BAD_JSON"),
    ("content", {"actions": []}, "M_BAD_JSON"), ("content", {"actions": [], "pattern": 1}, "M_BAD_JSON"),
])
def test_invalid_rule_bodies(kind, body, errcode):
    with pytest.raises(InvalidRule) as e:
        validate_rule_body(kind, body)
    assert e.value.errcode == errcode


def test_valid_rule_bodies():
    assert validate_rule_body("override", {"actions": ["notify"]}) == {"actions": ["notify"], "conditions": []}
    assert validate_rule_body("content", {"actions": [], "pattern": "x", "extra": 1}) == {"actions": [], "pattern": "x"}
    assert validate_rule_body("room", {"actions": []}) == {"actions": []}


# -- robustness ------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
KEYS = st.sampled_from(["content.body", "content.m\\.mentions.user_ids", "content.m\\.mentions.room", "type",
                        "content", "content.a.b", "state_key"]) | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(content=JSON, event_type=st.text(max_size=15) | st.sampled_from(["m.room.message", "m.room.member"]),
       state_key=st.none() | st.text(max_size=5), display_name=st.none() | st.text(max_size=10),
       members=st.integers(0, 10), power_levels=st.none() | st.dictionaries(st.text(max_size=15), JSON))
def test_evaluation_never_raises_on_arbitrary_content(content, event_type, state_key, display_name, members,
                                                      power_levels):
    event = {"type": event_type, "sender": OTHER, "room_id": ROOM, "content": content}
    if state_key is not None:
        event["state_key"] = state_key
    rule_id, actions = evaluate(rules(), event, ctx(display_name=display_name, member_count=members,
                                                  power_levels=power_levels))
    assert isinstance(actions, list)
    notifies(actions), highlights(actions)


@settings(max_examples=300, deadline=None)
@given(conditions=st.lists(st.fixed_dictionaries({"kind": st.sampled_from(
    ["event_match", "event_property_is", "event_property_contains", "contains_display_name", "room_member_count",
     "sender_notification_permission", "other"])}, optional={"key": KEYS, "pattern": JSON, "value": JSON,
                                                            "is": JSON}) | JSON, max_size=3),
       content=JSON)
def test_arbitrary_conditions_never_raise(conditions, content):
    own = {"override": [{"rule_id": "fuzz", "enabled": True, "conditions": conditions, "actions": ["notify"]}]}
    rule_id, actions = evaluate(rules(own), {"type": "m.room.message", "sender": OTHER, "content": content}, ctx())
    assert rule_id in (None, "fuzz") or rule_id.startswith(".")


def test_ruleset_size_caps():
    """One pattern, a user's rule count and their patterns in all are capped (each message is matched on them)."""
    condition = {"kind": "event_match", "key": "content.body", "pattern": "x" * (MAX_PATTERN_LENGTH + 1)}
    for kind, body in (("content", {"pattern": condition["pattern"]}), ("underride", {"conditions": [condition]})):
        with pytest.raises(InvalidRule) as refused:
            validate_rule_body(kind, dict(body, actions=[]))
        assert refused.value.errcode == "M_INVALID_PARAM"
    full = {"content": [{"pattern": "x" * MAX_PATTERN_LENGTH}] * (MAX_PATTERN_CHARS // MAX_PATTERN_LENGTH),
            "room": [{}] * (MAX_USER_RULES - MAX_PATTERN_CHARS // MAX_PATTERN_LENGTH)}
    check_ruleset_size(full)
    for over in ({**full, "override": [{"conditions": [dict(condition, pattern="x")]}]},
                 {**full, "sender": [{}]}):
        with pytest.raises(InvalidRule) as refused:
            check_ruleset_size(over)
        assert refused.value.errcode == "M_TOO_LARGE"


# -- grouped evaluation (a big room's members evaluated together) ---------------------------------

_POOL = ["@me:example.org", "@Me:example.org", "@other:example.org", "@a*b:example.org", "@a?c:example.org",
         "@axb:example.org", "@\u212aate:example.org", "@kate:example.org", "@zoe:example.org",
         "@sam:example.org", "@\u017fam:example.org"]
_OWN_RULES = [
    {},
    {"room": [{"rule_id": ROOM, "enabled": True, "actions": []}]},  # a muted room
    {"content": [{"rule_id": "cats", "enabled": True, "pattern": "cat*", "actions": ["notify"]}]},
    {"override": [{"rule_id": "name", "enabled": True, "actions": ["notify", {"set_tweak": "highlight"}],
                   "conditions": [{"kind": "contains_display_name"}]}]},
]
_DEFAULT_CHANGES = [{}, {("override", ".m.rule.is_user_mention"): {"enabled": False}},
                    {("underride", ".m.rule.message"): {"actions": []}},
                    {("override", ".m.rule.invite_for_me"): {"actions": ["notify", {"set_tweak": "highlight"}]}}]


@st.composite
def _room_events(draw) -> dict:
    kind = draw(st.sampled_from(["message", "invite", "encrypted", "notice", "edit"]))
    content: dict = {"msgtype": "m.notice" if kind == "notice" else "m.text",
                     "body": draw(st.sampled_from(["hello", "cats here", "hi Mr Me", "Zed!", "@me:example.org"]))}
    if draw(st.booleans()):
        content["m.mentions"] = {"user_ids": draw(st.lists(st.sampled_from(_POOL + ["@ME:EXAMPLE.ORG", 3]))),
                                 "room": draw(st.booleans())}
    if kind == "edit":
        content["m.relates_to"] = {"rel_type": "m.replace", "event_id": "$x"}
    event = {"type": "m.room.message", "sender": OTHER, "room_id": ROOM, "event_id": "$e", "content": content}
    if kind == "encrypted":
        event["type"] = "m.room.encrypted"
    if kind == "invite":
        invitee = draw(st.sampled_from(_POOL + ["@ME:example.org", "@a1b:example.org"]))
        event.update(type="m.room.member", state_key=invitee, content={"membership": "invite"})
    return event


@settings(max_examples=300, deadline=None)
@given(event=_room_events(),
       users=st.dictionaries(st.sampled_from(_POOL), st.tuples(st.sampled_from(range(len(_OWN_RULES))),
                                                               st.sampled_from(range(len(_DEFAULT_CHANGES))),
                                                               st.sampled_from([None, "Mr Me", "Zed", "kate"]))),
       member_count=st.sampled_from([2, 3, 500]), sender_level=st.sampled_from([0, 50, 100]))
def test_grouped_evaluation_equals_each_users_own(event, users, member_count, sender_level):
    """evaluate_group over members sharing rules gives each the result of evaluating their own rules."""
    merged = {u: merge_ruleset(u, _OWN_RULES[own], _DEFAULT_CHANGES[changes]) for u, (own, changes, _) in users.items()}

    def context(user_id: str) -> PushContext:
        return PushContext(user_id, users[user_id][2], member_count, sender_level, None)

    groups: dict = {}
    for user_id in users:
        groups.setdefault(compile_ruleset(merged[user_id], user_id), []).append(user_id)
    room_ctx = PushContext("", None, member_count, sender_level, None)
    shared: dict = {}
    grouped = {}
    for compiled, user_ids in groups.items():
        grouped.update(evaluate_group(compiled, event, user_ids, room_ctx, context, shared))
    assert grouped == {u: evaluate(merged[u], event, context(u)) for u in users}


def test_members_with_default_rules_share_one_compiled_ruleset():
    """Users with the server-default rules compile to the same rules (the grouping key); a change splits them."""
    plain = [compile_ruleset(merge_ruleset(u, {}, {}), u) for u in ("@a:x", "@b:x")]
    assert plain[0] == plain[1]
    muted = compile_ruleset(merge_ruleset("@c:x", _OWN_RULES[1], {}), "@c:x")
    assert muted != plain[0]


def test_grouped_evaluation_mentions_and_invites_only_their_targets():
    users = ["@a:x", "@b:x", "@c:x"]
    compiled = compile_ruleset(merge_ruleset("@a:x", {}, {}), "@a:x")
    room_ctx = PushContext("", None, 10, 0, None)

    def context(user_id):
        return PushContext(user_id, None, 10, 0, None)

    mention = message("hey", **{"m.mentions": {"user_ids": ["@B:x", "@c:x"]}})
    out = evaluate_group(compiled, mention, users, room_ctx, context, {})
    assert {u: r[0] for u, r in out.items()} == {"@a:x": ".m.rule.message", "@b:x": ".m.rule.message",
                                                 "@c:x": ".m.rule.is_user_mention"}
    invite = {"type": "m.room.member", "sender": OTHER, "room_id": ROOM, "state_key": "@B:X",
              "content": {"membership": "invite"}}
    out = evaluate_group(compiled, invite, users, room_ctx, context, {})
    assert {u: r[0] for u, r in out.items()} == {u: ".m.rule.invite_for_me" if u == "@b:x" else ".m.rule.member_event"
                                                 for u in users}

"""Push rules as pure data: the predefined rule set and the evaluator.

Spec v1.19 client-server "Push Rules", "Conditions", "Predefined Rules",
appendices "Glob-style matching" and "Dot-separated property paths". Events
are plain dicts; nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from homeserver.events.dotted_paths import split_dotted_path
from homeserver.events.glob import compile_glob

KINDS = ("override", "content", "room", "sender", "underride")
MASTER_RULE = ".m.rule.master"
HISTORICAL_ACTIONS = ("dont_notify", "coalesce")
MAX_SAFE_INT = 2**53 - 1
_USER = "[the user's Matrix ID]"  # placeholder replaced per user, as the spec writes it


def _cond(kind: str, **params) -> dict:
    return {"kind": kind, **params}


def _match(key: str, pattern: str) -> dict:
    return _cond("event_match", key=key, pattern=pattern)


_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}

# Spec "Default Override Rules", in priority order (.m.rule.master always first).
_DEFAULT_OVERRIDE = [
    (MASTER_RULE, False, [], []),
    (".m.rule.suppress_notices", True, [_match("content.msgtype", "m.notice")], []),
    (".m.rule.invite_for_me", True,
     [_match("type", "m.room.member"), _match("content.membership", "invite"), _match("state_key", _USER)],
     ["notify", _SOUND_DEFAULT]),
    (".m.rule.member_event", True, [_match("type", "m.room.member")], []),
    (".m.rule.is_user_mention", True,
     [_cond("event_property_contains", key="content.m\\.mentions.user_ids", value=_USER)],
     ["notify", _SOUND_DEFAULT, _HIGHLIGHT]),
    (".m.rule.is_room_mention", True,
     [_cond("event_property_is", key="content.m\\.mentions.room", value=True),
      _cond("sender_notification_permission", key="room")],
     ["notify", _HIGHLIGHT]),
    (".m.rule.tombstone", True, [_match("type", "m.room.tombstone"), _match("state_key", "")],
     ["notify", _HIGHLIGHT]),
    (".m.rule.reaction", True, [_match("type", "m.reaction")], []),
    (".m.rule.room.server_acl", True, [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
    (".m.rule.suppress_edits", True,
     [_cond("event_property_is", key="content.m\\.relates_to.rel_type", value="m.replace")], []),
]

# Spec "Default Underride Rules", in priority order.
_DEFAULT_UNDERRIDE = [
    (".m.rule.call", True, [_match("type", "m.call.invite")],
     ["notify", {"set_tweak": "sound", "value": "ring"}]),
    (".m.rule.encrypted_room_one_to_one", True,
     [_cond("room_member_count", **{"is": "2"}), _match("type", "m.room.encrypted")],
     ["notify", _SOUND_DEFAULT]),
    (".m.rule.room_one_to_one", True,
     [_cond("room_member_count", **{"is": "2"}), _match("type", "m.room.message")],
     ["notify", _SOUND_DEFAULT]),
    (".m.rule.message", True, [_match("type", "m.room.message")], ["notify"]),
    (".m.rule.encrypted", True, [_match("type", "m.room.encrypted")], ["notify"]),
]


def _replace(value: Any, old: str, new: str) -> Any:
    """``value`` (JSON) with every string equal to ``old`` replaced by ``new``: the user's ID placeholder
    filled in, or a user's ID turned back into the placeholder."""
    if value == old:
        return new
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return value


def default_rules(user_id: str) -> dict[str, list[dict]]:
    """The server-default rules of every kind for one user, in priority order."""
    def rules(table):
        return [{"rule_id": rid, "default": True, "enabled": enabled,
                 "conditions": _replace(conds, _USER, user_id), "actions": _replace(actions, _USER, user_id)}
                for rid, enabled, conds, actions in table]

    return {"override": rules(_DEFAULT_OVERRIDE), "content": [], "room": [], "sender": [],
            "underride": rules(_DEFAULT_UNDERRIDE)}


def is_default_rule_id(rule_id: str) -> bool:
    return rule_id.startswith(".")


def merge_ruleset(user_id: str, user_rules: dict[str, list[dict]],
                  default_overrides: dict[tuple[str, str], dict]) -> dict[str, list[dict]]:
    """Spec "Predefined Rules": user rules outrank server defaults, except ``.m.rule.master``.

    ``user_rules`` maps a kind to the user's rules, most important first;
    ``default_overrides`` maps (kind, rule_id) to the user's ``enabled``/``actions`` for a default rule.
    """
    merged: dict[str, list[dict]] = {}
    for kind, defaults in default_rules(user_id).items():
        for rule in defaults:
            rule.update(default_overrides.get((kind, rule["rule_id"]), {}))
        own = [dict(r, default=False) for r in user_rules.get(kind, [])]
        if kind == "override":
            merged[kind] = defaults[:1] + own + defaults[1:]
        else:
            merged[kind] = own + defaults
    return merged


def find_rule(ruleset: dict[str, list[dict]], kind: str, rule_id: str) -> dict | None:
    return next((r for r in ruleset.get(kind, []) if r["rule_id"] == rule_id), None)


def client_rule(kind: str, rule: dict) -> dict:
    """A rule as the client API shows it: room/sender rules carry no conditions, content rules a pattern."""
    out = {"rule_id": rule["rule_id"], "default": rule["default"], "enabled": rule["enabled"],
           "actions": rule["actions"]}
    if kind in ("override", "underride"):
        out["conditions"] = rule.get("conditions", [])
    elif kind == "content":
        out["pattern"] = rule.get("pattern", "")
    return out


def client_ruleset(ruleset: dict[str, list[dict]]) -> dict[str, list[dict]]:
    return {kind: [client_rule(kind, r) for r in ruleset.get(kind, [])] for kind in KINDS}


# -- validation of client-supplied rules -------------------------------------------------

class InvalidRule(ValueError):
    """A client-supplied rule or action list the spec does not allow (``errcode`` for the API)."""

    def __init__(self, message: str, errcode: str = "M_BAD_JSON"):
        super().__init__(message)
        self.errcode = errcode


# A message is matched against every rule of every member: the glob costs O(body x pattern), ~30 ms for a
# 256-character pattern on a 64 KiB body. So one pattern, a user's rules, and their patterns in all are capped.
MAX_PATTERN_LENGTH = 256
MAX_USER_RULES = 100
MAX_PATTERN_CHARS = 1024


def _patterns(rule: dict) -> list[str]:
    """The glob patterns of a stored rule: a content rule's, and its conditions' (``event_match``)."""
    found = [rule["pattern"]] if isinstance(rule.get("pattern"), str) else []
    return found + [c["pattern"] for c in rule.get("conditions", ()) if isinstance(c.get("pattern"), str)]


def check_ruleset_size(user_rules: dict[str, list[dict]]) -> None:
    """A user's own rules, all kinds: at most MAX_USER_RULES, MAX_PATTERN_CHARS of patterns (M_TOO_LARGE)."""
    rules = [r for kind_rules in user_rules.values() for r in kind_rules]
    if len(rules) > MAX_USER_RULES:
        raise InvalidRule(f"At most {MAX_USER_RULES} push rules per user", "M_TOO_LARGE")
    if sum(len(p) for r in rules for p in _patterns(r)) > MAX_PATTERN_CHARS:
        raise InvalidRule(f"At most {MAX_PATTERN_CHARS} characters of patterns in a user's push rules",
                          "M_TOO_LARGE")


def validate_actions(actions: Any) -> list:
    """Spec "Actions": strings or ``set_tweak`` objects. The historical ``dont_notify`` and ``coalesce`` are
    "no-ops (ignored, not rejected)": kept as the client gave them (as Synapse does), skipped when evaluating."""
    if not isinstance(actions, list):
        raise InvalidRule("actions must be a list")
    out = []
    for action in actions:
        if isinstance(action, str):
            if action != "notify" and action not in HISTORICAL_ACTIONS:
                raise InvalidRule(f"Unrecognised action {action!r}", "M_INVALID_PARAM")
        elif isinstance(action, dict):
            if not isinstance(action.get("set_tweak"), str):
                raise InvalidRule("An object action must have a string 'set_tweak'")
        else:
            raise InvalidRule("Each action must be a string or an object")
        out.append(action)
    return out


def validate_rule_body(kind: str, body: dict) -> dict:
    """The stored form of a PUT rule body: actions plus conditions (override/underride) or pattern (content)."""
    if "actions" not in body:
        raise InvalidRule("Missing 'actions'")
    rule = {"actions": validate_actions(body["actions"])}
    if kind in ("override", "underride"):
        conditions = body.get("conditions", [])
        if not isinstance(conditions, list) or not all(
                isinstance(c, dict) and isinstance(c.get("kind"), str) for c in conditions):
            raise InvalidRule("conditions must be a list of objects with a string 'kind'")
        rule["conditions"] = conditions
    elif kind == "content":
        if not isinstance(body.get("pattern"), str):
            raise InvalidRule("A content rule needs a string 'pattern'")
        rule["pattern"] = body["pattern"]
    if any(len(p) > MAX_PATTERN_LENGTH for p in _patterns(rule)):
        raise InvalidRule(f"A pattern may have at most {MAX_PATTERN_LENGTH} characters", "M_INVALID_PARAM")
    return rule


# -- evaluation -------------------------------------------------------------------------

@dataclass(frozen=True)
class PushContext:
    """What conditions need besides the event: the user and the room at the event."""

    user_id: str
    display_name: str | None
    member_count: int
    sender_power_level: int | float
    power_levels: dict | None  # content of m.room.power_levels, if any


_MISSING = object()
_BODY = ("content", "body")

Test = Callable[[dict, PushContext], bool]


def _lookup(event: dict, parts: tuple[str, ...]) -> Any:
    """The value at a split dotted path, or ``_MISSING``."""
    value: Any = event
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


@lru_cache(maxsize=4096)
def _display_name_regex(display_name: str) -> re.Pattern:
    """The display name, literally and case-insensitively, between word boundaries."""
    return re.compile(rf"(?:^|[^A-Za-z0-9_]){re.escape(display_name)}(?:[^A-Za-z0-9_]|$)", re.IGNORECASE)


def _is_simple_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -MAX_SAFE_INT <= value <= MAX_SAFE_INT


def _same_value(a: Any, b: Any) -> bool:
    """Exact equality of canonical JSON scalars: ``true`` is not ``1``."""
    return _is_simple_value(a) and _is_simple_value(b) and type(a) is type(b) and a == b


_MEMBER_COUNT = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")
_COMPARISONS = {"==": lambda a, b: a == b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
                "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


def _notification_level(power_levels: dict | None, key: str) -> int | float:
    levels = (power_levels or {}).get("notifications")
    value = levels.get(key, 50) if isinstance(levels, dict) else 50
    if isinstance(value, bool):
        return 50
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value)
    return 50


def _contains_display_name(event: dict, ctx: PushContext) -> bool:
    body = _lookup(event, _BODY)
    return isinstance(body, str) and bool(ctx.display_name) and \
        _display_name_regex(ctx.display_name).search(body) is not None


Candidates = Callable[[dict], "set[str] | None"]


def _user_condition(kind: str, parts: tuple[str, ...]) -> tuple[Test, Candidates]:
    """A default rule's condition on the user's own ID (the placeholder ``_USER``), and the users it may match.

    The candidates are lower-cased ASCII IDs: whoever is not among them (and has an ASCII ID without a
    glob wildcard, see :func:`evaluate_group`) does not match; None: anyone may.
    """
    if kind == "event_match":
        on_body = parts == _BODY

        def test(event, ctx):
            glob = compile_glob(ctx.user_id)
            return isinstance(value := _lookup(event, parts), str) and (
                glob.matches_word(value) if on_body else glob.matches(value))

        def candidates(event):
            value = _lookup(event, parts)
            if not isinstance(value, str):
                return set()
            return None if on_body or not value.isascii() else {value.lower()}
        return test, candidates
    if kind == "event_property_is":
        def candidates(event):
            value = _lookup(event, parts)
            return {value.lower()} if isinstance(value, str) else set()
        return (lambda event, ctx: _same_value(_lookup(event, parts), ctx.user_id)), candidates

    def candidates(event):
        value = _lookup(event, parts)
        return {v.lower() for v in value if isinstance(v, str)} if isinstance(value, list) else set()
    return (lambda event, ctx: isinstance(value := _lookup(event, parts), list) and any(
        _same_value(v, ctx.user_id) for v in value)), candidates


def _property_condition(kind: str, parts: tuple[str, ...], cond: dict) -> Test | None:
    """``event_match``, ``event_property_is`` and ``event_property_contains`` over a path."""
    if kind == "event_match":
        pattern = cond.get("pattern")
        if not isinstance(pattern, str):
            return None
        on_body = parts == _BODY  # spec: content.body matches a word-bounded substring
        glob = compile_glob(pattern)
        matches = glob.matches_word if on_body else glob.matches
        return lambda event, ctx: isinstance(value := _lookup(event, parts), str) and matches(value)
    if "value" not in cond or not _is_simple_value(cond["value"]):
        return None
    expected = cond["value"]
    if kind == "event_property_is":
        return lambda event, ctx: _same_value(_lookup(event, parts), expected)
    return lambda event, ctx: isinstance(value := _lookup(event, parts), list) and any(
        _same_value(v, expected) for v in value)


def compile_condition(cond: Any) -> Test | None:
    """Spec "Conditions" as a predicate; None for an unrecognised or malformed one (it never matches)."""
    if not isinstance(cond, dict):
        return None
    kind, key = cond.get("kind"), cond.get("key")
    if kind in ("event_match", "event_property_is", "event_property_contains"):
        return _property_condition(kind, tuple(split_dotted_path(key)), cond) if isinstance(key, str) else None
    if kind == "contains_display_name":
        return _contains_display_name
    if kind == "room_member_count":
        m = _MEMBER_COUNT.match(cond["is"]) if isinstance(cond.get("is"), str) else None
        if m is None:
            return None
        compare, number = _COMPARISONS[m.group(1) or "=="], int(m.group(2))
        return lambda event, ctx: compare(ctx.member_count, number)
    if kind == "sender_notification_permission" and isinstance(key, str):
        return lambda event, ctx: ctx.sender_power_level >= _notification_level(ctx.power_levels, key)
    return None


def condition_matches(cond: Any, event: dict, ctx: PushContext) -> bool:
    test = compile_condition(cond)
    return test is not None and test(event, ctx)


@dataclass(frozen=True, eq=False)
class CompiledRule:
    """An enabled rule that can match, ready to test events against (hashed by identity)."""

    rule_id: str
    actions: tuple
    test: Test
    per_user: bool  # uses the user's ID or display name: its result is not the same for every user
    candidates: Candidates | None = None  # of a per-user rule: the users it may match (see _user_condition)


def compile_rule(kind: str, rule: dict, user_id: str | None = None) -> CompiledRule | None:
    """None for a disabled rule or one that can never match (an unrecognised condition, a bad pattern).

    Room and sender rules match their id exactly; content rules their pattern on the body. Equal rules
    (the defaults most users share) compile to the same object: given the ``user_id`` the ruleset was
    merged for, a server-default rule's conditions on that ID test the evaluated user's ID instead.
    """
    templated = user_id is not None and rule.get("default") is True
    if templated:
        rule = dict(rule, conditions=_replace(rule.get("conditions", []), user_id, _USER))
    return _compile_rule(kind, json.dumps(rule, sort_keys=True, separators=(",", ":")), templated)


def _templated_condition(cond: Any) -> tuple[Test, Candidates] | None:
    """A default rule's condition whose pattern or value is the user's ID placeholder."""
    if not isinstance(cond, dict) or not isinstance(cond.get("key"), str):
        return None
    kind = cond.get("kind")
    if (kind == "event_match" and cond.get("pattern") == _USER) or (
            kind in ("event_property_is", "event_property_contains") and cond.get("value") == _USER):
        return _user_condition(kind, tuple(split_dotted_path(cond["key"])))
    return None


@lru_cache(maxsize=65536)
def _compile_rule(kind: str, canonical: str, templated: bool = False) -> CompiledRule | None:
    rule = json.loads(canonical)
    if not rule.get("enabled", True):
        return None
    rule_id, actions = rule["rule_id"], rule.get("actions", [])
    actions = tuple(a for a in actions if a not in HISTORICAL_ACTIONS) if isinstance(actions, list) else ()
    per_user = False
    if kind == "room":
        test: Test = lambda event, ctx: event.get("room_id") == rule_id
    elif kind == "sender":
        test = lambda event, ctx: event.get("sender") == rule_id
    elif kind == "content":
        if not isinstance(rule.get("pattern"), str):
            return None
        glob = compile_glob(rule["pattern"])
        test = lambda event, ctx: isinstance(body := _lookup(event, _BODY), str) and glob.matches_word(body)
    else:
        conditions = rule.get("conditions", [])
        if not isinstance(conditions, list):
            return None
        tests, candidates = [], None
        for cond in conditions:
            user_cond = _templated_condition(cond) if templated else None
            if user_cond is not None:
                tests.append(user_cond[0])
                candidates = candidates or user_cond[1]
            else:
                tests.append(compile_condition(cond))
        if None in tests:
            return None
        per_user = candidates is not None or _contains_display_name in tests
        if _contains_display_name in tests:
            candidates = None  # a display name may be anywhere in a body
        test = lambda event, ctx: all(t(event, ctx) for t in tests)
        return CompiledRule(rule_id, actions, test, per_user, candidates)
    return CompiledRule(rule_id, actions, test, per_user)


def compile_ruleset(ruleset: dict[str, list[dict]], user_id: str | None = None) -> tuple[CompiledRule, ...]:
    """The rules that can match, in evaluation order (kinds in spec order); ``user_id``: see :func:`compile_rule`
    (users with the same rules then get the same tuple of rules)."""
    compiled = (compile_rule(kind, rule, user_id) for kind in KINDS for rule in ruleset.get(kind, []))
    return tuple(rule for rule in compiled if rule is not None)


def evaluate_compiled(rules: "tuple[CompiledRule, ...] | list[CompiledRule]", event: dict, ctx: PushContext,
                      shared: dict | None = None) -> tuple[str | None, list]:
    """The first matching rule and its actions; ``(None, [])`` if none matches.

    ``shared`` (one dict per event, reused for every user of the room) remembers the results of rules
    that do not depend on the user, so the defaults everyone has are tested once per event.
    """
    for rule in rules:
        if shared is None or rule.per_user:
            matched = rule.test(event, ctx)
        else:
            matched = shared.get(rule)
            if matched is None:
                matched = shared[rule] = rule.test(event, ctx)
        if matched:
            return rule.rule_id, list(rule.actions)
    return None, []


def _own_evaluation(user_id: str) -> bool:
    """An ID that candidates cannot rule out: a glob pattern beyond itself, or case-folded beyond ``lower()``."""
    return not user_id.isascii() or "*" in user_id or "?" in user_id


def evaluate_group(rules: tuple[CompiledRule, ...], event: dict, user_ids: list[str], room_ctx: PushContext,
                   context: Callable[[str], PushContext], shared: dict) -> dict[str, tuple[str | None, list]]:
    """:func:`evaluate_compiled` for each of ``user_ids``, who all have ``rules``, without evaluating each.

    The rules are tested in order up to the first that matches for everyone (``room_ctx``: the room's part
    of the context, no user); users who may match a per-user rule before it (its candidates) are evaluated
    on their own with ``context(user)``, the others all get that first rule's actions.
    """
    candidates: set[str] | None = set()
    first = None
    for rule in rules:
        if rule.per_user:
            found = rule.candidates(event) if rule.candidates is not None else None
            if found is None:
                candidates = None
                break
            candidates |= found
        else:
            matched = shared.get(rule)
            if matched is None:
                matched = shared[rule] = rule.test(event, room_ctx)
            if matched:
                first = rule
                break
    common = (first.rule_id, list(first.actions)) if first is not None else (None, [])
    out = {}
    for user_id in user_ids:
        if candidates is None or (candidates and user_id.lower() in candidates) or _own_evaluation(user_id):
            out[user_id] = evaluate_compiled(rules, event, context(user_id), shared)
        else:
            out[user_id] = common
    return out


def evaluate(ruleset: dict[str, list[dict]], event: dict, ctx: PushContext) -> tuple[str | None, list]:
    return evaluate_compiled(compile_ruleset(ruleset), event, ctx)


def notifies(actions: list) -> bool:
    return "notify" in actions


def highlights(actions: list) -> bool:
    """Spec "highlight" tweak: true when present without a value, false when absent."""
    for action in actions:
        if isinstance(action, dict) and action.get("set_tweak") == "highlight":
            return action.get("value", True) is True
    return False

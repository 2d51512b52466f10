"""Room access rules as French state deployments use them (Tchap's ``im.vector.room.access_rules`` state event,
empty state key, content ``{"rule": "restricted" | "unrestricted" | "direct"}``).

* ``restricted`` (also a room without the event): only users of the internal servers may join or be invited;
* ``unrestricted``: anyone the room's join rules let in;
* ``direct``: a conversation of two people: a join or invite that would make a third member is refused.

A room's rule may only go from ``restricted`` to ``unrestricted``; it is set freely when the room has none.
Pure functions: each returns the reason for a refusal, or None.
"""

from __future__ import annotations

from typing import Callable, Iterable

EVENT_TYPE = "im.vector.room.access_rules"
RESTRICTED, UNRESTRICTED, DIRECT = "restricted", "unrestricted", "direct"
RULES = (RESTRICTED, UNRESTRICTED, DIRECT)


def rule_of(content: dict | None) -> str:
    """The rule a room's access rules event content says (no event: restricted)."""
    rule = (content or {}).get("rule")
    return rule if rule in RULES else RESTRICTED


def rule_change_refusal(current: dict | None, new_content: dict) -> str | None:
    """A new ``im.vector.room.access_rules`` content, given the current one (None: the room has none)."""
    new_rule = new_content.get("rule") if isinstance(new_content, dict) else None
    if new_rule not in RULES:
        return f"rule must be one of {', '.join(RULES)}"
    if current is None:
        return None
    old_rule = rule_of(current)
    if new_rule == old_rule or (old_rule, new_rule) == (RESTRICTED, UNRESTRICTED):
        return None
    return f"the access rule may only change from {RESTRICTED} to {UNRESTRICTED}, not from {old_rule} to {new_rule}"


def membership_refusal(rule: str, membership: str, target: str, is_internal: Callable[[str], bool],
                       members: Iterable[str]) -> str | None:
    """A join or invite of ``target`` (a user id) under ``rule``; ``members``: the users joined or invited now."""
    if membership not in ("join", "invite"):
        return None
    if rule == RESTRICTED and not is_internal(target):
        return f"{target} is not a user of an internal server and the room is restricted"
    if rule == DIRECT and len(set(members) | {target}) > 2:
        return "a direct room holds two people"
    return None

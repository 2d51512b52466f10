"""Space children and room summaries as pure rules (client-server "Spaces", v1.19).

Which ``m.space.child`` events count (a ``via`` list of server names; with ``suggested_only``, only
``suggested: true``), their order (spec "Ordering of children within a space": a valid ``order`` first,
by ``order``, then the event's ``origin_server_ts``, then the room id), and who may see a room's summary
from the room's join rule and history visibility (spec "Room Summaries" / ``GET /hierarchy``, as Synapse).
"""

from __future__ import annotations

import re

SPACE_ROOM_TYPE = "m.space"
PREVIEWABLE_JOIN_RULES = ("public", "knock", "knock_restricted")
RESTRICTED_JOIN_RULES = ("restricted", "knock_restricted")
MAX_ORDER_LENGTH = 50
_INVALID_ORDER = re.compile(r"[^\x20-\x7E]")


def has_valid_via(content: dict) -> bool:
    """A child with no ``via`` (or a redacted one) is no child."""
    via = content.get("via")
    return isinstance(via, list) and bool(via) and all(isinstance(s, str) for s in via)


def child_order_key(child: dict) -> tuple:
    """Sort key of a stripped ``m.space.child`` event (``content``, ``origin_server_ts``, ``state_key``)."""
    order = child["content"].get("order")
    if not isinstance(order, str) or len(order) > MAX_ORDER_LENGTH or _INVALID_ORDER.search(order):
        order = None
    ts = child.get("origin_server_ts")
    return order is None, order or "", ts if isinstance(ts, int) else 0, child["state_key"]


def space_children(children: list[dict], suggested_only: bool) -> list[dict]:
    """The children that count, in the spec's order; each a stripped event as ``children_state`` lists it."""
    kept = [c for c in children if isinstance(c.get("state_key"), str) and c["state_key"].startswith("!")
            and has_valid_via(c["content"]) and (not suggested_only or c["content"].get("suggested") is True)]
    return sorted(kept, key=child_order_key)


def allowed_room_ids(join_rules_content: dict | None) -> list[str]:
    """The rooms whose members a restricted (or knock-restricted) room admits (spec "Restricted rooms")."""
    if not join_rules_content or join_rules_content.get("join_rule") not in RESTRICTED_JOIN_RULES:
        return []
    allow = join_rules_content.get("allow")
    return [a["room_id"] for a in allow if isinstance(a, dict) and a.get("type") == "m.room_membership"
            and isinstance(a.get("room_id"), str)] if isinstance(allow, list) else []


def previewable(entry: dict) -> bool:
    """Anyone may see the summary of a room joinable or knockable by anyone, or world-readable."""
    return entry.get("join_rule", "public") in PREVIEWABLE_JOIN_RULES or entry.get("world_readable") is True

"""Room access rules (``homeserver/events/access_rules.py``) applied to this server's rooms: local joins,
invites and changes of the rule, and joins and invites that come over federation, all through the same checks.

On only when ``room_access_rules.internal_servers`` is set: this server and those count as internal. Each
refusal is 403 M_FORBIDDEN and an ``access_rule_denied`` event in the audit trail.
"""

from __future__ import annotations

from homeserver.errors import forbidden
from homeserver.events.access_rules import EVENT_TYPE, membership_refusal, rule_change_refusal, rule_of
from homeserver.events.identifiers import domain_of


class AccessRules:
    def __init__(self, *, room_heads, server_name: str, internal_servers: list[str] | None, audit):
        self._heads = room_heads
        self._internal = None if internal_servers is None else frozenset([server_name, *internal_servers])
        self._audit = audit

    def is_internal(self, user_id: str) -> bool:
        return self._internal is None or domain_of(user_id) in self._internal

    async def check_membership(self, room_id: str, sender: str, target: str, membership: str,
                               origin: str | None = None) -> None:
        """A join or invite of ``target`` into a room whose state this server holds (others: their servers)."""
        if self._internal is None or await self._heads.room_version(room_id) is None:
            return
        state = await self._heads.current_state(room_id)
        rules = state.get((EVENT_TYPE, ""))
        members = [key for (etype, key), ev in state.items()
                   if etype == "m.room.member" and ev.content.get("membership") in ("join", "invite")]
        reason = membership_refusal(rule_of(rules.content if rules else None), membership, target,
                                    self.is_internal, members)
        await self._refuse_if(reason, sender, room_id, origin, target=target, membership=membership)

    async def check_state(self, room_id: str, sender: str, event_type: str, content: dict) -> None:
        """A new ``im.vector.room.access_rules`` event: the rule only moves from restricted to unrestricted."""
        if self._internal is None or event_type != EVENT_TYPE:
            return
        current = await self._heads.current_state_event(room_id, EVENT_TYPE)
        reason = rule_change_refusal(current.content if current else None, content)
        await self._refuse_if(reason, sender, room_id, None, rule=content.get("rule"))

    async def _refuse_if(self, reason: str | None, actor: str, room_id: str, origin: str | None, **details) -> None:
        if reason is None:
            return
        await self._audit.record("access_rule_denied", actor, room_id, origin, {"reason": reason, **details})
        raise forbidden(f"Room access rules: {reason}")

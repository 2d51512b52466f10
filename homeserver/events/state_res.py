"""State resolution (room v1 "State resolution"; fragment v2-state-res; room v12
"State resolution" = v2.1).

``resolve_state`` picks the algorithm from the room version: v1 for room version 1,
v2 for 2-11 and v2.1 (empty starting state, conflicted state subgraph) for 12.
All orderings use total keys ending in the event ID, so the result does not depend
on the order of ``state_sets`` or of dict iteration.
"""

from __future__ import annotations

import hashlib
import heapq
from typing import Callable, Iterable, Mapping

from .auth_rules import (
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    AuthError,
    auth_types_for_event,
    check_auth,
    get_power_level,
)
from .builder import event_id_list
from .room_versions import RoomVersion, StateResAlgorithm, get_room_version

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]


class _Events:
    """Caching accessor over ``get_event``; also supplies each event's auth event IDs
    (for v12 the create event, implied by the room ID, is added as an auth edge)."""

    def __init__(self, rv: RoomVersion, get_event: Callable[[str], dict | None],
                 is_rejected: Callable[[str], bool] | None) -> None:
        self.rv = rv
        self._get_event = get_event
        self._cache: dict[str, dict | None] = {}
        self._auth: dict[str, list[str]] = {}
        self._is_rejected = is_rejected

    def get(self, event_id: str) -> dict | None:
        try:
            return self._cache[event_id]
        except KeyError:
            ev = self._get_event(event_id)
            self._cache[event_id] = ev
            return ev

    def rejected(self, event_id: str) -> bool:
        return self._is_rejected is not None and bool(self._is_rejected(event_id))

    def auth_ids(self, event_id: str) -> list[str]:
        ids = self._auth.get(event_id)
        if ids is None:
            ev = self.get(event_id)
            ids = event_id_list(ev.get("auth_events")) if ev is not None else []
            if self.rv.room_id_from_create_event and ev is not None and ev.get("type") != CREATE:
                room_id = ev.get("room_id")
                if isinstance(room_id, str) and room_id.startswith("!"):
                    create_id = "$" + room_id[1:]
                    if create_id not in ids:
                        ids = ids + [create_id]
            self._auth[event_id] = ids
        return ids

    def key(self, event_id: str) -> StateKey | None:
        ev = self.get(event_id)
        if ev is None or not isinstance(ev.get("state_key"), str):
            return None
        return (ev.get("type"), ev["state_key"])


def resolve_state(
    room_version: RoomVersion | str,
    state_sets: list[StateMap],
    get_event: Callable[[str], dict | None],
    auth_chains: Callable[[list[str]], set[str]] | None = None,
    *,
    is_rejected: Callable[[str], bool] | None = None,
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` (``(type, state_key) -> event_id``) into one state map.

    ``get_event`` returns the PDU dict for an ID (or ``None`` if unknown; unknown
    events are ignored). ``auth_chains(ids)`` returns the union of the auth chains
    of ``ids`` (events reachable via ``auth_events``, not including ``ids``
    themselves); if ``None`` it is computed by walking ``auth_events``.
    ``is_rejected(event_id)`` marks events rejected on receipt (never admitted, and
    not used as auth events); by default no event is rejected.
    """
    rv = get_room_version(room_version)
    events = _Events(rv, get_event, is_rejected)
    if not state_sets:
        return {}
    if rv.state_res is StateResAlgorithm.V1:
        return _resolve_v1(rv, state_sets, events)
    return _resolve_v2(rv, state_sets, events, auth_chains)


# --------------------------------------------------------------------------------------
# State resolution v2 / v2.1
# --------------------------------------------------------------------------------------


def separate(state_sets: list[StateMap]) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split into the *unconflicted state map* and the *conflicted state set* (v2
    "Definitions"); a key missing from some state set is conflicted."""
    keys: set[StateKey] = set()
    for s in state_sets:
        keys.update(s)
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key in keys:
        values = {s.get(key) for s in state_sets}
        if len(values) == 1 and None not in values:
            unconflicted[key] = values.pop()
        else:
            values.discard(None)
            conflicted[key] = values  # type: ignore[assignment]
    return unconflicted, conflicted


def _walk_auth_chain(events: _Events, start: Iterable[str]) -> set[str]:
    """All events reachable from ``start`` via auth edges (excluding ``start``
    unless reachable)."""
    seen: set[str] = set()
    stack = []
    for eid in start:
        stack.extend(events.auth_ids(eid))
    while stack:
        eid = stack.pop()
        if eid in seen:
            continue
        seen.add(eid)
        stack.extend(a for a in events.auth_ids(eid) if a not in seen)
    return seen


def _auth_difference(events: _Events, state_sets: list[StateMap],
                     auth_chains: Callable[[list[str]], set[str]] | None) -> set[str]:
    """*Auth difference*: union minus intersection of the full auth chains of the
    state sets (each state set's own events count as part of its chain, as Synapse)."""
    chains = []
    for s in state_sets:
        ids = sorted(set(s.values()))
        chain = set(auth_chains(ids)) if auth_chains is not None else _walk_auth_chain(events, ids)
        chain.update(ids)
        chains.append(chain)
    union = set().union(*chains)
    inter = set(chains[0]).intersection(*chains[1:])
    return union - inter


def _conflicted_subgraph(events: _Events, conflicted: set[str]) -> set[str]:
    """v2.1 *conflicted state subgraph*: events on auth paths between conflicted events."""
    reachable = set(conflicted) | _walk_auth_chain(events, conflicted)
    parents: dict[str, list[str]] = {}
    for eid in reachable:
        for aid in events.auth_ids(eid):
            if aid in reachable:
                parents.setdefault(aid, []).append(eid)
    found = set(c for c in conflicted if c in reachable)
    stack = list(found)
    while stack:
        eid = stack.pop()
        for child in parents.get(eid, ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def is_power_event(event: dict) -> bool:
    """*Power event* (v2 "Definitions"); like Synapse, the create event counts too."""
    etype, state_key = event.get("type"), event.get("state_key")
    if state_key == "" and etype in (POWER_LEVELS, JOIN_RULES, CREATE):
        return True
    if etype == MEMBER and isinstance(event.get("content"), dict):
        if event["content"].get("membership") in ("leave", "ban"):
            return event.get("sender") != state_key
    return False


def _auth_id_by_key(events: _Events, event_id: str, key: StateKey) -> str | None:
    for aid in events.auth_ids(event_id):
        ev = events.get(aid)
        if ev is not None and (ev.get("type"), ev.get("state_key")) == key:
            return aid
    return None


def _auth_event_by_key(events: _Events, event_id: str, key: StateKey) -> dict | None:
    aid = _auth_id_by_key(events, event_id, key)
    return events.get(aid) if aid is not None else None


def _sender_power(events: _Events, event_id: str) -> int | float:
    """Sender's power level "when looking at their respective auth_events"."""
    ev = events.get(event_id)
    create = ev if ev.get("type") == CREATE else _auth_event_by_key(events, event_id, (CREATE, ""))
    pl = _auth_event_by_key(events, event_id, (POWER_LEVELS, ""))
    return get_power_level(events.rv, create, pl, ev.get("sender"))


def _reverse_topological_power_sort(events: _Events, power_ids: Iterable[str], full: set[str]) -> list[str]:
    """*Reverse topological power ordering* of the power events and their auth chains
    within the full conflicted set (Kahn's algorithm, smallest candidate first)."""
    graph: dict[str, set[str]] = {}
    stack = list(power_ids)
    while stack:
        eid = stack.pop()
        if eid in graph:
            continue
        edges = {a for a in events.auth_ids(eid) if a in full}
        graph[eid] = edges
        stack.extend(a for a in edges if a not in graph)
    return _lexicographic_topo_sort(graph, lambda e: (-_sender_power(events, e),
                                                     events.get(e).get("origin_server_ts", 0), e))


def _lexicographic_topo_sort(graph: dict[str, set[str]], key: Callable[[str], tuple]) -> list[str]:
    """Kahn's algorithm emitting auth events before the events citing them, choosing
    the smallest ``key`` among candidates."""
    remaining = {node: len(edges) for node, edges in graph.items()}
    cited_by: dict[str, list[str]] = {}
    for node, edges in graph.items():
        for e in edges:
            cited_by.setdefault(e, []).append(node)
    heap = [(key(n), n) for n, count in remaining.items() if count == 0]
    heapq.heapify(heap)
    out: list[str] = []
    while heap:
        _, node = heapq.heappop(heap)
        out.append(node)
        for parent in cited_by.get(node, ()):
            remaining[parent] -= 1
            if remaining[parent] == 0:
                heapq.heappush(heap, (key(parent), parent))
    return out


def _iterative_auth_checks(events: _Events, ordered: list[str], base: dict[StateKey, str]) -> dict[StateKey, str]:
    """*Iterative auth checks*: apply each event that passes the auth rules against
    the state so far (missing keys taken from its own non-rejected auth events)."""
    rv = events.rv
    resolved = dict(base)
    for eid in ordered:
        ev = events.get(eid)
        if ev is None or events.rejected(eid) or not isinstance(ev.get("state_key"), str):
            continue
        auth_state: dict[StateKey, dict] = {}
        for aid in events.auth_ids(eid):
            aev = events.get(aid)
            if aev is not None and not events.rejected(aid) and isinstance(aev.get("state_key"), str):
                auth_state[(aev.get("type"), aev["state_key"])] = aev
        for key in auth_types_for_event(rv, ev):
            rid = resolved.get(key)
            if rid is not None and not events.rejected(rid):
                rev = events.get(rid)
                if rev is not None:
                    auth_state[key] = rev
        if rv.room_id_from_create_event and (CREATE, "") in resolved and ev.get("type") != CREATE:
            cev = events.get(resolved[(CREATE, "")])
            if cev is not None and (CREATE, "") not in auth_state:
                auth_state[(CREATE, "")] = cev
        try:
            check_auth(rv, ev, auth_state)
        except AuthError:
            continue
        resolved[(ev["type"], ev["state_key"])] = eid
    return resolved


def _mainline_sort(events: _Events, event_ids: list[str], resolved_pl: str | None) -> list[str]:
    """*Mainline ordering* based on the resolved power levels event."""
    if not event_ids:
        return []
    mainline: list[str] = []
    pl = resolved_pl
    while pl is not None and pl not in mainline:
        mainline.append(pl)
        pl = _auth_id_by_key(events, pl, (POWER_LEVELS, ""))
    # Position from the oldest end: oldest mainline event -> 1 ... resolved -> n;
    # events not based on the mainline -> 0 (sorted first, as "infinite" position).
    depth_of = {eid: i + 1 for i, eid in enumerate(reversed(mainline))}
    memo: dict[str, int] = {}

    def mainline_depth(eid: str) -> int:
        path = []
        cur: str | None = eid
        result = 0
        while cur is not None:
            if cur in depth_of:
                result = depth_of[cur]
                break
            if cur in memo:
                result = memo[cur]
                break
            path.append(cur)
            cur = _auth_id_by_key(events, cur, (POWER_LEVELS, ""))
        for p in path:
            memo[p] = result
        return result

    return sorted(event_ids, key=lambda e: (mainline_depth(e), events.get(e).get("origin_server_ts", 0), e))


def _resolve_v2(rv: RoomVersion, state_sets: list[StateMap], events: _Events,
                auth_chains: Callable[[list[str]], set[str]] | None) -> dict[StateKey, str]:
    """The v2 algorithm ("Algorithm", steps 1-5); v2.1 for room version 12."""
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted
    conflicted_ids = set().union(*conflicted.values())
    full = conflicted_ids | _auth_difference(events, state_sets, auth_chains)
    v21 = rv.state_res is StateResAlgorithm.V2_1
    if v21:
        full |= _conflicted_subgraph(events, conflicted_ids)
    full = {eid for eid in full if events.get(eid) is not None}
    power_ids = [eid for eid in full if is_power_event(events.get(eid))]
    sorted_power = _reverse_topological_power_sort(events, power_ids, full)
    base = {} if v21 else dict(unconflicted)
    resolved = _iterative_auth_checks(events, sorted_power, base)
    picked = set(sorted_power)
    leftover = [eid for eid in full if eid not in picked]
    leftover = _mainline_sort(events, leftover, resolved.get((POWER_LEVELS, "")))
    resolved = _iterative_auth_checks(events, leftover, resolved)
    resolved.update(unconflicted)
    return resolved


# --------------------------------------------------------------------------------------
# State resolution v1 (room version 1)
# --------------------------------------------------------------------------------------


def _sha1(event_id: str) -> str:
    return hashlib.sha1(event_id.encode("utf-8")).hexdigest()


def _v1_order(events: _Events, ids: Iterable[str]) -> list[str]:
    """Highest depth first, then lowest sha1(event_id)."""
    return sorted(ids, key=lambda e: (-int(events.get(e).get("depth", 0)), _sha1(e), e))


def _v1_allowed(events: _Events, eid: str, auth_state: dict[StateKey, dict]) -> bool:
    try:
        check_auth(events.rv, events.get(eid), auth_state)
    except AuthError:
        return False
    return True


def _v1_resolve_auth_events(events: _Events, ids: set[str], auth_state: dict[StateKey, dict]) -> str:
    """Ascending depth / descending sha1; keep applying while each next event is allowed."""
    order = list(reversed(_v1_order(events, ids)))
    state = dict(auth_state)
    prev = order[0]
    for eid in order[1:]:
        state[events.key(prev)] = events.get(prev)
        if not _v1_allowed(events, eid, state):
            return prev
        prev = eid
    return prev


def _v1_resolve_normal_events(events: _Events, ids: set[str], auth_state: dict[StateKey, dict]) -> str:
    """Highest depth, lowest sha1 that passes auth (else the last candidate, as Synapse)."""
    order = _v1_order(events, ids)
    for eid in order:
        if _v1_allowed(events, eid, auth_state):
            return eid
    return order[-1]


def _resolve_v1(rv: RoomVersion, state_sets: list[StateMap], events: _Events) -> dict[StateKey, str]:
    """Room version 1 state resolution: power levels, then join rules, then members,
    then everything else, each against the state resolved so far."""
    values: dict[StateKey, set[str]] = {}
    for s in state_sets:
        for key, eid in s.items():
            values.setdefault(key, set()).add(eid)
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key, ids in values.items():
        known = {e for e in ids if events.get(e) is not None}
        if len(ids) == 1:
            unconflicted[key] = next(iter(ids))
        elif len(known) == 1:
            unconflicted[key] = next(iter(known))
        elif known:
            conflicted[key] = known
    if not conflicted:
        return unconflicted
    needed: set[StateKey] = {(CREATE, ""), (POWER_LEVELS, ""), (JOIN_RULES, "")}
    for ids in conflicted.values():
        for eid in ids:
            needed |= auth_types_for_event(rv, events.get(eid))
    auth_state: dict[StateKey, dict] = {}
    for key in needed:
        if key in unconflicted and events.get(unconflicted[key]) is not None:
            auth_state[key] = events.get(unconflicted[key])
    resolved: dict[StateKey, str] = {}
    phases = [
        lambda k: k == (POWER_LEVELS, ""),
        lambda k: k[0] == JOIN_RULES,
        lambda k: k[0] == MEMBER,
    ]
    for phase in phases:
        for key in sorted(k for k in conflicted if phase(k)):
            resolved[key] = _v1_resolve_auth_events(events, conflicted[key], auth_state)
        for key in resolved:
            auth_state[key] = events.get(resolved[key])
    for key in sorted(k for k in conflicted if k not in resolved):
        resolved[key] = _v1_resolve_normal_events(events, conflicted[key], auth_state)
    out = dict(unconflicted)
    out.update(resolved)
    return out

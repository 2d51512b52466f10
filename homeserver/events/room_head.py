"""How a new event moves a room's head: its forward extremities, depth and current state.

Spec server-server "Room state resolution" and "Forward extremities": an event that joins the room's DAG stops
its ``prev_events`` being forward extremities and becomes one itself; the room's current state is then the state
after the only extremity, or the resolution of the states after each. Pure functions over event ids: the caller
resolves and loads, these say what changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

StateKey = tuple[str, str]


@dataclass(frozen=True)
class Advance:
    """The room's forward extremities and depth after an event, and the extremities it replaced."""

    extremities: list[str]
    removed: list[str]
    depth: int


def advance(extremities: list[str], depth: int, event_id: str, prev_events: Iterable[str],
            event_depth: int) -> Advance:
    """The head after ``event_id`` (with ``prev_events`` and ``event_depth``) joins the DAG: the extremities it
    refers to are removed, in their order, and it is added last; the depth is the greater of the two."""
    prevs = set(prev_events)
    kept = [e for e in extremities if e not in prevs]
    return Advance(kept + [event_id], [e for e in extremities if e in prevs], max(depth, event_depth))


def state_after(state_before: Mapping[StateKey, str], key: StateKey | None, event_id: str) -> dict[StateKey, str]:
    """The state after an event: the state before it, with the event at its key if it is a state event."""
    state = dict(state_before)
    if key is not None:
        state[key] = event_id
    return state


def state_delta(current: Mapping[StateKey, str], new: Mapping[StateKey, str]) -> dict[StateKey, str]:
    """The entries of ``new`` that ``current`` lacks or holds another event for (what the current-state table
    must write). A key of ``current`` that ``new`` lacks is not in the delta (the table keeps it)."""
    return {k: v for k, v in new.items() if current.get(k) != v}

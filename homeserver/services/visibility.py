"""History visibility (client-server "Room History Visibility"), as pure decisions.

Given a user's membership events and the room's history_visibility events
(both in stream order), decide which events the user may see.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass


@dataclass(frozen=True)
class Timeline:
    """A sorted list of (stream position, value): the value in force at any position."""

    positions: list[int]
    values: list[str]

    @classmethod
    def of(cls, pairs: list[tuple[int, str]]) -> "Timeline":
        pairs = sorted(pairs)
        return cls([p for p, _ in pairs], [v for _, v in pairs])

    def at(self, position: int, default: str) -> str:
        """The value in force just before ``position`` (state before the event)."""
        i = bisect_right(self.positions, position - 1)
        return self.values[i - 1] if i else default

    def any_after(self, position: int, value: str) -> bool:
        """Whether ``value`` takes force at or after ``position``."""
        i = bisect_right(self.positions, position - 1)
        return value in self.values[i:]


# From the most to the least permissive.
PERMISSIVENESS = ("world_readable", "shared", "invited", "joined")


def visible(position: int, *, event_sender: str, event_state_key: str | None, event_type: str,
            user_id: str, memberships: Timeline, visibilities: Timeline) -> bool:
    """Spec "Visibility of events": world_readable; joined at the event; shared and joined at any point
    after the event; invited at the event while the visibility is invited. A history_visibility change is
    seen under the more permissive of the values before and after it (as Synapse), so that members see the
    boundary where the history they can read starts or ends."""
    if event_type == "m.room.member" and event_state_key == user_id:
        return True
    visibility = visibilities.at(position, "shared")
    if event_type == "m.room.history_visibility" and event_state_key == "":
        after = visibilities.at(position + 1, "shared")
        if after in PERMISSIVENESS and (visibility not in PERMISSIVENESS
                                        or PERMISSIVENESS.index(after) < PERMISSIVENESS.index(visibility)):
            visibility = after
    if visibility == "world_readable":
        return True
    membership = memberships.at(position, "leave")
    if membership == "join":
        return True
    if visibility == "shared" and memberships.any_after(position, "join"):
        return True
    if visibility == "invited" and membership == "invite":
        return True
    return False


def visible_to_server(visibility: str, memberships: list[str], *, joined_now: bool) -> bool:
    """Server-server "Retrieving events" and Synapse's ``filter_events_for_server``: whether a server may
    read an event, given the room's history visibility at the event and its users' memberships there.

    ``world_readable`` is readable by any server; ``shared`` (the default, also for an unknown value) by
    a server with a user joined now; ``invited`` by one with a user invited or joined at the event;
    ``joined`` by one with a user joined at the event.
    """
    if visibility == "joined":
        return "join" in memberships
    if visibility == "invited":
        return "join" in memberships or "invite" in memberships
    return visibility == "world_readable" or joined_now

"""The join gate: requests about a room wait while a join of it completes (named by room id or alias), and
every room waits at start-up until the joins to resume are known. On Twisted's fake clock, no database."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from homeserver.errors import not_found
from homeserver.services.room_events.gate import JOIN_WAIT_S, JoinGate

ROOM, OTHER = "!held:remote.test", "!free:remote.test"


class Aliases:
    """The directory's resolution of aliases, in memory; counts the lookups."""

    def __init__(self, rooms: dict[str, str]):
        self.rooms = rooms
        self.asked: list[str] = []

    async def resolve(self, alias: str) -> dict:
        self.asked.append(alias)
        if alias not in self.rooms:
            raise not_found(f"Room alias {alias} not found")
        return {"room_id": self.rooms[alias], "servers": []}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def aliases() -> Aliases:
    return Aliases({"#held:remote.test": ROOM, "#free:remote.test": OTHER})


@pytest.fixture
def gate(clock, aliases) -> JoinGate:
    return JoinGate(clock=clock, store=None, aliases=aliases)


def wait(gate: JoinGate, room: str) -> defer.Deferred:
    return defer.ensureDeferred(gate.settled(room))


def test_nothing_waits_and_no_alias_is_resolved_while_no_join_completes(gate, aliases):
    assert wait(gate, ROOM).called and wait(gate, "#held:remote.test").called
    assert aliases.asked == []


@pytest.mark.parametrize("name", [ROOM, "#held:remote.test"])
def test_a_room_named_by_id_or_alias_waits_for_its_join(gate, name):
    gate.complete_later(ROOM)
    held, free = wait(gate, name), wait(gate, "#free:remote.test")
    assert not held.called and free.called
    gate.completed(ROOM)
    assert held.called


def test_an_alias_that_does_not_resolve_does_not_wait(gate, aliases):
    gate.complete_later(ROOM)
    assert wait(gate, "#unknown:remote.test").called
    assert aliases.asked == ["#unknown:remote.test"]


def test_a_join_that_does_not_complete_releases_its_waiters_after_the_limit(gate, clock):
    gate.complete_later(ROOM)
    held = wait(gate, ROOM)
    clock.advance(JOIN_WAIT_S - 1)
    assert not held.called
    clock.advance(1)
    assert held.called
    assert not wait(gate, ROOM).called  # the join is still completing: the next request waits again


def test_at_start_up_every_room_waits_until_the_joins_to_resume_are_known(gate):
    gate.hold_until_partial_joins_known()
    first, second = wait(gate, OTHER), wait(gate, "#free:remote.test")
    assert not first.called and not second.called
    gate.complete_later(ROOM)
    held = wait(gate, ROOM)
    gate.partial_joins_known()
    assert first.called and second.called and not held.called
    gate.completed(ROOM)
    assert held.called

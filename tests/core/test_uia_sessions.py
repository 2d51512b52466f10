"""The in-memory user-interactive auth sessions (spec "User-Interactive Authentication API"): bounded in
number per owner and in total, expired after their lifetime, only found by their owner."""

from __future__ import annotations

from hypothesis import given, strategies as st

from homeserver.services.auth import UiaSessions


class Clock:
    def __init__(self):
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def test_total_bound_drops_the_oldest_and_expiry_drops_old_sessions():
    clock = Clock()
    sessions = UiaSessions(clock, lifetime_ms=1000, total=3)
    ids = []
    for owner in ("a", "b", "c", "d"):
        clock.ms += 10
        ids.append(sessions.create(owner, b"digest", 2)[0])
    assert len(sessions) == 3
    assert sessions.get(ids[0], "a") is None
    assert sessions.get(ids[1], "b") is not None and sessions.get(ids[1], "c") is None
    clock.ms = 1025  # b's session (created at 20) is past its lifetime, c's (30) is not
    assert sessions.get(ids[1], "b") is None and sessions.get(ids[2], "c") is not None
    assert len(sessions) == 2


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 400)), max_size=60))
def test_bounds_hold_whatever_the_sequence(steps):
    clock = Clock()
    sessions = UiaSessions(clock, lifetime_ms=1000, total=5)
    live: list[tuple[str, str]] = []
    for owner, advance in steps:
        clock.ms += advance
        live.append((sessions.create(owner, b"d", 2)[0], owner))
        assert len(sessions) <= 5
        found = [(sid, o) for sid, o in live if sessions.get(sid, o) is not None]
        assert all(sum(1 for _, o in found if o == who) <= 2 for who in "abc")
        assert (live[-1][0], owner) in found

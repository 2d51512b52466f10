"""How a new event moves a room's head (server-server "Forward extremities", "Room state resolution")."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from homeserver.events.room_head import advance, state_after, state_delta

EVENT_IDS = st.sampled_from([f"$e{i}" for i in range(12)])
KEYS = st.tuples(st.sampled_from(["m.room.member", "m.room.name", "m.room.topic"]),
                 st.sampled_from(["", "@a:x", "@b:y"]))
STATES = st.dictionaries(KEYS, EVENT_IDS, max_size=9)


def test_an_event_on_the_only_extremity_replaces_it():
    moved = advance(["$a"], 5, "$b", ["$a"], 6)
    assert (moved.extremities, moved.removed, moved.depth) == (["$b"], ["$a"], 6)


def test_an_event_merging_two_extremities_leaves_one():
    moved = advance(["$a", "$b", "$c"], 9, "$m", ["$c", "$a"], 7)
    assert (moved.extremities, moved.removed, moved.depth) == (["$b", "$m"], ["$a", "$c"], 9)


def test_an_event_on_an_older_event_forks_the_room():
    moved = advance(["$a"], 4, "$f", ["$old"], 3)
    assert (moved.extremities, moved.removed, moved.depth) == (["$a", "$f"], [], 4)


def test_the_state_after_a_state_event_holds_it_and_a_message_changes_nothing():
    before = {("m.room.name", ""): "$n1", ("m.room.member", "@a:x"): "$j"}
    assert state_after(before, ("m.room.name", ""), "$n2") == {("m.room.name", ""): "$n2",
                                                               ("m.room.member", "@a:x"): "$j"}
    assert state_after(before, None, "$msg") == before
    assert before[("m.room.name", "")] == "$n1"  # the state before is not changed


def test_the_delta_lists_new_and_changed_keys_only():
    current = {("m.room.name", ""): "$n1", ("m.room.topic", ""): "$t", ("m.room.member", "@a:x"): "$j"}
    new = {("m.room.name", ""): "$n2", ("m.room.topic", ""): "$t", ("m.room.member", "@b:y"): "$k"}
    assert state_delta(current, new) == {("m.room.name", ""): "$n2", ("m.room.member", "@b:y"): "$k"}


@given(st.lists(EVENT_IDS, unique=True, max_size=6), st.integers(0, 100), EVENT_IDS, st.lists(EVENT_IDS, max_size=6),
       st.integers(0, 100))
def test_advance_keeps_every_extremity_not_referred_to_and_adds_the_event(extremities, depth, event_id, prevs,
                                                                           event_depth):
    assume(event_id not in extremities)  # an event already an extremity is stored once, never advanced again
    moved = advance(extremities, depth, event_id, prevs, event_depth)
    assert moved.extremities[-1] == event_id
    assert moved.extremities[:-1] + moved.removed == [e for e in extremities if e not in prevs] + \
        [e for e in extremities if e in prevs]
    assert set(moved.removed) == set(extremities) & set(prevs)
    assert moved.depth == max(depth, event_depth)


@given(STATES, STATES)
def test_applying_the_delta_to_the_current_state_gives_the_new_one_on_its_keys(current, new):
    delta = state_delta(current, new)
    applied = {**current, **delta}
    assert {k: applied[k] for k in new} == new
    assert all(current.get(k) != v for k, v in delta.items())
    assert state_delta(applied, new) == {}


@given(STATES, st.one_of(st.none(), KEYS), EVENT_IDS)
def test_the_state_after_an_event_differs_from_the_state_before_at_its_key_only(before, key, event_id):
    after = state_after(before, key, event_id)
    assert set(state_delta(before, after)) <= ({key} if key is not None else set())
    if key is not None:
        assert after[key] == event_id

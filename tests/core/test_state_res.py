"""State resolution scenarios (v1, v2, v2.1) and order-independence properties."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.state_res import _Events, _conflicted_subgraph, resolve_state, separate
from homeserver.events.builder import event_id_list
from homeserver.events.room_versions import get_room_version

from .roomkit import standard_room

ALICE, BOB, CAROL, EVE = "@alice:a.test", "@bob:b.test", "@carol:c.test", "@eve:e.test"
V2_FAMILY = ["2", "6", "10", "11", "12"]


def resolve(room, heads, **kw):
    return resolve_state(room.rv, [room.state_after[h] for h in heads], room.events.get, **kw)


def users(room, mapping):
    """Power level users, leaving the (infinitely powerful) v12 creator out."""
    if room.rv.creators_infinite_power:
        return {u: lvl for u, lvl in mapping.items() if u != ALICE}
    return mapping


@pytest.mark.parametrize("v", V2_FAMILY + ["1"])
def test_no_conflict_returns_union(v):
    room = standard_room(v)
    base = room.head
    a = room.add(ALICE, "m.room.name", {"name": "n"}, "")
    b = room.add(ALICE, "m.room.message", {"body": "x"}, prev=base)
    res = resolve(room, [a["event_id"], b["event_id"]])
    if v == "1":
        assert res == room.state_after[a["event_id"]]
    else:  # v2: a key missing from one state set is conflicted; the name event wins
        assert res[("m.room.name", "")] == a["event_id"]


@pytest.mark.parametrize("v", V2_FAMILY)
def test_ban_races_join(v):
    room = standard_room(v)
    fork = room.head
    ban = room.member(ALICE, EVE, "ban")
    join = room.join(EVE, prev=fork)
    res = resolve(room, [ban["event_id"], join["event_id"]])
    assert res[("m.room.member", EVE)] == ban["event_id"]
    res2 = resolve(room, [join["event_id"], ban["event_id"]])
    assert res == res2


@pytest.mark.parametrize("v", V2_FAMILY)
def test_demotion_races_kick(v):
    room = standard_room(v, pl_users=None)
    room.power_levels(ALICE, users(room, {ALICE: 100, BOB: 50}))
    room.join(BOB)
    room.join(CAROL)
    fork = room.head
    demote = room.power_levels(ALICE, users(room, {ALICE: 100, BOB: 0}))
    kick = room.member(BOB, CAROL, "leave", prev=fork, ts=demote["origin_server_ts"] - 100)
    res = resolve(room, [demote["event_id"], kick["event_id"]])
    assert res[("m.room.power_levels", "")] == demote["event_id"]
    # the kick by the demoted moderator is not admitted
    assert room.events[res[("m.room.member", CAROL)]]["content"]["membership"] == "join"


@pytest.mark.parametrize("v", V2_FAMILY)
def test_conflicting_power_levels_same_sender_later_ts_wins(v):
    room = standard_room(v)
    fork = room.head
    pl1 = room.power_levels(ALICE, users(room, {ALICE: 100, BOB: 50}), ts=50_000)
    pl2 = room.power_levels(ALICE, users(room, {ALICE: 100, CAROL: 50}), prev=fork, ts=40_000)
    res = resolve(room, [pl1["event_id"], pl2["event_id"]])
    assert res[("m.room.power_levels", "")] == pl1["event_id"]


@pytest.mark.parametrize("v", V2_FAMILY)
def test_join_rule_change_races_join(v):
    room = standard_room(v)
    fork = room.head
    jr = room.join_rules(ALICE, "invite")
    join = room.join(EVE, prev=fork)
    res = resolve(room, [jr["event_id"], join["event_id"]])
    assert res[("m.room.join_rules", "")] == jr["event_id"]
    assert ("m.room.member", EVE) not in res


@pytest.mark.parametrize("v", V2_FAMILY)
def test_join_rule_change_races_invite(v):
    room = standard_room(v, join_rule="public")
    room.join(BOB)
    fork = room.head
    jr = room.join_rules(ALICE, "invite")
    invite = room.member(BOB, CAROL, "invite", prev=fork)
    res = resolve(room, [jr["event_id"], invite["event_id"]])
    # invites are not power events: the invite is applied after the join rule and
    # still passes (bob is joined with invite level 0)
    assert res[("m.room.join_rules", "")] == jr["event_id"]
    assert res[("m.room.member", CAROL)] == invite["event_id"]


@pytest.mark.parametrize("v", V2_FAMILY)
def test_topic_resolved_by_mainline(v):
    room = standard_room(v)
    room.join(BOB)
    fork = room.head
    pl1 = room.power_levels(ALICE, users(room, {ALICE: 100, BOB: 50}))
    topic1 = room.add(ALICE, "m.room.topic", {"topic": "one"}, "", ts=10_000)
    # other branch: a topic based on the older power levels, with a *later* timestamp
    topic2 = room.add(ALICE, "m.room.topic", {"topic": "two"}, "", prev=fork, ts=90_000)
    res = resolve(room, [topic1["event_id"], topic2["event_id"]])
    assert res[("m.room.power_levels", "")] == pl1["event_id"]
    assert res[("m.room.topic", "")] == topic1["event_id"]


@pytest.mark.parametrize("v", V2_FAMILY)
def test_topic_same_mainline_position_uses_timestamp(v):
    room = standard_room(v)
    fork = room.head
    t1 = room.add(ALICE, "m.room.topic", {"topic": "one"}, "", ts=20_000)
    t2 = room.add(ALICE, "m.room.topic", {"topic": "two"}, "", prev=fork, ts=10_000)
    res = resolve(room, [t1["event_id"], t2["event_id"]])
    assert res[("m.room.topic", "")] == t1["event_id"]


@pytest.mark.parametrize("v", V2_FAMILY)
def test_unauthorised_topic_not_admitted(v):
    room = standard_room(v)
    room.join(BOB)
    fork = room.head
    demote = room.power_levels(ALICE, users(room, {ALICE: 100}))
    base = room.power_levels(ALICE, users(room, {ALICE: 100, BOB: 50}), prev=fork)
    topic = room.add(BOB, "m.room.topic", {"topic": "bob"}, "")
    res = resolve(room, [demote["event_id"], topic["event_id"]])
    assert res.get(("m.room.topic", "")) != topic["event_id"] or \
        res[("m.room.power_levels", "")] == base["event_id"]


def test_v12_creator_outranks_powerful_admin():
    room = standard_room("12")
    room.power_levels(ALICE, {BOB: 100})
    room.join(BOB)
    room.join(CAROL)
    fork = room.head
    # Bob (100) bans Carol; concurrently the creator demotes Bob.
    demote = room.power_levels(ALICE, {BOB: 0}, ts=100_000)
    ban = room.member(BOB, CAROL, "ban", prev=fork, ts=1)
    res = resolve(room, [demote["event_id"], ban["event_id"]])
    assert res[("m.room.power_levels", "")] == demote["event_id"]
    assert room.events[res[("m.room.member", CAROL)]]["content"]["membership"] == "join"
    assert res[("m.room.create", "")] == room.create_id
    # resolution never needs the create event in auth_events
    assert all(room.create_id not in e["auth_events"] for e in room.events.values())


def test_v12_additional_creator_cannot_be_kicked_in_resolution():
    room = standard_room("12", create_content={"additional_creators": [BOB]})
    room.power_levels(ALICE, {CAROL: 100})
    room.join(BOB)
    room.join(CAROL)
    fork = room.head
    kick = room.draft(CAROL, "m.room.member", {"membership": "leave"}, BOB)
    room.events[kick["event_id"]] = kick
    room.state_after[kick["event_id"]] = {**room.state_after[fork[0]], ("m.room.member", BOB): kick["event_id"]}
    msg = room.add(BOB, "m.room.topic", {"topic": "x"}, "", prev=fork)
    res = resolve(room, [kick["event_id"], msg["event_id"]])
    assert room.events[res[("m.room.member", BOB)]]["content"]["membership"] == "join"


def test_conflicted_subgraph():
    room = standard_room("12")
    room.join(BOB)
    pl_a = room.power_levels(ALICE, {BOB: 50})
    mid = room.power_levels(ALICE, {BOB: 60})
    pl_c = room.power_levels(ALICE, {BOB: 70})
    events = _Events(get_room_version("12"), room.events.get, None)
    sub = _conflicted_subgraph(events, {pl_a["event_id"], pl_c["event_id"]})
    assert sub == {pl_a["event_id"], mid["event_id"], pl_c["event_id"]}


@pytest.mark.parametrize("v", ["2", "12"])
def test_auth_chains_callback_matches_walk(v):
    room = standard_room(v)
    room.join(BOB)
    fork = room.head
    a = room.power_levels(ALICE, users(room, {ALICE: 100, BOB: 50}))
    b = room.member(ALICE, BOB, "ban", prev=fork)
    heads = [a["event_id"], b["event_id"]]
    calls = []

    def chains(ids):
        calls.append(ids)
        out, stack = set(), [x for i in ids for x in event_id_list(room.events[i]["auth_events"])]
        while stack:
            e = stack.pop()
            if e not in out:
                out.add(e)
                stack.extend(event_id_list(room.events[e]["auth_events"]))
        return out

    assert resolve(room, heads, auth_chains=chains) == resolve(room, heads)
    assert calls


def test_rejected_events_not_admitted():
    room = standard_room("10")
    fork = room.head
    t1 = room.add(ALICE, "m.room.topic", {"topic": "one"}, "", ts=10)
    t2 = room.add(ALICE, "m.room.topic", {"topic": "two"}, "", prev=fork, ts=20)
    heads = [t1["event_id"], t2["event_id"]]
    assert resolve(room, heads)[("m.room.topic", "")] == t2["event_id"]
    res = resolve(room, heads, is_rejected=lambda e: e == t2["event_id"])
    assert res[("m.room.topic", "")] == t1["event_id"]


def test_separate_treats_missing_key_as_conflict():
    unc, con = separate([{("a", ""): "$1", ("b", ""): "$2"}, {("a", ""): "$1"}])
    assert unc == {("a", ""): "$1"} and con == {("b", ""): {"$2"}}


# ---------------------------------------------------------------- v1 algorithm


def test_v1_power_levels_conflict_and_topic_depth():
    room = standard_room("1")
    room.join(BOB)
    fork = room.head
    pl1 = room.power_levels(ALICE, {ALICE: 100, BOB: 50})
    topic_deep = room.add(ALICE, "m.room.topic", {"topic": "deep"}, "")
    pl2 = room.power_levels(ALICE, {ALICE: 100, BOB: 10}, prev=fork)
    res = resolve(room, [topic_deep["event_id"], pl2["event_id"]])
    assert res[("m.room.topic", "")] == topic_deep["event_id"]
    assert res[("m.room.power_levels", "")] in (pl1["event_id"], pl2["event_id"])
    assert res == resolve(room, [pl2["event_id"], topic_deep["event_id"]])


def test_v1_ban_vs_join():
    room = standard_room("1")
    fork = room.head
    ban = room.member(ALICE, EVE, "ban")
    join = room.join(EVE, prev=fork)
    res = resolve(room, [ban["event_id"], join["event_id"]])
    assert res[("m.room.member", EVE)] in (ban["event_id"], join["event_id"])
    assert res == resolve(room, [join["event_id"], ban["event_id"]])


# ---------------------------------------------------------------- properties


def _three_branch_room(v):
    room = standard_room(v)
    room.join(BOB)
    room.join(CAROL)
    fork = room.head
    heads = [
        room.power_levels(ALICE, users(room, {ALICE: 100, BOB: 50}))["event_id"],
        room.member(ALICE, CAROL, "ban", prev=fork)["event_id"],
        room.add(BOB, "m.room.message", {"body": "x"}, prev=fork)["event_id"],
    ]
    topic = room.add(ALICE, "m.room.topic", {"topic": "t"}, "", prev=fork)
    heads.append(topic["event_id"])
    return room, heads


_ROOMS = {v: _three_branch_room(v) for v in ("1", "2", "10", "12")}


@settings(max_examples=40, deadline=None)
@given(v=st.sampled_from(sorted(_ROOMS)), data=st.data())
def test_order_independence(v, data):
    room, heads = _ROOMS[v]
    expected = resolve(room, heads)
    perm = data.draw(st.permutations(heads))
    sets = []
    for h in perm:
        items = list(room.state_after[h].items())
        items = data.draw(st.permutations(items))
        sets.append(dict(items))
    assert resolve_state(room.rv, sets, room.events.get) == expected


def test_all_permutations_equal():
    room, heads = _ROOMS["12"]
    results = {tuple(sorted(resolve(room, list(p)).items())) for p in itertools.permutations(heads)}
    assert len(results) == 1

"""Hand-built authorisation rule scenarios (room versions 1-12)."""

import pytest
from nacl.signing import SigningKey
from unpaddedbase64 import encode_base64

from homeserver.events.auth_rules import (
    auth_types_for_event,
    check_auth,
    check_auth_events,
    get_power_level,
    may_redact_others,
    user_can_redact,
    user_can_send,
)
from homeserver.events.errors import AuthError
from homeserver.events.signing import sign_json

from .roomkit import Room, standard_room

ALL = [str(v) for v in range(1, 13)]
ALICE, BOB, CAROL, DAVE = "@alice:a.test", "@bob:b.test", "@carol:c.test", "@dave:d.test"


def rule_of(room, ev, at=None):
    with pytest.raises(AuthError) as ei:
        room.check(ev, at)
    return ei.value.rule


def test_auth_error_attributes():
    e = AuthError("member.join.banned", "nope")
    assert e.rule == "member.join.banned" and e.reason == "nope" and "member.join.banned" in str(e)


# ------------------------------------------------------------------ create events


@pytest.mark.parametrize("v", ALL)
def test_create_and_creator_join(v):
    room = standard_room(v)
    assert room.current_state()[("m.room.member", ALICE)]


@pytest.mark.parametrize("v", ALL)
def test_create_with_prev_events_rejected(v):
    room = Room(v)
    bad = room.draft(ALICE, "m.room.create", {"room_version": v}, "")
    assert rule_of(room, bad, at=[]) == "create.prev_events"


@pytest.mark.parametrize("v", ["1", "6", "10", "11"])
def test_create_room_id_domain_must_match_sender(v):
    room = Room(v)
    ev = dict(room.events[room.create_id])
    ev["room_id"] = "!other:elsewhere.test"
    with pytest.raises(AuthError) as ei:
        check_auth(v, ev, {})
    assert ei.value.rule == "create.room_id"


def test_create_unknown_room_version_rejected():
    ev = dict(Room("10").events[Room("10").create_id])
    ev["content"] = {"creator": ALICE, "room_version": "999"}
    with pytest.raises(AuthError) as ei:
        check_auth("10", ev, {})
    assert ei.value.rule == "create.room_version"


def test_v10_create_needs_creator_v11_does_not():
    room10 = Room("10")
    ev = dict(room10.events[room10.create_id])
    ev["content"] = {"room_version": "10"}
    with pytest.raises(AuthError) as ei:
        check_auth("10", ev, {})
    assert ei.value.rule == "create.creator"
    room11 = Room("11")
    ev11 = room11.events[room11.create_id]
    assert "creator" not in ev11["content"]
    check_auth("11", ev11, {})
    room11.join(ALICE)  # the creator (sender) may join first


def test_v12_create_rules():
    room = Room("12")
    create = room.events[room.create_id]
    assert "room_id" not in create
    assert room.room_id == "!" + room.create_id[1:]
    check_auth("12", create, {})
    with pytest.raises(AuthError) as ei:
        check_auth("12", dict(create, room_id="!x:a.test"), {})
    assert ei.value.rule == "create.room_id"
    for bad in (["not-a-user"], "@bob:b.test", [1], ["@bob"]):
        ev = dict(create, content={"room_version": "12", "additional_creators": bad})
        with pytest.raises(AuthError) as ei:
            check_auth("12", ev, {})
        assert ei.value.rule == "create.additional_creators"
    check_auth("12", dict(create, content={"additional_creators": [BOB]}), {})


def test_v12_room_id_must_match_create_event():
    room = standard_room("12")
    other = standard_room("12", ts=5000)
    msg = room.draft(ALICE, "m.room.message", {"body": "hi"})
    state = {k: room.events[v] for k, v in room.current_state().items()}
    state[("m.room.create", "")] = other.events[other.create_id]
    with pytest.raises(AuthError) as ei:
        check_auth("12", msg, state)
    assert ei.value.rule == "room_id.create_event"


# ------------------------------------------------------------------ auth_events checks


def test_auth_types_selection():
    room = standard_room("10")
    join = room.draft(BOB, "m.room.member", {"membership": "join", "join_authorised_via_users_server": ALICE}, BOB)
    assert auth_types_for_event("10", join) == {
        ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", BOB),
        ("m.room.join_rules", ""), ("m.room.member", ALICE),
    }
    assert ("m.room.member", ALICE) not in auth_types_for_event("7", join)
    assert ("m.room.create", "") not in auth_types_for_event("12", join)
    inv = {"type": "m.room.member", "sender": ALICE, "state_key": BOB,
           "content": {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}}}
    assert ("m.room.third_party_invite", "tok") in auth_types_for_event("10", inv)
    assert auth_types_for_event("10", {"type": "m.room.create", "sender": ALICE, "content": {}}) == set()


def test_check_auth_events_rules():
    room = standard_room("10")
    st = room.current_state()
    ev = room.draft(ALICE, "m.room.message", {"body": "x"})
    create, pl = room.events[st[("m.room.create", "")]], room.events[st[("m.room.power_levels", "")]]
    member = room.events[st[("m.room.member", ALICE)]]
    check_auth_events("10", ev, [create, pl, member])
    with pytest.raises(AuthError) as ei:
        check_auth_events("10", ev, [create, pl, pl])
    assert ei.value.rule == "auth_events.duplicate"
    jr = room.events[st[("m.room.join_rules", "")]]
    with pytest.raises(AuthError) as ei:
        check_auth_events("10", ev, [create, jr])
    assert ei.value.rule == "auth_events.unexpected"
    with pytest.raises(AuthError) as ei:
        check_auth_events("10", ev, [pl, member])
    assert ei.value.rule == "auth_events.no_create"
    with pytest.raises(AuthError) as ei:
        check_auth_events("10", ev, [create, pl], is_rejected=lambda e: e is pl)
    assert ei.value.rule == "auth_events.rejected"
    with pytest.raises(AuthError) as ei:
        check_auth_events("10", ev, [create, dict(pl, room_id="!other:a.test")])
    assert ei.value.rule == "auth_events.room_id"


def test_v12_create_not_allowed_in_auth_events():
    room = standard_room("12")
    st = room.current_state()
    ev = room.draft(ALICE, "m.room.message", {"body": "x"})
    assert room.create_id not in ev["auth_events"]
    create = room.events[room.create_id]
    with pytest.raises(AuthError) as ei:
        check_auth_events("12", ev, [create])
    assert ei.value.rule == "auth_events.unexpected"
    check_auth_events("12", ev, [room.events[st[("m.room.power_levels", "")]]])


# ------------------------------------------------------------------ federate


@pytest.mark.parametrize("v", ["3", "11", "12"])
def test_m_federate_false(v):
    room = standard_room(v, create_content={"m.federate": False})
    ev = room.draft(BOB, "m.room.member", {"membership": "join"}, BOB)
    assert rule_of(room, ev) == "federate"
    room.join("@alice2:a.test")


# ------------------------------------------------------------------ joins


@pytest.mark.parametrize("v", ALL)
def test_join_public_and_sender_mismatch(v):
    room = standard_room(v)
    room.join(BOB)
    ev = room.draft(BOB, "m.room.member", {"membership": "join"}, CAROL)
    assert rule_of(room, ev) == "member.join.sender"


@pytest.mark.parametrize("v", ALL)
def test_join_banned(v):
    room = standard_room(v)
    room.member(ALICE, BOB, "ban")
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "join"}, BOB)) == "member.join.banned"


@pytest.mark.parametrize("v", ALL)
def test_join_invite_only(v):
    room = standard_room(v, join_rule="invite")
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "join"}, BOB)) == "member.join.invite_only"
    room.member(ALICE, BOB, "invite")
    room.join(BOB)


@pytest.mark.parametrize("v", ALL)
def test_join_no_join_rules_defaults_to_invite(v):
    room = Room(v)
    room.join(ALICE)
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "join"}, BOB)) == "member.join.invite_only"


@pytest.mark.parametrize("v", ALL)
def test_join_private_rule_rejected(v):
    room = standard_room(v, join_rule="private")
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "join"}, BOB)) == "member.join.not_allowed"


def test_non_creator_first_join_rejected():
    room = Room("10")
    ev = room.draft(BOB, "m.room.member", {"membership": "join"}, BOB)
    assert rule_of(room, ev) == "member.join.invite_only"


@pytest.mark.parametrize("v", ["1", "6"])
def test_knock_rule_unknown_before_v7(v):
    room = standard_room(v, join_rule="knock")
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "knock"}, BOB)) == "member.unknown"
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "join"}, BOB)) == "member.join.not_allowed"


# ------------------------------------------------------------------ restricted joins


def _restricted_join(room, user, authoriser, signers):
    return room.draft(user, "m.room.member",
                      {"membership": "join", "join_authorised_via_users_server": authoriser}, user,
                      extra_signers=signers)


@pytest.mark.parametrize("v", ["8", "9", "10", "11", "12"])
def test_restricted_join(v):
    room = standard_room(v, join_rule="restricted")
    room.join_rules(ALICE, "restricted", content={"allow": [{"type": "m.room_membership", "room_id": "!o:a.test"}]})
    plain = room.draft(BOB, "m.room.member", {"membership": "join"}, BOB)
    assert rule_of(room, plain) == "member.join.restricted"
    ok = _restricted_join(room, BOB, ALICE, ("a.test",))
    room.check(ok)
    unsigned = _restricted_join(room, BOB, ALICE, ())
    assert rule_of(room, unsigned) == "member.authoriser_signature"
    not_member = _restricted_join(room, BOB, DAVE, ("d.test",))
    assert rule_of(room, not_member) == "member.join.restricted"
    # authoriser without invite power
    room.member(ALICE, CAROL, "invite")
    room.join(CAROL)
    pl_users = {} if v == "12" else {ALICE: 100}
    room.power_levels(ALICE, pl_users, content={"invite": 50})
    weak = _restricted_join(room, BOB, CAROL, ("c.test",))
    assert rule_of(room, weak) == "member.join.restricted"


def test_restricted_rule_unknown_before_v8():
    room = standard_room("7", join_rule="restricted")
    ev = _restricted_join(room, BOB, ALICE, ("a.test",))
    assert rule_of(room, ev) == "member.join.not_allowed"


@pytest.mark.parametrize("v,ok", [("9", False), ("10", True), ("12", True)])
def test_knock_restricted(v, ok):
    room = standard_room(v, join_rule="knock_restricted")
    join = _restricted_join(room, BOB, ALICE, ("a.test",))
    knock = room.draft(CAROL, "m.room.member", {"membership": "knock"}, CAROL)
    if ok:
        room.check(join)
        room.check(knock)
    else:
        assert rule_of(room, join) == "member.join.not_allowed"
        assert rule_of(room, knock) == "member.knock.join_rule"


# ------------------------------------------------------------------ invites


@pytest.mark.parametrize("v", ALL)
def test_invite_rules(v):
    room = standard_room(v, join_rule="invite")
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "invite"}, CAROL)) == \
        "member.invite.sender_not_joined"
    room.member(ALICE, BOB, "invite")
    room.join(BOB)
    assert rule_of(room, room.draft(ALICE, "m.room.member", {"membership": "invite"}, BOB)) == "member.invite.target"
    users = {} if v == "12" else {ALICE: 100}
    room.power_levels(ALICE, users, content={"invite": 50})
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "invite"}, CAROL)) == "member.invite.power"
    room.member(ALICE, CAROL, "invite")


def _third_party_setup(v):
    room = standard_room(v, join_rule="invite")
    id_key = SigningKey(b"\x07" * 32)
    room.add(ALICE, "m.room.third_party_invite",
             {"display_name": "c...", "key_validity_url": "https://id.test/v",
              "public_key": encode_base64(bytes(id_key.verify_key))}, "tok123")
    id_key.version = "0"
    return room, id_key


@pytest.mark.parametrize("v", ["1", "10", "11", "12"])
def test_third_party_invite(v):
    room, id_key = _third_party_setup(v)
    signed = sign_json({"mxid": CAROL, "token": "tok123"}, "id.test", id_key)
    content = {"membership": "invite", "third_party_invite": {"display_name": "c", "signed": signed}}
    room.check(room.draft(ALICE, "m.room.member", content, CAROL))

    def reason(content_, sender=ALICE):
        return rule_of(room, room.draft(sender, "m.room.member", content_, CAROL))

    assert reason({"membership": "invite", "third_party_invite": {}}) == "member.invite.third_party.signed"
    assert reason({"membership": "invite", "third_party_invite": {"signed": {"mxid": CAROL}}}) == \
        "member.invite.third_party.signed_fields"
    wrong_mxid = sign_json({"mxid": DAVE, "token": "tok123"}, "id.test", id_key)
    assert reason({"membership": "invite", "third_party_invite": {"signed": wrong_mxid}}) == \
        "member.invite.third_party.mxid"
    wrong_token = sign_json({"mxid": CAROL, "token": "nope"}, "id.test", id_key)
    assert reason({"membership": "invite", "third_party_invite": {"signed": wrong_token}}) == \
        "member.invite.third_party.no_invite_event"
    room.member(ALICE, BOB, "invite")
    room.join(BOB)
    assert reason(content, sender=BOB) == "member.invite.third_party.sender"
    other = SigningKey(b"\x09" * 32)
    other.version = "0"
    forged = sign_json({"mxid": CAROL, "token": "tok123"}, "id.test", other)
    assert reason({"membership": "invite", "third_party_invite": {"signed": forged}}) == \
        "member.invite.third_party.signature"
    room.member(ALICE, CAROL, "ban")
    assert reason(content) == "member.invite.third_party.banned"


def test_third_party_invite_event_needs_invite_level():
    room = standard_room("10")
    room.join(BOB)
    room.power_levels(ALICE, {ALICE: 100}, content={"invite": 50})
    ev = room.draft(BOB, "m.room.third_party_invite", {"public_key": "x"}, "t")
    assert rule_of(room, ev) == "third_party_invite.power"


# ------------------------------------------------------------------ leave / kick / ban


@pytest.mark.parametrize("v", ALL)
def test_leave_rules(v):
    room = standard_room(v)
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "leave"}, BOB)) == "member.leave.self"
    room.join(BOB)
    room.join(CAROL)
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "leave"}, CAROL)) == "member.leave.power"
    assert rule_of(room, room.draft(DAVE, "m.room.member", {"membership": "leave"}, CAROL)) == \
        "member.leave.sender_not_joined"
    room.member(ALICE, CAROL, "leave")  # kick
    room.member(BOB, BOB, "leave")  # leave
    room.member(ALICE, CAROL, "ban")
    users = {BOB: 60} if v == "12" else {ALICE: 100, BOB: 60}
    room.join(BOB)
    room.power_levels(ALICE, users, content={"kick": 50, "ban": 70})
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "leave"}, CAROL)) == \
        "member.leave.unban_power"
    room.member(ALICE, CAROL, "leave")  # unban


@pytest.mark.parametrize("v", ALL)
def test_ban_rules(v):
    room = standard_room(v)
    room.join(BOB)
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "ban"}, ALICE)) == "member.ban.power"
    assert rule_of(room, room.draft(CAROL, "m.room.member", {"membership": "ban"}, BOB)) == \
        "member.ban.sender_not_joined"
    room.member(ALICE, BOB, "ban")
    room.member(ALICE, CAROL, "ban")  # may ban users who never joined


def test_equal_power_cannot_kick_each_other():
    room = standard_room("10", pl_users={ALICE: 100, BOB: 50, CAROL: 50})
    room.join(BOB)
    room.join(CAROL)
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "leave"}, CAROL)) == "member.leave.power"
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "ban"}, CAROL)) == "member.ban.power"


# ------------------------------------------------------------------ knock


@pytest.mark.parametrize("v", ["7", "10", "12"])
def test_knock_rules(v):
    room = standard_room(v, join_rule="knock")
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "knock"}, CAROL)) == "member.knock.sender"
    room.member(BOB, BOB, "knock")
    room.member(BOB, BOB, "leave")  # rescind knock
    room.member(ALICE, BOB, "invite")
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "knock"}, BOB)) == \
        "member.knock.membership"
    room.join(BOB)
    pub = standard_room(v)
    assert rule_of(pub, pub.draft(BOB, "m.room.member", {"membership": "knock"}, BOB)) == "member.knock.join_rule"


@pytest.mark.parametrize("v", ALL)
def test_unknown_membership(v):
    room = standard_room(v)
    assert rule_of(room, room.draft(ALICE, "m.room.member", {"membership": "wibble"}, ALICE)) == "member.unknown"
    assert rule_of(room, room.draft(ALICE, "m.room.member", {}, ALICE)) == "member.malformed"


# ------------------------------------------------------------------ other events


@pytest.mark.parametrize("v", ALL)
def test_sender_must_be_joined_and_powerful(v):
    room = standard_room(v)
    assert rule_of(room, room.draft(BOB, "m.room.message", {"body": "x"})) == "sender_not_joined"
    room.join(BOB)
    room.add(BOB, "m.room.message", {"body": "x"})
    assert rule_of(room, room.draft(BOB, "m.room.topic", {"topic": "t"}, "")) == "event.power"
    room.add(ALICE, "m.room.topic", {"topic": "t"}, "")
    assert rule_of(room, room.draft(ALICE, "m.custom", {}, BOB)) == "event.state_key"


def test_events_power_override():
    room = standard_room("10", pl_users={ALICE: 100, BOB: 10})
    room.join(BOB)
    room.power_levels(ALICE, {ALICE: 100, BOB: 10}, content={"events": {"m.room.message": 20, "m.room.topic": 5}})
    assert rule_of(room, room.draft(BOB, "m.room.message", {"body": "x"})) == "event.power"
    room.add(BOB, "m.room.topic", {"topic": "t"}, "")


@pytest.mark.parametrize("v", ["1", "5"])
def test_aliases_rule_v1_to_v5(v):
    room = standard_room(v)
    room.join(BOB)
    room.add(BOB, "m.room.aliases", {"aliases": ["#x:b.test"]}, "b.test")
    assert rule_of(room, room.draft(BOB, "m.room.aliases", {"aliases": []}, "a.test")) == "aliases.domain"
    # v1-5: not even membership is required
    room.add(DAVE, "m.room.aliases", {"aliases": []}, "d.test")


def test_aliases_ordinary_state_from_v6():
    room = standard_room("6")
    room.join(BOB)
    assert rule_of(room, room.draft(BOB, "m.room.aliases", {"aliases": []}, "b.test")) == "event.power"


@pytest.mark.parametrize("v,ok_for_other_server", [("1", False), ("2", False), ("3", True), ("11", True)])
def test_redaction_auth(v, ok_for_other_server):
    room = standard_room(v)
    room.join(BOB)
    msg = room.add(ALICE, "m.room.message", {"body": "x"})
    red = room.draft(BOB, "m.room.redaction", {}, redacts=msg["event_id"])
    if ok_for_other_server:
        room.check(red)
    else:
        assert rule_of(room, red) == "redaction.power"
    own = room.add(BOB, "m.room.message", {"body": "y"})
    room.add(BOB, "m.room.redaction", {}, redacts=own["event_id"])
    room.add(ALICE, "m.room.redaction", {}, redacts=own["event_id"])


def test_user_can_redact_and_send_helpers():
    room = standard_room("11")
    room.join(BOB)
    st = {k: room.events[v] for k, v in room.current_state().items()}
    assert user_can_redact("11", st, ALICE, {"sender": BOB})
    assert not user_can_redact("11", st, BOB, {"sender": ALICE})
    assert user_can_redact("11", st, "@bob2:b.test", {"sender": BOB})
    assert user_can_send("11", st, BOB, "m.room.message", False)
    assert not user_can_send("11", st, BOB, "m.room.name", True)
    assert not user_can_send("11", st, CAROL, "m.room.message", False)


@pytest.mark.parametrize("v", ["1", "6", "11", "12"])
def test_redacting_others_takes_the_redact_level(v):
    """Spec "Redactions": the power levels' ``redact`` (default 50); v1-v9 also read stringy levels; the
    creator has 100 without power levels (v12: infinite power, always)."""
    users = {BOB: 50, CAROL: 49} if v == "12" else {ALICE: 100, BOB: 50, CAROL: 49}
    room = standard_room(v, pl_users=users)
    st = {k: room.events[e] for k, e in room.current_state().items()}
    assert may_redact_others(v, st, ALICE) and may_redact_others(v, st, BOB)
    assert not may_redact_others(v, st, CAROL) and not may_redact_others(v, st, DAVE)
    room.power_levels(ALICE, users, content={"redact": 80 if v in ("11", "12") else "80"})
    st = {k: room.events[e] for k, e in room.current_state().items()}
    assert may_redact_others(v, st, ALICE) and not may_redact_others(v, st, BOB)
    without_levels = {k: e for k, e in st.items() if k[0] != "m.room.power_levels"}
    assert may_redact_others(v, without_levels, ALICE) and not may_redact_others(v, without_levels, BOB)


# ------------------------------------------------------------------ power levels


@pytest.mark.parametrize("v", ALL)
def test_power_levels_changes(v):
    creators_special = v == "12"
    base = {} if creators_special else {ALICE: 100}
    room = standard_room(v, pl_users={**base, BOB: 50, CAROL: 50})
    room.join(BOB)
    room.join(CAROL)
    users = {**base, BOB: 50, CAROL: 50}

    def pl(sender, new_users, **content):
        return room.draft(sender, "m.room.power_levels", {"users": new_users, **content}, "")

    assert rule_of(room, pl(BOB, {**users, DAVE: 60})) == "power_levels.users_change"
    assert rule_of(room, pl(BOB, {**users, CAROL: 10})) == "power_levels.users_change"
    assert rule_of(room, pl(BOB, users, ban=60)) == "power_levels.change"
    assert rule_of(room, pl(BOB, users, events={"m.room.name": 60})) == "power_levels.events"
    room.check(pl(BOB, {**users, DAVE: 50}))  # may grant up to own level
    room.check(pl(BOB, {**users, BOB: 10}))  # may demote self
    if v not in ("1", "2", "3", "4", "5"):
        assert rule_of(room, pl(BOB, users, notifications={"room": 60})) == "power_levels.events"
    else:
        room.check(pl(BOB, users, notifications={"room": 60}))
    if not creators_special:
        room.power_levels(ALICE, {ALICE: 100, BOB: 50, CAROL: 50}, content={"events": {"m.room.name": 80}})
        assert rule_of(room, pl(BOB, {ALICE: 100, BOB: 50, CAROL: 50})) == "power_levels.events"
    assert rule_of(room, pl(BOB, {"not a user": 5})) == "power_levels.users"


@pytest.mark.parametrize("v,stringy_ok", [("1", True), ("9", True), ("10", False), ("11", False), ("12", False)])
def test_power_levels_integer_enforcement(v, stringy_ok):
    room = standard_room(v)
    users = {} if v == "12" else {ALICE: 100}
    for content in ({"ban": "50"}, {"events": {"m.room.name": "50"}}, {"notifications": {"room": "50"}},
                    {"users": {**users, BOB: "50"}}):
        full = {"users": users, **content}
        ev = room.draft(ALICE, "m.room.power_levels", full, "")
        if stringy_ok:
            room.check(ev)
        else:
            assert rule_of(room, ev) == "power_levels.not_integer" if "users" not in content else \
                rule_of(room, ev) == "power_levels.users"
    bad = room.draft(ALICE, "m.room.power_levels", {"users": {**users, BOB: "fifty"}}, "")
    assert rule_of(room, bad) == "power_levels.users"
    if v == "1":
        ev = room.draft(ALICE, "m.room.power_levels", {"users": {**users, BOB: " +050 "}, "ban": 50.9}, "")
        room.check(ev)
        assert get_power_level("1", room.events[room.create_id], ev, BOB) == 50


def test_get_power_level_defaults():
    room = Room("10")
    create = room.events[room.create_id]
    assert get_power_level("10", create, None, ALICE) == 100
    assert get_power_level("10", create, None, BOB) == 0
    pl = {"type": "m.room.power_levels", "state_key": "", "content": {"users_default": 7, "users": {BOB: 3}}}
    assert get_power_level("10", create, pl, CAROL) == 7
    assert get_power_level("10", create, pl, BOB) == 3


# ------------------------------------------------------------------ v12 creators


def test_v12_creators_infinite_power():
    room = standard_room("12", create_content={"additional_creators": [BOB]})
    create = room.events[room.create_id]
    assert get_power_level("12", create, None, ALICE) == float("inf")
    assert get_power_level("12", create, None, BOB) == float("inf")
    room.join(BOB)
    room.join(CAROL)
    # creators cannot be put in users
    for who in (ALICE, BOB):
        ev = room.draft(ALICE, "m.room.power_levels", {"users": {who: 100}}, "")
        assert rule_of(room, ev) == "power_levels.creators"
    # give carol 100: still cannot kick or ban creators
    room.power_levels(ALICE, {CAROL: 100})
    assert rule_of(room, room.draft(CAROL, "m.room.member", {"membership": "ban"}, BOB)) == "member.ban.power"
    assert rule_of(room, room.draft(CAROL, "m.room.member", {"membership": "leave"}, ALICE)) == "member.leave.power"
    # creators can demote and kick anyone, and each other cannot be kicked
    room.power_levels(BOB, {CAROL: 0}, content={"ban": 1000, "kick": 1000})
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "leave"}, ALICE)) == "member.leave.power"
    room.member(BOB, CAROL, "ban")


def test_v11_creator_has_no_special_power():
    room = standard_room("11", pl_users={ALICE: 100, BOB: 100})
    room.join(BOB)
    ev = room.draft(BOB, "m.room.power_levels", {"users": {ALICE: 0, BOB: 100}}, "")
    assert rule_of(room, ev) == "power_levels.users_change"  # equal level: can't demote peer
    assert rule_of(room, room.draft(BOB, "m.room.member", {"membership": "ban"}, ALICE)) == "member.ban.power"

"""MatrixRTC call-member state keys (homeserver/events/rtc.py): who owns a key, who may set it."""

from __future__ import annotations

from hypothesis import given, strategies as st

from homeserver.events.rtc import call_member_owner, call_member_refusal

CALL = "org.matrix.msc3401.call.member"


def test_owner_of_each_key_form():
    assert call_member_owner("_@al_ice:ex.org_DEV_m.call") == ("@al_ice:ex.org", "DEV_m.call")
    assert call_member_owner("_@alice:ex.org_DEV") == ("@alice:ex.org", "DEV")
    assert call_member_owner("@alice:ex.org_DEV") == ("@alice:ex.org", "DEV")
    assert call_member_owner("@alice:ex.org") == ("@alice:ex.org", None)
    assert call_member_owner("@alice:ex.org:8448_D") == ("@alice:ex.org:8448", "D")
    for key in ("", "alice", "_alice", "@alice", "_@:_D", "@alice:bad host_D"):
        assert call_member_owner(key) is None, key


def test_only_the_sender_and_its_device():
    me, dev = "@alice:ex.org", "DEV"
    assert call_member_refusal(CALL, "_@alice:ex.org_DEV_m.call", me, dev) is None
    assert call_member_refusal("m.rtc.member", "_@alice:ex.org_DEV", me, dev) is None
    assert call_member_refusal(CALL, "@alice:ex.org", me, dev) is None
    assert call_member_refusal(CALL, "_@alice:ex.org_OTHER_m.call", me, dev)
    assert call_member_refusal(CALL, "_@alice:ex.org_DEVX", me, dev)  # a device whose ID starts with ours
    assert call_member_refusal(CALL, "_@bob:ex.org_DEV_m.call", me, dev)
    assert call_member_refusal(CALL, "", me, dev)
    assert call_member_refusal(CALL, "_@alice:ex.org_DEV", me, None)
    assert call_member_refusal("m.room.topic", "anything", me, dev) is None


@given(local=st.text(st.characters(blacklist_characters=":\x00"), max_size=20),
       device=st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=20),
       suffix=st.sampled_from(["", "_m.call", "_x_y"]))
def test_a_user_may_always_set_its_own_device(local, device, suffix):
    user = f"@{local}:example.org"
    assert call_member_refusal(CALL, f"_@{local}:example.org_{device}{suffix}", user, device) is None
    assert call_member_refusal(CALL, f"_@{local}:example.org_{device}{suffix}", "@someone:else.org", device)


def test_a_user_with_more_power_may_clear_someone_elses_member_state():
    """MSC3757's rule: a moderator may overwrite the call state of a user with a lower power level."""
    from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
    version = KNOWN_ROOM_VERSIONS["10"]
    state = {("m.room.create", ""): {"type": "m.room.create", "sender": "@mod:ex.org", "content": {}},
             ("m.room.power_levels", ""): {"type": "m.room.power_levels",
                                           "content": {"users": {"@mod:ex.org": 100, "@peer:ex.org": 100}}}}
    key = "_@alice:ex.org_DEV_m.call"
    assert call_member_refusal(CALL, key, "@mod:ex.org", "M", version, state) is None
    assert call_member_refusal(CALL, "_@peer:ex.org_D_m.call", "@mod:ex.org", "M", version, state)  # equal power
    assert call_member_refusal(CALL, key, "@bob:ex.org", "B", version, state)
    assert call_member_refusal(CALL, key, "@mod:ex.org", "M")  # without the room's state: no override

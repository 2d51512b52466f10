"""The pure parts of the Oodrive and Tixeo bridges: share arguments, durations, the meeting's security
profile from the room, the widget, and the stand-ins' feed paging."""

from __future__ import annotations

from hypothesis import given, strategies as st

from bridges.oodrive.bridge import USAGE_SHARE, may_send_state, parse_duration, parse_share_args, version_key
from bridges.standin import StandinState
from bridges.tixeo.bridge import security_profile, widget_content, widget_key


def test_durations():
    assert parse_duration("7d") == 7 * 86400 and parse_duration("12h") == 43200 and parse_duration("30M") == 1800
    assert parse_duration("2w") == 1209600 and parse_duration("45s") == 45
    for bad in ("", "7", "d", "0d", "-1d", "7y", "1.5h"):
        assert parse_duration(bad) is None, bad


@given(st.integers(min_value=1, max_value=10 ** 6), st.sampled_from("smhdw"))
def test_durations_are_positive_multiples(count, unit):
    assert parse_duration(f"{count}{unit}") % count == 0 and parse_duration(f"{count}{unit}") >= count


def test_share_arguments():
    assert parse_share_args(["report.pdf"]) == ("report.pdf", None, None, False)
    assert parse_share_args(["annual", "report.pdf", "--expires", "7d", "--password"]) == \
        ("annual report.pdf", 604800, "", False)
    assert parse_share_args(["a.pdf", "--password", "s3cret", "--watermark"]) == ("a.pdf", None, "s3cret", True)
    assert parse_share_args([]) == USAGE_SHARE
    assert "--expires takes a duration" in parse_share_args(["a.pdf", "--expires"])
    assert "--expires takes a duration" in parse_share_args(["a.pdf", "--expires", "soon"])
    assert "unknown option --public" in parse_share_args(["a.pdf", "--public"])


def test_the_meeting_follows_the_room():
    assert security_profile("invite", "forbidden") == ("restricted", False)
    assert security_profile("restricted", "") == ("restricted", False)
    assert security_profile("knock", "forbidden") == ("restricted", False)
    assert security_profile("invite", "can_join") == ("public", True)  # guests may join the room
    assert security_profile("public", "forbidden") == ("public", True)


def test_the_widget_shows_the_join_link():
    meeting = {"id": "m7", "name": "Team", "join_url": "https://meet.example/j/m7"}
    content = widget_content(meeting, "@tixeobot:example.org")
    assert content["url"] == meeting["join_url"] and content["id"] == widget_key("m7") == "tixeo_m7"
    assert content["creatorUserId"] == "@tixeobot:example.org" and content["data"]["meetingId"] == "m7"
    assert version_key("file3", 2) == "file3:v2"


def test_the_feed_pages_from_a_cursor(tmp_path):
    state = StandinState(str(tmp_path), {})
    for i in range(5):
        state.emit("thing", n=i)
    first = state.events_after("", 2)
    assert [e["n"] for e in first["items"]] == [0, 1] and first["next"] == "2"
    assert [e["n"] for e in state.events_after(first["next"], 10)["items"]] == [2, 3, 4]
    assert state.events_after("5", 10) == {"items": [], "next": "5"}
    state.save()
    assert StandinState(str(tmp_path), {}).events_after("4", 10)["items"][0]["n"] == 4  # survives a restart


def test_who_may_change_a_room_setting():
    def state(version: str, **levels) -> list[dict]:
        return [{"type": "m.room.create", "state_key": "", "sender": "@creator:x",
                 "content": {"room_version": version, "additional_creators": ["@co:x"]}},
                {"type": "m.room.power_levels", "state_key": "", "content": levels}]

    assert may_send_state(state("12", users={"@mod:x": 50}), "@creator:x")
    assert may_send_state(state("12", users={"@mod:x": 50}), "@co:x")
    assert may_send_state(state("12", users={"@mod:x": 50}), "@mod:x")
    assert not may_send_state(state("12", users={"@mod:x": 50}), "@member:x")
    assert not may_send_state(state("11", users={"@mod:x": 50}), "@creator:x")  # older rooms: the levels say
    assert may_send_state(state("11", users={"@creator:x": 100}), "@creator:x")
    assert not may_send_state(state("11", users={"@a:x": 10}, state_default=20), "@a:x")
    assert may_send_state(state("11", users_default=60), "@anyone:x")

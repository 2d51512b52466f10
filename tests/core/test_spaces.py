"""Space children and summaries as pure rules (homeserver/events/spaces.py): spec v1.19 "Spaces", ordering of
children, restricted rooms' allow lists, who may preview a summary."""

from __future__ import annotations

import pytest

from homeserver.events.spaces import allowed_room_ids, child_order_key, has_valid_via, previewable, space_children


def child(room_id: str, ts: int = 0, **content) -> dict:
    return {"type": "m.space.child", "state_key": room_id, "sender": "@a:x", "origin_server_ts": ts,
            "content": {"via": ["x"], **content}}


def test_children_by_order_then_timestamp_then_room_id():
    children = [child("!e", 1), child("!d", 1), child("!c", 0), child("!b", 9, order="b"), child("!a", 5, order="a"),
                child("!f", 0, order="a")]
    assert [c["state_key"] for c in space_children(children, False)] == ["!f", "!a", "!b", "!c", "!d", "!e"]


@pytest.mark.parametrize("order", [7, None, "x" * 51, "caf\u00e9", "tab\there", ["a"]])
def test_an_invalid_order_counts_as_none(order):
    """Spec: ``order`` is a string of at most 50 characters between 0x20 and 0x7E; otherwise it is ignored."""
    assert child_order_key(child("!a", 3, order=order)) == (True, "", 3, "!a")
    assert child_order_key(child("!a", 3, order=" ~")) == (False, " ~", 3, "!a")


@pytest.mark.parametrize("via, valid", [(["x"], True), ([], False), (None, False), ("x", False), (["x", 1], False)])
def test_a_child_needs_a_via_list_of_server_names(via, valid):
    assert has_valid_via({"via": via}) is valid
    assert len(space_children([{**child("!a"), "content": {"via": via}}], False)) == int(valid)


def test_suggested_only_and_state_keys_that_are_no_room_ids():
    children = [child("!a", suggested=True), child("!b", suggested="true"), child("!c"), child("not-a-room")]
    assert [c["state_key"] for c in space_children(children, True)] == ["!a"]
    assert [c["state_key"] for c in space_children(children, False)] == ["!a", "!b", "!c"]


def test_allowed_room_ids_of_restricted_rooms_only():
    allow = [{"type": "m.room_membership", "room_id": "!s"}, {"type": "other", "room_id": "!t"},
             {"type": "m.room_membership"}, "junk"]
    assert allowed_room_ids({"join_rule": "restricted", "allow": allow}) == ["!s"]
    assert allowed_room_ids({"join_rule": "knock_restricted", "allow": allow}) == ["!s"]
    assert allowed_room_ids({"join_rule": "invite", "allow": allow}) == []
    assert allowed_room_ids({"join_rule": "restricted", "allow": "junk"}) == []
    assert allowed_room_ids(None) == []


@pytest.mark.parametrize("entry, expected", [
    ({"join_rule": "public"}, True), ({"join_rule": "knock"}, True), ({"join_rule": "knock_restricted"}, True),
    ({"join_rule": "invite", "world_readable": True}, True), ({"join_rule": "invite"}, False),
    ({"join_rule": "restricted"}, False), ({}, True)])
def test_previewable(entry, expected):
    assert previewable(entry) is expected

"""Pure pusher rules (spec v1.19 "Pushers", push gateway "POST /_matrix/push/v1/notify")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from homeserver.events.push_gateway import (InvalidPusher, notification, priority, tweaks_of,
                                            validate_pusher_body)

URL = "https://push.example.org/_matrix/push/v1/notify"
BODY = {"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D",
        "lang": "en", "data": {"url": URL}}


def test_valid_body_and_delete():
    assert validate_pusher_body(BODY)["data"] == {"url": URL}
    assert validate_pusher_body({"app_id": "a", "pushkey": "k", "kind": None}) is None


@pytest.mark.parametrize("change, errcode", [
    ({"app_id": None}, "M_MISSING_PARAM"),
    ({"kind": "sms"}, "M_INVALID_PARAM"),
    ({"lang": 3}, "M_INVALID_PARAM"),
    ({"data": None}, "M_MISSING_PARAM"),
    ({"data": {}}, "M_MISSING_PARAM"),
    ({"data": {"url": "https://push.example.org/notify"}}, "M_INVALID_PARAM"),
    ({"data": {"url": "ftp://push.example.org/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
    ({"app_id": "x" * 65}, "M_INVALID_PARAM"),
    ({"append": "yes"}, "M_INVALID_PARAM"),
])
def test_invalid_bodies(change, errcode):
    with pytest.raises(InvalidPusher) as e:
        validate_pusher_body({**BODY, **change})
    assert e.value.errcode == errcode


def test_email_pushers_only_where_served():
    body = {**BODY, "kind": "email", "pushkey": "a@example.org", "data": {"brand": "Agence"}}
    with pytest.raises(InvalidPusher) as e:
        validate_pusher_body(body)
    assert e.value.errcode == "M_INVALID_PARAM"
    assert validate_pusher_body(body, email=True)["data"] == {"brand": "Agence"}
    with pytest.raises(InvalidPusher):
        validate_pusher_body({**body, "data": None}, email=True)


def test_tweaks_and_priority():
    actions = ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]
    assert tweaks_of(actions) == {"sound": "default", "highlight": True}
    assert tweaks_of(["notify", {"set_tweak": "highlight", "value": False}]) == {}
    assert priority("m.room.message", {}) == "low"
    assert priority("m.room.encrypted", {}) == "high"


EVENT = {"event_id": "$e", "room_id": "!r", "type": "m.room.message", "sender": "@a:x", "content": {"body": "hi"}}


def test_notification_full_and_event_id_only():
    device = {"app_id": "a", "pushkey": "k", "pushkey_ts": 1}
    full = notification(event=EVENT, user_id="@b:x", pusher_data={"url": URL, "extra": 1}, device=device,
                        unread=2, sender_display_name="Alice", room_name="Room", tweaks={"sound": "default"})
    assert full == {"event_id": "$e", "room_id": "!r", "counts": {"unread": 2}, "prio": "high",
                    "devices": [dict(device, data={"extra": 1}, tweaks={"sound": "default"})],
                    "id": "$e", "type": "m.room.message", "sender": "@a:x", "sender_display_name": "Alice",
                    "room_name": "Room", "content": {"body": "hi"}}
    short = notification(event=EVENT, user_id="@b:x", pusher_data={"url": URL, "format": "event_id_only"},
                         device=device, unread=0, sender_display_name="Alice", room_name=None, tweaks={})
    assert set(short) == {"event_id", "room_id", "counts", "devices", "prio"}


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["app_id", "pushkey", "kind", "lang", "data", "append"]),
                       st.one_of(st.none(), st.text(max_size=5), st.integers(), st.booleans())))
def test_any_body_is_accepted_or_refused_with_a_spec_errcode(changes):
    try:
        validate_pusher_body({**BODY, **changes})
    except InvalidPusher as e:
        assert e.errcode in ("M_MISSING_PARAM", "M_INVALID_PARAM")

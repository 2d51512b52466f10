"""The ``m.presence`` content of a presence state (client-server "Presence"), as clients and servers get it."""

from __future__ import annotations

from homeserver.services.presence import presence_content
from homeserver.storage.presence import PresenceRow


def test_an_online_user_is_currently_active_and_active_some_time_ago():
    row = PresenceRow("@a:x", "online", "lunch", 9_000, True)
    assert presence_content(row, 10_000) == {"presence": "online", "last_active_ago": 1_000,
                                             "currently_active": True, "status_msg": "lunch"}


def test_other_states_carry_no_currently_active_and_never_a_negative_age():
    assert presence_content(PresenceRow("@a:x", "unavailable", None, 12_000, True), 10_000) == {
        "presence": "unavailable", "last_active_ago": 0}
    assert presence_content(PresenceRow("@a:x", "offline", None, 0, False), 10_000) == {"presence": "offline"}

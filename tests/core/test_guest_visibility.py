"""Pure rules of "Guest Access" and "Room History Visibility": every endpoint the guest list names is a
real client route, and a history_visibility change is seen under the more permissive of its two values."""

from __future__ import annotations

from homeserver.api.client import account, legacy_events, profile, receipts, room_events, rooms, sync, to_device
from homeserver.api.client import discovery, keys, presence, push_rules
from homeserver.http.guest_access import GUEST_ENDPOINTS, client_path
from homeserver.services.visibility import Timeline, visible
from media_repo.api import client as media_client, preview as media_preview

MODULES = (account, legacy_events, profile, receipts, room_events, rooms, sync, to_device, discovery, keys,
           presence, push_rules)


def test_every_guest_endpoint_is_a_route():
    routes = {(e.method, e.path) for m in MODULES for e in m.ROUTES}
    routes |= {(r.method, client_path(r.path)) for m in (media_client, media_preview) for r in m.ROUTES}
    missing = GUEST_ENDPOINTS - routes
    assert not missing, missing


def _sees(event_type: str, state_key, position: int, visibilities: list[tuple[int, str]]) -> bool:
    """Whether a user who never joined sees the event at ``position``."""
    return visible(position, event_sender="@o:x", event_state_key=state_key, event_type=event_type,
                   user_id="@u:x", memberships=Timeline.of([]), visibilities=Timeline.of(visibilities))


def test_history_visibility_change_is_seen_under_the_more_permissive_value():
    changes = [(1, "joined"), (30, "world_readable"), (40, "shared")]
    assert not _sees("m.room.message", None, 25, changes)
    assert _sees("m.room.history_visibility", "", 30, changes)   # opening: seen under the value after
    assert _sees("m.room.message", None, 35, changes)
    assert _sees("m.room.history_visibility", "", 40, changes)   # closing: seen under the value before
    assert not _sees("m.room.message", None, 45, changes)
    assert not _sees("m.room.history_visibility", "", 20, [(1, "joined"), (20, "invited")])

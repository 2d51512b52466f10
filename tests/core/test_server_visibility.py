"""Which events another server may read (server-server "Retrieving events"; Synapse's
``filter_events_for_server``): :func:`visible_to_server`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.services.visibility import visible_to_server

MEMBERSHIPS = ["join", "invite", "leave", "ban", "knock"]
VISIBILITIES = ["world_readable", "shared", "invited", "joined", "unknown-value"]


@pytest.mark.parametrize("visibility, memberships, joined_now, visible", [
    ("world_readable", [], False, True),
    ("shared", [], True, True),
    ("shared", ["join"], False, False),  # peeking: shared history is for servers in the room now
    ("unknown-value", [], True, True),  # an unknown value is shared
    ("invited", ["invite"], True, True),
    ("invited", ["leave", "join"], True, True),
    ("invited", ["knock", "ban", "leave"], True, False),
    ("joined", ["invite"], True, False),
    ("joined", ["join"], False, True),
    ("joined", [], True, False),
])
def test_visible_to_server(visibility, memberships, joined_now, visible):
    assert visible_to_server(visibility, memberships, joined_now=joined_now) is visible


@given(visibility=st.sampled_from(VISIBILITIES), memberships=st.lists(st.sampled_from(MEMBERSHIPS)),
       joined_now=st.booleans())
def test_rules_are_ordered_by_openness(visibility, memberships, joined_now):
    """What ``joined`` shows ``invited`` shows, what ``invited`` shows a joined server sees under
    ``shared``, and ``world_readable`` shows everything; knocks, leaves and bans never count."""
    def seen(v, m=memberships):
        return visible_to_server(v, m, joined_now=joined_now)

    assert seen("joined") <= seen("invited")
    assert seen("world_readable")
    if joined_now:
        assert seen("invited") <= seen("shared")
    useless = [m for m in memberships if m in ("leave", "ban", "knock")]
    assert seen(visibility, useless) == visible_to_server(visibility, [], joined_now=joined_now)

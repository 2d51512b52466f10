"""Sync tokens (``services/sync.py``): each stream's position named, tokens of the positional format still read.

Spec v1.19 client-server "Syncing": tokens are opaque to clients, so the format is ours; a client's ``since``
must survive an upgrade of the server.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from homeserver.errors import MatrixError
from homeserver.services.sync import LEGACY_ORDER, SyncService

KEYS = {"account_data": "a", "receipts": "r", "typing": "t", "device_lists": "d", "to_device": "x",
        "presence": "p", "notifications": "n"}


class Source:
    def __init__(self, name: str, token_key: str):
        self.name, self.token_key = name, token_key


def service(names=tuple(KEYS)) -> SyncService:
    return SyncService(room_heads=None, store=None, serializer=None, notifier=None, clock=None, retention=None,
                       sources=[Source(n, KEYS[n]) for n in names])


def old_encode(positions: dict[str, int]) -> str:
    """The encoder of the releases before streams were named: every position, in the sources' order then."""
    return "s" + "_".join(str(positions.get(n, 0)) for n in LEGACY_ORDER)


# backfilled events have negative positions (services/history.py, OLDEST_POSITION)
positions_st = st.fixed_dictionaries({n: st.integers(-(2 ** 62) if n == "events" else 0, 2 ** 62)
                                      for n in LEGACY_ORDER})


@given(positions_st, st.randoms())
def test_named_tokens_round_trip_whatever_the_order_of_the_sources(positions, rnd):
    names = list(KEYS)
    token = service(names).encode_token(positions)
    assert re.fullmatch("[a-z0-9_-]+", token)  # URL-safe as it is
    rnd.shuffle(names)
    assert service(names).parse_token(token) == positions


@given(positions_st, st.randoms())
def test_tokens_of_the_positional_format_are_still_read(positions, rnd):
    names = list(KEYS)
    rnd.shuffle(names)
    assert service(names).parse_token(old_encode(positions)) == positions


def test_a_real_positional_token():
    """A next_batch given by the server before this change (its eight streams, most at 0)."""
    assert service().parse_token("s37_4_2_0_1_3_0_0") == {
        "events": 37, "account_data": 4, "receipts": 2, "typing": 0, "device_lists": 1, "to_device": 3,
        "presence": 0, "notifications": 0}


def test_streams_at_zero_are_left_out_and_unknown_keys_ignored():
    svc = service()
    assert svc.encode_token({"events": 5, "typing": 0, "to_device": 7}) == "s5_x7"
    assert svc.parse_token("s5_x7_zz9") == dict(dict.fromkeys(["events", *KEYS], 0), events=5, to_device=7)


@pytest.mark.parametrize("token", ["", "x1", "s", "s1_", "s1_a", "s1__a2", "s--1", "s1_-", "s1_A2", "s1_2a", "s1_2_a3",
                                   "a1_s2", "s1_s2", "s+1", "s1 ", "s\u0661"])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(MatrixError) as e:
        service().parse_token(token)
    assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM")


def test_sources_must_have_distinct_keys():
    with pytest.raises(ValueError):
        SyncService(room_heads=None, store=None, serializer=None, notifier=None, clock=None, retention=None,
                    sources=[Source("typing", "t"), Source("to_device", "t")])
    with pytest.raises(ValueError):
        SyncService(room_heads=None, store=None, serializer=None, notifier=None, clock=None, retention=None,
                    sources=[Source("events_again", "s")])


def test_fewer_sources_read_their_part_of_a_positional_token():
    assert service(["typing"]).parse_token(old_encode({"events": 3, "typing": 9})) == {"events": 3, "typing": 9}

"""Message retention's pure decisions (services/retention.py) and the ``retention`` config's checks."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from homeserver.config import ConfigError, parse_config
from homeserver.config.values import PurgeJob, RetentionConfig
from homeserver.services.retention import effective_max_lifetime, job_covers, unexpired
from homeserver.storage.events import StoredEvent

DAY = 24 * 60 * 60 * 1000
lifetimes = st.none() | st.integers(min_value=0, max_value=10 ** 12)


def config(**fields) -> RetentionConfig:
    return RetentionConfig(enabled=True, **fields)


def parse(tmp_path, retention):
    raw = {"server_name": "example.org", "signing_key_path": "signing.key", "retention": retention}
    return parse_config(raw, str(tmp_path / "homeserver.yaml")).retention


def test_the_room_policy_wins_over_the_default_and_is_clamped():
    c = config(default_max_lifetime=30 * DAY, allowed_lifetime_min=DAY, allowed_lifetime_max=365 * DAY)
    assert effective_max_lifetime(c, None) == 30 * DAY
    assert effective_max_lifetime(c, {"max_lifetime": 2 * DAY}) == 2 * DAY
    assert effective_max_lifetime(c, {"max_lifetime": 1000}) == DAY
    assert effective_max_lifetime(c, {"max_lifetime": 1000 * DAY}) == 365 * DAY
    assert effective_max_lifetime(c, {"max_lifetime": "1d"}) == 30 * DAY  # not an integer: no policy
    assert effective_max_lifetime(config(), {"min_lifetime": DAY}) is None  # no max_lifetime anywhere
    assert effective_max_lifetime(RetentionConfig(), {"max_lifetime": DAY}) is None  # retention disabled


@given(lifetimes, lifetimes, lifetimes, st.none() | st.integers(min_value=0, max_value=10 ** 12))
def test_the_effective_lifetime_stays_in_the_allowed_range(default, low, high, room):
    if low is not None and high is not None and low > high:
        low, high = high, low
    c = config(default_max_lifetime=default, allowed_lifetime_min=low, allowed_lifetime_max=high)
    lifetime = effective_max_lifetime(c, None if room is None else {"max_lifetime": room})
    if room is None and default is None:
        assert lifetime is None
    else:
        assert (low is None or lifetime >= low) and (high is None or lifetime <= high)


def test_each_room_goes_to_the_job_whose_range_holds_its_lifetime():
    short, long_ = PurgeJob(interval=1000, longest_max_lifetime=3 * DAY), PurgeJob(interval=1000,
                                                                                  shortest_max_lifetime=3 * DAY)
    c = config(default_max_lifetime=7 * DAY)
    assert job_covers(short, c, {"max_lifetime": 3 * DAY}) and not job_covers(long_, c, {"max_lifetime": 3 * DAY})
    assert job_covers(long_, c, None) and not job_covers(short, c, None)  # the default policy's lifetime
    assert not job_covers(PurgeJob(interval=1000), config(), None)  # no lifetime: never purged


def test_state_events_never_expire():
    def event(i, ts, state_key=None):
        pdu = {"type": "m.room.message", "origin_server_ts": ts, "sender": "@a:x", "content": {}}
        if state_key is not None:
            pdu["state_key"] = state_key
        return StoredEvent(event_id=f"${i}", pdu=pdu, stream_ordering=i, room_id="!r:x")

    events = [event(1, 100), event(2, 100, ""), event(3, 500)]
    assert [e.event_id for e in unexpired(events, 200)] == ["$2", "$3"]
    assert unexpired(events, None) == events


def test_the_config_is_read_in_synapse_shape(tmp_path):
    c = parse(tmp_path, {"enabled": True, "default_policy": {"min_lifetime": "1d", "max_lifetime": "1y"},
                         "allowed_lifetime_min": "1d", "allowed_lifetime_max": "1y",
                         "purge_jobs": [{"longest_max_lifetime": "3d", "interval": "12h"},
                                        {"shortest_max_lifetime": "3d", "interval": "1d"}]})
    assert c.enabled and c.default_min_lifetime == DAY and c.default_max_lifetime == 365 * DAY
    assert c.purge_jobs == (PurgeJob(12 * 60 * 60 * 1000, None, 3 * DAY), PurgeJob(DAY, 3 * DAY, None))
    assert parse(tmp_path, None) == RetentionConfig()  # off, one daily job when turned on


@pytest.mark.parametrize("retention,message", [
    ({"allowed_lifetime_min": "2d", "allowed_lifetime_max": "1d"}, "retention: allowed_lifetime_min"),
    ({"default_policy": {"min_lifetime": "2d", "max_lifetime": "1d"}}, "retention.default_policy: min_lifetime"),
    ({"purge_jobs": [{"shortest_max_lifetime": "2d", "longest_max_lifetime": "1d", "interval": "1d"}]},
     "retention.purge_jobs[0]: shortest_max_lifetime"),
    ({"purge_jobs": [{"longest_max_lifetime": "1d"}]}, "retention.purge_jobs[0].interval: required"),
    ({"purge_jobs": {"interval": "1d"}}, "retention.purge_jobs: must be a list"),
    ({"default_policy": {"max_lifetime": "forever"}}, "retention.default_policy.max_lifetime"),
    ({"enabled": "yes"}, "retention.enabled"),
])
def test_an_invalid_config_is_refused_with_its_key(tmp_path, retention, message):
    with pytest.raises(ConfigError) as refused:
        parse(tmp_path, {"enabled": True, **retention})
    assert str(refused.value).startswith(message), refused.value

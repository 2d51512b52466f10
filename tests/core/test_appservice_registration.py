"""Application service registration files: what is read, what refuses start-up (and says why)."""

from __future__ import annotations

import pytest
import yaml

from homeserver.config import ConfigError, parse_config
from homeserver.config.appservices import load_registrations, parse_registration
from homeserver.errors import MatrixError

GOOD = {
    "id": "bridge", "url": "http://127.0.0.1:29318", "as_token": "as_secret", "hs_token": "hs_secret",
    "sender_localpart": "bridgebot", "rate_limited": False, "protocols": ["olvid"],
    "receive_ephemeral": True, "org.matrix.msc3202": True, "io.element.msc4190": True,
    "namespaces": {"users": [{"regex": "@olvid_.*:example.org", "exclusive": True}],
                   "aliases": [{"regex": "#olvid_.*:example.org", "exclusive": True}],
                   "rooms": [{"regex": "!portal.*", "exclusive": False}]},
}


def test_good_registration_read():
    r = parse_registration(GOOD, "f", "example.org")
    assert r.sender == "@bridgebot:example.org" and r.url == "http://127.0.0.1:29318"
    assert r.is_user_in_namespace("@olvid_alice:example.org") and r.is_exclusive_user("@olvid_alice:example.org")
    assert r.is_user_in_namespace("@bridgebot:example.org")
    assert not r.is_user_in_namespace("@olvid_alice:example.org.evil")  # the whole id must match
    assert r.is_exclusive_alias("#olvid_x:example.org") and r.is_room_in_namespace("!portal1:example.org")
    assert not r.rate_limited and r.protocols == ("olvid",) and r.receive_ephemeral and r.msc3202 and r.msc4190
    assert "as_secret" not in repr(r) and "hs_secret" not in repr(r)


def test_null_url_and_legacy_ephemeral_flag():
    r = parse_registration(dict(GOOD, url=None, receive_ephemeral=False,
                                **{"de.sorunome.msc2409.push_ephemeral": True}), "f", "example.org")
    assert r.url is None and r.push_ephemeral_legacy and r.wants_ephemeral


@pytest.mark.parametrize("change, message", [
    ({"id": None}, "id: required"),
    ({"as_token": 3}, "as_token: required"),
    ({"url": "ftp://x"}, "url: must be an http"),
    ({"sender_localpart": "a b"}, "sender_localpart"),
    ({"namespaces": []}, "namespaces: required"),
    ({"namespaces": {"users": [{"regex": "(", "exclusive": True}]}}, "namespaces.users[0].regex"),
    ({"namespaces": {"users": [{"regex": "@a"}]}}, "namespaces.users[0].exclusive"),
    ({"rate_limited": "no"}, "rate_limited"),
    ({"protocols": "irc"}, "protocols"),
    ({"receive_ephemeral": "yes"}, "receive_ephemeral"),
    ({"io.element.msc4190": 1}, "io.element.msc4190"),
])
def test_bad_registration_refused_with_key(change, message):
    raw = {k: v for k, v in dict(GOOD, **change).items() if v is not None}
    with pytest.raises(ConfigError, match="^f: .*" + message.replace("[", r"\[").replace("(", r"\(")):
        parse_registration(raw, "f", "example.org")


def test_missing_url_refused():
    raw = {k: v for k, v in GOOD.items() if k != "url"}
    with pytest.raises(ConfigError, match="url: required"):
        parse_registration(raw, "f", "example.org")


def _write(tmp_path, name, raw) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize("shared", ["id", "as_token", "hs_token"])
def test_two_registrations_sharing_refused(tmp_path, shared):
    other = {**GOOD, "id": "other", "as_token": "as2", "hs_token": "hs2", shared: GOOD[shared]}
    paths = [_write(tmp_path, "a.yaml", GOOD), _write(tmp_path, "b.yaml", other)]
    with pytest.raises(ConfigError, match=rf"app_service_config_files\[1\] \(.*b.yaml\): {shared}: already used"):
        load_registrations(paths, "example.org")


def test_unreadable_and_bad_yaml_files_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"app_service_config_files\[0\] .*cannot read"):
        load_registrations([str(tmp_path / "missing.yaml")], "example.org")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_registrations([str(bad)], "example.org")


def test_config_key_reads_files_relative_to_config(tmp_path):
    _write(tmp_path, "reg.yaml", GOOD)
    raw = {"server_name": "example.org", "signing_key_path": "k", "app_service_config_files": ["reg.yaml"]}
    config = parse_config(raw, str(tmp_path / "homeserver.yaml"))
    assert [r.id for r in config.app_services] == ["bridge"]


def test_rate_limited_false_exempts_the_appservice_users_only():
    from twisted.internet import task

    from homeserver.services.ratelimit import RateLimits

    raw = {"server_name": "example.org", "signing_key_path": "k", "rc_message": {"per_second": 0.1, "burst_count": 1}}
    config = parse_config(raw, "/tmp/homeserver.yaml")
    limits = RateLimits(_with_appservices(config, [parse_registration(GOOD, "f", "example.org")]), task.Clock())
    for _ in range(5):
        limits.event("@olvid_alice:example.org")  # in the namespace of a rate_limited: false appservice
        limits.event("@bridgebot:example.org")
    limits.event("@human:example.org")
    with pytest.raises(MatrixError) as refused:
        limits.event("@human:example.org")
    assert refused.value.errcode == "M_LIMIT_EXCEEDED"


def _with_appservices(config, registrations):
    import dataclasses
    return dataclasses.replace(config, app_services=tuple(registrations))


class _Facts:
    def __init__(self, aliases=(), members=()):
        self._aliases, self._members = list(aliases), list(members)

    async def aliases(self, room_id):
        return self._aliases

    async def members(self, room_id):
        return self._members


class _Event:
    def __init__(self, sender, room_id="!r:example.org", type="m.room.message", state_key=None):
        self.sender, self.room_id, self.type, self.state_key = sender, room_id, type, state_key


@pytest.mark.parametrize("event, facts, wanted", [
    (_Event("@olvid_bob:example.org"), _Facts(), True),  # sender in the namespace
    (_Event("@human:example.org", type="m.room.member", state_key="@olvid_bob:example.org"), _Facts(), True),
    (_Event("@human:example.org", room_id="!portal7:example.org"), _Facts(), True),  # room namespace
    (_Event("@human:example.org"), _Facts(aliases=["#olvid_chat:example.org"]), True),  # a room alias
    (_Event("@human:example.org"), _Facts(members=["@olvid_bob:example.org"]), True),  # a member
    (_Event("@human:example.org"), _Facts(aliases=["#other:example.org"], members=["@human:example.org"]), False),
])
def test_which_events_an_appservice_is_sent(event, facts, wanted):
    from twisted.internet import defer

    from homeserver.services.appservice_sender import event_interests

    registration = parse_registration(GOOD, "f", "example.org")
    result = defer.ensureDeferred(event_interests(registration, event, facts))
    assert result.result is wanted


def test_ip_range_whitelist_limits_where_the_as_token_is_used_from():
    r = parse_registration(dict(GOOD, ip_range_whitelist=["127.0.0.0/8", "::1/128"]), "f", "example.org")
    assert r.allows_address("127.0.0.1") and r.allows_address("::1")
    assert not r.allows_address("10.1.2.3") and not r.allows_address("not an address")
    assert parse_registration(GOOD, "f", "example.org").allows_address("10.1.2.3")
    with pytest.raises(ConfigError, match="ip_range_whitelist"):
        parse_registration(dict(GOOD, ip_range_whitelist=["300.0.0.0/8"]), "f", "example.org")

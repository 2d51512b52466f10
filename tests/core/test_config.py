"""Configuration parsing: Synapse-shaped YAML, validation, warnings."""

from __future__ import annotations

import logging
import os

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict
from signedjson.key import generate_signing_key, get_verify_key, write_signing_keys
from unpaddedbase64 import encode_base64

from homeserver.config_sample import generate_config_yaml
from homeserver.config.synapse_keys import SYNAPSE_TOP_LEVEL_KEYS
from homeserver.config.reader import Reader
from homeserver.config.table import HEXAGONE, KEYS, SYNAPSE
from homeserver.config import (
    DEFAULT_IP_RANGE_BLACKLIST,
    Config,
    ConfigError,
    RateLimit,
    load_config,
    parse_config,
    parse_duration_ms,
    read_signing_key,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_LOGGER = "homeserver.config"


@pytest.fixture
def cfg_dir(tmp_path):
    key = generate_signing_key("a_test")
    with open(tmp_path / "signing.key", "w") as f:
        write_signing_keys(f, [key])
    return tmp_path


def minimal(**extra) -> dict:
    raw = {"server_name": "example.org", "signing_key_path": "signing.key"}
    raw.update(extra)
    return raw


def parse(cfg_dir, **extra) -> Config:
    return parse_config(minimal(**extra), str(cfg_dir / "homeserver.yaml"))


def refused(cfg_dir, key_prefix: str, **extra) -> str:
    with pytest.raises(ConfigError) as exc:
        parse(cfg_dir, **extra)
    msg = str(exc.value)
    assert msg.startswith(key_prefix), msg
    return msg


def config_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == CONFIG_LOGGER and r.levelno == logging.WARNING
    ]


# ---------------------------------------------------------------------------
# defaults
# ---------------------------------------------------------------------------


def test_minimal_config_defaults(cfg_dir, caplog):
    caplog.set_level(logging.WARNING)
    c = parse(cfg_dir)
    d = str(cfg_dir)
    assert c.server_name == "example.org"
    assert c.config_dir == d
    assert c.config_path == os.path.join(d, "homeserver.yaml")
    assert c.public_baseurl == "https://example.org/"
    assert c.signing_key_path == os.path.join(d, "signing.key")

    assert len(c.listeners) == 1
    lc = c.listeners[0]
    assert (lc.port, lc.type, lc.tls, lc.x_forwarded) == (8008, "http", False, False)
    assert lc.bind_addresses == ["127.0.0.1"]
    assert {"client", "federation", "keys", "media", "openid"} <= set(lc.resources)

    assert c.database.engine == "sqlite"
    assert c.database.sqlite_path == os.path.join(d, "homeserver.db")
    assert c.database.pg_dsn is None

    assert c.enable_registration is False
    assert c.enable_registration_without_verification is False
    assert c.registration_shared_secret is None
    assert c.registration_requires_token is False
    assert c.bcrypt_rounds == 12
    assert c.filter_timeline_limit == 100
    assert c.turn_uris == []
    assert c.turn_shared_secret is None
    assert c.turn_username is None and c.turn_password is None
    assert c.turn_user_lifetime_ms == 3_600_000

    assert c.rc_message == RateLimit(0.2, 10)
    assert c.rc_registration == RateLimit(0.17, 3)
    assert c.rc_login_address == RateLimit(0.003, 5)
    assert c.rc_login_account == RateLimit(0.003, 5)
    assert c.rc_login_failed_attempts == RateLimit(0.17, 3)
    assert c.rc_joins_local == RateLimit(0.1, 10)
    assert c.rc_joins_remote == RateLimit(0.01, 10)
    assert c.rc_invites_per_room == RateLimit(0.3, 10)
    assert c.rc_invites_per_user == RateLimit(0.003, 5)
    assert c.rc_admin_redaction == c.rc_message
    assert c.rc_presence_per_user == RateLimit(0.1, 1)
    assert c.rc_user_directory == RateLimit(0.016, 200)

    assert c.default_room_version == "12"
    assert c.allow_public_rooms_without_auth is False
    assert c.require_auth_for_profile_requests is False
    assert c.limit_profile_requests_to_users_who_share_rooms is False
    assert c.presence_enabled is True
    assert c.user_directory_search_all_users is False
    assert c.serve_server_wellknown is False
    assert c.log_config is None
    assert c.federation_domain_whitelist is None
    assert c.trusted_key_servers == [{"server_name": "matrix.org"}]
    assert c.federation_verify_certificates is True
    assert c.federation_custom_ca_list == []
    assert c.federation_client_minimum_tls_version == "1.2"
    assert c.ip_range_blacklist == list(DEFAULT_IP_RANGE_BLACKLIST)
    assert c.ip_range_whitelist == []
    assert c.federation_ip_range_blacklist is None
    assert c.tls_certificate_path is None and c.tls_private_key_path is None
    assert c.suppress_key_server_warning is False
    assert c.raw == minimal()

    assert config_warnings(caplog) == []


def test_signing_key_path_defaults_like_synapse(tmp_path):
    c = parse_config({"server_name": "example.org"}, str(tmp_path / "hs.yaml"))
    assert c.signing_key_path == str(tmp_path / "example.org.signing.key")


def test_values_are_read(cfg_dir, tmp_path):
    c = parse(
        cfg_dir,
        public_baseurl="https://matrix.example.org",
        enable_registration=True,
        registration_requires_token=True,
        registration_shared_secret="s3cret",
        bcrypt_rounds=4,
        filter_timeline_limit=20,
        turn_uris=["turn:turn.example.org"],
        turn_shared_secret="turnsecret",
        turn_user_lifetime="1d",
        rc_message={"per_second": 1, "burst_count": 20.0},
        rc_login={"failed_attempts": {"per_second": 0.5}},
        rc_joins={"remote": {"burst_count": 3}},
        rc_invites={"per_user": {"per_second": 0.01, "burst_count": 2}},
        default_room_version=11,
        presence={"enabled": False},
        user_directory={"search_all_users": True},
        federation_domain_whitelist=["a.example", "b.example:8448"],
        trusted_key_servers=[
            {"server_name": "keys.example", "verify_keys": {"ed25519:auto": "abcd"}}
        ],
        ip_range_whitelist=["192.168.1.1"],
        serve_server_wellknown=True,
        report_stats=True,
    )
    d = str(cfg_dir)
    assert c.public_baseurl == "https://matrix.example.org/"
    assert c.enable_registration and c.registration_requires_token
    assert c.registration_shared_secret == "s3cret"
    assert c.bcrypt_rounds == 4
    assert c.filter_timeline_limit == 20
    assert c.turn_uris == ["turn:turn.example.org"]
    assert c.turn_shared_secret == "turnsecret"
    assert c.turn_user_lifetime_ms == 86_400_000
    assert c.rc_message == RateLimit(1.0, 20)
    assert c.rc_admin_redaction == RateLimit(1.0, 20)  # follows rc_message
    assert c.rc_login_failed_attempts == RateLimit(0.5, 3)
    assert c.rc_login_address == RateLimit(0.003, 5)
    assert c.rc_joins_remote == RateLimit(0.01, 3)
    assert c.rc_invites_per_user == RateLimit(0.01, 2)
    assert c.default_room_version == "11"
    assert c.presence_enabled is False
    assert c.user_directory_search_all_users is True
    assert c.federation_domain_whitelist == ["a.example", "b.example:8448"]
    assert c.trusted_key_servers[0]["verify_keys"] == {"ed25519:auto": "abcd"}
    assert c.ip_range_whitelist == ["192.168.1.1"]
    assert c.serve_server_wellknown is True


def test_secrets_are_not_in_repr(cfg_dir):
    c = parse(
        cfg_dir,
        macaroon_secret_key="MACAROON-XYZ",
        form_secret="FORM-XYZ",
        registration_shared_secret="REG-XYZ",
        turn_shared_secret="TURN-XYZ",
        turn_password="TURNPW-XYZ",
        database={"name": "psycopg2", "args": {"password": "PG-XYZ"}},
    )
    text = repr(c)
    for secret in ("MACAROON-XYZ", "FORM-XYZ", "REG-XYZ", "TURN-XYZ", "TURNPW-XYZ", "PG-XYZ"):
        assert secret not in text


def test_secret_path_keys(cfg_dir):
    (cfg_dir / "reg.secret").write_text("from-file\n")
    c = parse(cfg_dir, registration_shared_secret_path="reg.secret")
    assert c.registration_shared_secret == "from-file"
    refused(
        cfg_dir, "registration_shared_secret:",
        registration_shared_secret="x", registration_shared_secret_path="reg.secret",
    )
    refused(cfg_dir, "turn_shared_secret_path:", turn_shared_secret_path="missing")


def test_listeners_synapse_shape(cfg_dir, caplog):
    caplog.set_level(logging.WARNING)
    c = parse(
        cfg_dir,
        listeners=[
            {
                "port": 8008,
                "tls": False,
                "type": "http",
                "x_forwarded": True,
                "bind_addresses": ["::1", "127.0.0.1"],
                "resources": [{"names": ["client", "federation"], "compress": False}],
            },
            {"port": 9000, "bind_addresses": ["127.0.0.1"], "type": "manhole"},
            {"port": 9001, "type": "metrics"},
            {"port": 8448, "type": "http", "resources": [{"names": ["federation"]}]},
        ],
    )
    assert [lc.port for lc in c.listeners] == [8008, 9001, 8448]
    first, metrics, second = c.listeners
    assert metrics.resources == ["metrics"]  # Synapse's metrics listener: that resource alone
    assert first.x_forwarded is True
    assert first.trusted_proxies == ("127.0.0.0/8", "::1/128")  # loopback unless listed
    assert first.bind_addresses == ["::1", "127.0.0.1"]
    assert first.resources[:1] == ["client"]
    assert {"client", "federation", "media", "keys", "openid"} <= set(first.resources)
    assert second.bind_addresses == ["::", "0.0.0.0"]  # Synapse: all interfaces
    assert "client" not in second.resources and "keys" in second.resources
    warnings = config_warnings(caplog)
    assert len(warnings) == 1
    assert any("manhole" in w for w in warnings)


def test_unknown_resource_name_warned(cfg_dir, caplog):
    caplog.set_level(logging.WARNING)
    c = parse(
        cfg_dir,
        listeners=[{"port": 8008, "type": "http",
                    "resources": [{"names": ["client", "clinet", "metrics"]}]}],
    )
    assert "clinet" not in c.listeners[0].resources and "metrics" in c.listeners[0].resources
    warnings = config_warnings(caplog)
    assert len(warnings) == 1
    assert any("clinet" in w and "typo" in w for w in warnings)


# ---------------------------------------------------------------------------
# refusals: every message starts with the key path
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "server_name",
    ["", "   ", "https://example.org", "example.org/path", "exa mple.org",
     "example.org:0", "example.org:99999", "example.org:http", "::1", None, 42],
)
def test_bad_server_name(cfg_dir, server_name):
    raw = minimal()
    raw["server_name"] = server_name
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, str(cfg_dir / "homeserver.yaml"))
    assert str(exc.value).startswith("server_name:")


def test_missing_server_name(cfg_dir):
    with pytest.raises(ConfigError, match=r"^server_name:"):
        parse_config({}, str(cfg_dir / "homeserver.yaml"))


@pytest.mark.parametrize("server_name", ["example.org", "localhost:8080", "[::1]:8448", "10.0.0.1"])
def test_good_server_names(cfg_dir, server_name):
    assert parse(cfg_dir, server_name=server_name).server_name == server_name


@pytest.mark.parametrize("port", [0, 65536, -1, "http", 8008.5, True, None])
def test_bad_listener_port(cfg_dir, port):
    msg = refused(
        cfg_dir, "listeners[1].port:",
        listeners=[{"port": 8008, "type": "http"}, {"port": port, "type": "http"}],
    )
    if port is not None:
        assert msg == "listeners[1].port: must be an integer between 1 and 65535"


def test_other_listener_refusals(cfg_dir):
    refused(cfg_dir, "listeners:", listeners="8008")
    refused(cfg_dir, "listeners[0]:", listeners=["8008"])
    refused(cfg_dir, "listeners[0].bind_addresses[0]:",
            listeners=[{"port": 8008, "bind_addresses": ["localhost"]}])
    refused(cfg_dir, "listeners[0].tls:", listeners=[{"port": 8448, "tls": True}])
    refused(cfg_dir, "listeners[0].x_forwarded:", listeners=[{"port": 8008, "x_forwarded": "yes"}])
    refused(cfg_dir, "federation_ip_range_blacklist[0]:", federation_ip_range_blacklist=["10.0.0.300/8"])
    assert parse(cfg_dir, federation_ip_range_blacklist=[]).federation_ip_range_blacklist == []
    refused(cfg_dir, "listeners[0].trusted_proxies[1]:",
            listeners=[{"port": 8008, "trusted_proxies": ["10.0.0.0/8", "proxy.internal"]}])
    assert parse(cfg_dir, listeners=[{"port": 8008, "trusted_proxies": ["10.1.2.3"]}]).listeners[0] \
        .trusted_proxies == ("10.1.2.3",)
    refused(cfg_dir, "listeners[0].resources[0].names:",
            listeners=[{"port": 8008, "resources": [{"names": "client"}]}])
    refused(cfg_dir, "listeners:", listeners=[{"port": 9000, "type": "manhole"}])


def test_unknown_database_name(cfg_dir):
    msg = refused(cfg_dir, "database.name:", database={"name": "mysql", "args": {}})
    assert "mysql" in msg


def test_bad_database_values(cfg_dir):
    refused(cfg_dir, "database:", database="sqlite")
    refused(cfg_dir, "database.args.cp_max:",
            database={"name": "psycopg2", "args": {"cp_max": 0}})
    refused(cfg_dir, "database.args.cp_min:",
            database={"name": "psycopg2", "args": {"cp_min": 20, "cp_max": 10}})
    refused(cfg_dir, "database.args.port:",
            database={"name": "psycopg2", "args": {"port": 70000}})


@pytest.mark.parametrize(
    "key,value,prefix",
    [
        ("rc_message", {"per_second": -1}, "rc_message.per_second:"),
        ("rc_message", {"burst_count": -5}, "rc_message.burst_count:"),
        ("rc_registration", {"per_second": "fast"}, "rc_registration.per_second:"),
        ("rc_login", {"address": {"per_second": -0.1}}, "rc_login.address.per_second:"),
        ("rc_joins", {"local": {"burst_count": -1}}, "rc_joins.local.burst_count:"),
        ("rc_invites", {"per_room": {"per_second": -2}}, "rc_invites.per_room.per_second:"),
        ("rc_admin_redaction", "lots", "rc_admin_redaction:"),
        ("rc_user_directory", {"burst_count": True}, "rc_user_directory.burst_count:"),
        ("rc_presence", {"per_user": {"per_second": "often"}}, "rc_presence.per_user.per_second:"),
        ("rc_federation", {"concurrent": -1}, "rc_federation.concurrent:"),
    ],
)
def test_bad_ratelimits(cfg_dir, key, value, prefix):
    refused(cfg_dir, prefix, **{key: value})


def test_federation_retry_intervals_read_as_synapse_s(cfg_dir, caplog):
    caplog.set_level(logging.WARNING)
    c = parse(cfg_dir, federation={"destination_min_retry_interval": "30s", "destination_retry_multiplier": 1.5,
                                   "destination_max_retry_interval": "1d", "max_long_retries": 5})
    assert (c.federation_destination_min_retry_interval, c.federation_destination_retry_multiplier,
            c.federation_destination_max_retry_interval) == (30_000, 1.5, 86_400_000)
    (warning,) = config_warnings(caplog)
    assert "federation.max_long_retries" in warning and "not implement" in warning
    default = parse(cfg_dir)
    assert (default.federation_destination_min_retry_interval, default.federation_destination_retry_multiplier,
            default.federation_destination_max_retry_interval) == (1000, 2.0, 3_600_000)


@pytest.mark.parametrize("sub, value", [("destination_retry_multiplier", 0.5), ("destination_retry_multiplier", "2"),
                                        ("destination_retry_multiplier", True), ("destination_min_retry_interval", 0),
                                        ("destination_max_retry_interval", "soon")])
def test_bad_federation_retry_intervals_refused(cfg_dir, sub, value):
    refused(cfg_dir, f"federation.{sub}:", federation={sub: value})


@pytest.mark.parametrize("value", ["1 fortnight", "h", "-5m", -1, "5 minutes", False, {}])
def test_bad_duration(cfg_dir, value):
    refused(cfg_dir, "turn_user_lifetime:", turn_user_lifetime=value)


def test_default_room_version_refusals(cfg_dir):
    msg = refused(cfg_dir, "default_room_version:", default_room_version="99")
    assert "99" in msg and "unknown" in msg
    msg = refused(cfg_dir, "default_room_version:", default_room_version="9")
    assert "known" in msg
    assert parse(cfg_dir, default_room_version="10").default_room_version == "10"


@pytest.mark.parametrize(
    "key,value",
    [
        ("enable_registration", "yes"),
        ("allow_public_rooms_without_auth", 1),
        ("federation_verify_certificates", "false"),
        ("bcrypt_rounds", 3),
        ("bcrypt_rounds", "many"),
        ("filter_timeline_limit", -2),
        ("filter_timeline_limit", "many"),
        ("turn_uris", "turn:example.org"),
        ("public_baseurl", "example.org"),
        ("ip_range_blacklist", ["not-an-ip"]),
        ("federation_domain_whitelist", ["https://bad"]),
        ("trusted_key_servers", [{"server_name": ""}]),
        ("presence", {"enabled": "sometimes"}),
        ("user_directory", {"search_all_users": "all"}),
        ("federation_custom_ca_list", [1]),
        ("turn_username", 5),
    ],
)
def test_wrong_types_refused_with_key(cfg_dir, key, value):
    msg = refused(cfg_dir, key, **{key: value})
    assert msg.split(":")[0].split(".")[0].split("[")[0] == key


@pytest.mark.parametrize("key", ["registration_shared_secret", "turn_shared_secret"])
def test_a_misconfigured_secret_is_never_quoted(cfg_dir, key):
    msg = refused(cfg_dir, key, **{key: 98765432123})
    assert "98765432123" not in msg
    msg = refused(cfg_dir, "database.args.password", database={
        "name": "psycopg2", "args": {"database": "hs", "password": ["hunter2-secret"]}})
    assert "hunter2-secret" not in msg


@pytest.mark.parametrize("value,expected", [("1.3", "1.3"), (1.3, "1.3"), ("1.2", "1.2"), (1.2, "1.2")])
def test_federation_client_minimum_tls_version(cfg_dir, caplog, value, expected):
    c = parse(cfg_dir, federation_client_minimum_tls_version=value)
    assert c.federation_client_minimum_tls_version == expected
    assert config_warnings(caplog) == []


@pytest.mark.parametrize("value", ["1", 1, "1.1", 1.1])
def test_federation_client_minimum_tls_below_1_2_means_1_2(cfg_dir, caplog, value):
    assert parse(cfg_dir, federation_client_minimum_tls_version=value).federation_client_minimum_tls_version == "1.2"
    assert [w for w in config_warnings(caplog) if "federation_client_minimum_tls_version" in w and "1.2" in w]


@pytest.mark.parametrize("value", ["1.4", "tls1.3", True, [1.3]])
def test_federation_client_minimum_tls_version_refusals(cfg_dir, value):
    refused(cfg_dir, "federation_client_minimum_tls_version:", federation_client_minimum_tls_version=value)


def test_open_registration_without_verification_refused(cfg_dir):
    refused(cfg_dir, "enable_registration:", enable_registration=True)
    c = parse(cfg_dir, enable_registration=True, enable_registration_without_verification=True)
    assert c.enable_registration


# ---------------------------------------------------------------------------
# warnings
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,value",
    [
        ("url_preview_accept_language", ["en-GB"]),
        ("oidc_providers", [{"idp_id": "google", "issuer": "https://accounts.google.com/"}]),
        # keys read by no code: reported, not silently accepted
        ("track_appservice_user_ips", True),
        ("form_secret", "form"),
        ("form_secret_path", "form.secret"),
        ("macaroon_secret_key", "mac"),
        ("macaroon_secret_key_path", "mac.secret"),
        ("pid_file", "/run/hexagone.pid"),
        ("turn_allow_guests", False),
    ],
)
def test_unimplemented_synapse_key_warned_once(cfg_dir, caplog, key, value):
    caplog.set_level(logging.WARNING)
    c = parse(cfg_dir, **{key: value})
    warnings = config_warnings(caplog)
    assert len(warnings) == 1
    assert key in warnings[0]
    assert "Synapse" in warnings[0] and "not implement" in warnings[0]
    assert not hasattr(c, key)


def test_every_key_is_declared_once_and_synapse_keys_are_synapse_s():
    names = [k.name for k in KEYS]
    assert len(names) == len(set(names))
    attrs = [k.attribute for k in KEYS]
    assert len(attrs) == len(set(attrs))
    for k in KEYS:
        assert k.origin in (SYNAPSE, HEXAGONE), k.name
        assert k.doc, k.name
        if k.origin == SYNAPSE:
            assert k.top in SYNAPSE_TOP_LEVEL_KEYS, k.name


def test_old_signing_keys_stay_implemented(cfg_dir, caplog):
    caplog.set_level(logging.WARNING)
    public = get_verify_key(generate_signing_key("old"))
    old = {"ed25519:old": {"key": encode_base64(public.encode()), "expired_ts": 1}}
    ((key_id, (key, expired_ts)),) = parse(cfg_dir, old_signing_keys=old).old_signing_keys.items()
    assert (key_id, key.encode(), expired_ts) == ("ed25519:old", public.encode(), 1)
    assert config_warnings(caplog) == []


GOOD_KEY = encode_base64(b"k" * 32)


@pytest.mark.parametrize("extra,message", [
    ({"listeners": [{"port": 8008}, {"type": "http"}]}, "listeners[1].port: is required"),
    ({"listeners": [{"port": "eighty"}]}, "listeners[0].port: must be an integer between 1 and 65535"),
    ({"listeners": [{"port": 8008, "bind_addresses": []}]}, "listeners[0].bind_addresses: must not be empty"),
    ({"listeners": [{"port": 8008, "bind_addresses": "::"}]},
     "listeners[0].bind_addresses: must be a list of strings, got '::'"),
    ({"listeners": [{"port": 8008, "type": 7}]}, "listeners[0].type: must be a string, got 7"),
    ({"listeners": [{"port": 8008, "tls": "no"}]}, "listeners[0].tls: must be true or false, got 'no'"),
    ({"listeners": [{"port": 8008, "resources": {"names": ["client"]}}]},
     "listeners[0].resources: must be a list of mappings (names, compress)"),
    ({"listeners": [{"port": 8008, "resources": [{"names": ["client"], "compress": 1}]}]},
     "listeners[0].resources[0].compress: must be true or false, got 1"),
    ({"database": {"name": "sqlite3", "args": ["homeserver.db"]}}, "database.args: must be a mapping, got"),
    ({"database": {"name": "sqlite3", "args": {"database": ""}}}, "database.args.database: must be a file path"),
    ({"database": {"name": "psycopg2", "args": {"port": "x"}}},
     "database.args.port: must be an integer between 1 and 65535"),
    ({"database": {"name": "psycopg2", "args": {"cp_min": -1}}}, "database.args.cp_min: must be an integer >= 0"),
    ({"database": {"name": "psycopg2", "args": {"password_file": 3}}},
     "database.args.password_file: must be a string, got 3"),
    ({"database": {"name": "psycopg2", "args": {"host": ["a"]}}},
     "database.args.host: must be a string or number, got ['a']"),
    ({"trusted_key_servers": [{"server_name": "a.example"}, {"verify_keys": {}}]},
     "trusted_key_servers[1].server_name: is required"),
    ({"trusted_key_servers": [{"server_name": "https://a.example"}]},
     "trusted_key_servers[0].server_name: must be a bare hostname"),
    ({"trusted_key_servers": [{"server_name": "a.example", "verify_keys": {"rsa:1": "abc"}}]},
     "trusted_key_servers[0].verify_keys: unsupported key id 'rsa:1'"),
    ({"trusted_key_servers": [{"server_name": "a.example", "verify_keys": ["abc"]}]},
     "trusted_key_servers[0].verify_keys: must map key ids"),
    ({"trusted_key_servers": {"server_name": "a.example"}},
     "trusted_key_servers: must be a list of mappings (server_name, verify_keys, accept_keys_insecurely)"),
    ({"old_signing_keys": ["x"]}, "old_signing_keys: must be a mapping of key ids to {key, expired_ts}"),
    ({"old_signing_keys": {"rsa:1": {"key": GOOD_KEY, "expired_ts": 1}}},
     "old_signing_keys.rsa:1: unsupported key id (expected ed25519:<version>)"),
    ({"old_signing_keys": {"ed25519:a": "abc"}}, "old_signing_keys.ed25519:a: must be a mapping (key, expired_ts)"),
    ({"old_signing_keys": {"ed25519:a": {"key": GOOD_KEY}}}, "old_signing_keys.ed25519:a.expired_ts: is required"),
    ({"old_signing_keys": {"ed25519:a": {"key": "not base64!", "expired_ts": 1}}},
     "old_signing_keys.ed25519:a.key: not an unpadded base64 ed25519 public key"),
    ({"old_signing_keys": {"ed25519:a": {"key": "abc", "expired_ts": 1}}},
     "old_signing_keys.ed25519:a.key: not an unpadded base64 ed25519 public key"),
    ({"old_signing_keys": {"ed25519:a": {"key": GOOD_KEY, "expired_ts": True}}},
     "old_signing_keys.ed25519:a.expired_ts: must be an integer"),
])
def test_a_wrong_sub_key_is_refused_with_its_path_and_reason(cfg_dir, extra, message):
    """Sub-keys of list items and mappings (table.Field) are refused like keys: path, then reason."""
    assert refused(cfg_dir, message, **extra).startswith(message)


def test_sub_keys_are_declared_once_with_a_description():
    def check(fields, path):
        names = [f.name for f in fields]
        assert len(names) == len(set(names)), path
        for f in fields:
            assert f.doc and hasattr(Reader, f"kind_{f.kind}"), f"{path}.{f.name}"
            check(f.items, f"{path}.{f.name}")
    for k in KEYS:
        check(k.items, k.name)


def test_room_versions_come_from_the_events_module(cfg_dir):
    from homeserver.events import room_versions

    for version in room_versions.KNOWN_ROOM_VERSIONS:
        if version in room_versions.CREATABLE_ROOM_VERSIONS:
            assert parse(cfg_dir, default_room_version=version).default_room_version == version
        else:
            refused(cfg_dir, "default_room_version:", default_room_version=version)
    assert parse(cfg_dir).default_room_version == room_versions.DEFAULT_ROOM_VERSION


def test_unknown_key_warned_as_typo(cfg_dir, caplog):
    caplog.set_level(logging.WARNING)
    parse(cfg_dir, enable_registraton=True)
    warnings = config_warnings(caplog)
    assert len(warnings) == 1
    assert "enable_registraton" in warnings[0] and "typo" in warnings[0]


def test_unknown_nested_keys_warned(cfg_dir, caplog):
    caplog.set_level(logging.WARNING)
    parse(cfg_dir, rc_login={"adress": {"per_second": 1}},
          presence={"enabled": True, "include_offline_users_on_sync": True})
    warnings = config_warnings(caplog)
    assert len(warnings) == 2
    assert any("rc_login.adress" in w and "typo" in w for w in warnings)
    assert any("presence.include_offline_users_on_sync" in w and "Synapse" in w for w in warnings)


def test_report_stats_ignored_silently(cfg_dir, caplog):
    caplog.set_level(logging.WARNING)
    parse(cfg_dir, report_stats=False)
    parse(cfg_dir, report_stats=True)
    assert config_warnings(caplog) == []


# ---------------------------------------------------------------------------
# databases and a real Synapse-shaped file
# ---------------------------------------------------------------------------

SYNAPSE_SAMPLE = """\
# Configuration file for Synapse.
server_name: "matrix.example.com"
pid_file: /data/homeserver.pid
listeners:
  - port: 8008
    tls: false
    type: http
    x_forwarded: true
    bind_addresses: ['::1', '127.0.0.1']
    resources:
      - names: [client, federation]
        compress: false
database:
  name: psycopg2
  txn_limit: 10000
  args:
    user: synapse_user
    password: "secret pass'word"
    database: synapse
    host: db.internal
    port: 5432
    cp_min: 5
    cp_max: 10
log_config: "/data/matrix.example.com.log.config"
media_store_path: /data/media_store
registration_shared_secret: "reg-secret"
report_stats: false
macaroon_secret_key: "mac-secret"
form_secret: "form-secret"
signing_key_path: "/data/matrix.example.com.signing.key"
trusted_key_servers:
  - server_name: "matrix.org"
suppress_key_server_warning: true
max_upload_size: 100M
url_preview_enabled: true
url_preview_ip_range_blacklist:
  - '127.0.0.0/8'
enable_registration: false
"""


def test_synapse_sample_with_postgres(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    path = tmp_path / "homeserver.yaml"
    path.write_text(SYNAPSE_SAMPLE)
    c = load_config(str(path))
    assert c.server_name == "matrix.example.com"
    assert c.database.engine == "postgresql"
    assert c.database.sqlite_path is None
    assert (c.database.cp_min, c.database.cp_max) == (5, 10)
    assert conninfo_to_dict(c.database.pg_dsn) == {
        "user": "synapse_user",
        "password": "secret pass'word",
        "dbname": "synapse",
        "host": "db.internal",
        "port": "5432",
    }
    assert c.listeners[0].x_forwarded is True
    assert c.signing_key_path == "/data/matrix.example.com.signing.key"
    assert c.suppress_key_server_warning is True
    assert (c.media_store_path, c.max_upload_size) == ("/data/media_store", 100 * 1024 ** 2)
    warnings = config_warnings(caplog)
    assert sorted(w.split()[1].rstrip(":") for w in warnings) == [
        "form_secret", "macaroon_secret_key", "pid_file",
    ]
    assert (c.url_preview_enabled, c.url_preview_ip_range_blacklist) == (True, ["127.0.0.0/8"])


def test_postgres_password_sources(cfg_dir, monkeypatch):
    args = {"user": "u", "dbname": "d", "host": "h"}
    monkeypatch.setenv("PGPASSWORD", "from-env")
    c = parse(cfg_dir, database={"name": "psycopg", "args": dict(args)})
    assert conninfo_to_dict(c.database.pg_dsn)["password"] == "from-env"

    (cfg_dir / "pgpass").write_text("from-file\n")
    c = parse(cfg_dir, database={"name": "psycopg2", "args": {**args, "password_file": "pgpass"}})
    assert conninfo_to_dict(c.database.pg_dsn)["password"] == "from-file"

    c = parse(cfg_dir, database={"name": "psycopg2", "args": {**args, "password": "inline"}})
    assert conninfo_to_dict(c.database.pg_dsn)["password"] == "inline"

    monkeypatch.delenv("PGPASSWORD")
    c = parse(cfg_dir, database={"name": "psycopg2", "args": dict(args)})
    assert "password" not in conninfo_to_dict(c.database.pg_dsn)

    refused(cfg_dir, "database.args.password_file:",
            database={"name": "psycopg2", "args": {**args, "password_file": "nope"}})


def test_sqlite_relative_path(cfg_dir):
    c = parse(cfg_dir, database={"name": "sqlite3", "args": {"database": "data/hs.db"}})
    assert c.database.sqlite_path == os.path.join(str(cfg_dir), "data/hs.db")
    assert (c.database.cp_min, c.database.cp_max) == (1, 1)


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="^config file:"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("server_name: [unclosed\n")
    with pytest.raises(ConfigError, match="^config file:"):
        load_config(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="^config file:"):
        load_config(str(listy))


# ---------------------------------------------------------------------------
# durations, sizes, signing keys, generation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,ms",
    [(1000, 1000), ("86400000", 86_400_000), ("5m", 300_000), ("1h", 3_600_000),
     ("30s", 30_000), ("2d", 172_800_000), ("1w", 604_800_000), ("1y", 31_536_000_000)],
)
def test_durations(value, ms):
    assert parse_duration_ms(value, "k") == ms


def test_read_signing_key(cfg_dir, tmp_path):
    key = read_signing_key(str(cfg_dir / "signing.key"))
    assert key.alg == "ed25519" and key.version == "a_test"
    with pytest.raises(ConfigError, match="^signing_key_path:"):
        read_signing_key(str(tmp_path / "none.key"))
    (tmp_path / "bad.key").write_text("ed25519 a_x not-base64!!\n")
    with pytest.raises(ConfigError, match="^signing_key_path:"):
        read_signing_key(str(tmp_path / "bad.key"))
    (tmp_path / "empty.key").write_text("")
    with pytest.raises(ConfigError, match="^signing_key_path:"):
        read_signing_key(str(tmp_path / "empty.key"))


def test_generated_config_parses_without_warnings(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    text = generate_config_yaml("example.org", str(tmp_path), port=8448)
    raw = yaml.safe_load(text)
    c = parse_config(raw, str(tmp_path / "homeserver.yaml"))
    assert config_warnings(caplog) == []
    assert c.listeners[0].port == 8448
    assert c.listeners[0].bind_addresses == ["127.0.0.1"]
    assert raw["listeners"][0]["resources"] == [{"names": ["client", "federation"], "compress": False}]
    assert raw["database"] == {"name": "sqlite3", "args": {"database": str(tmp_path / "homeserver.db")}}
    assert c.database.sqlite_path == str(tmp_path / "homeserver.db")
    assert c.signing_key_path == str(tmp_path / "signing.key")
    # fresh random secrets every time
    other = yaml.safe_load(generate_config_yaml("example.org", str(tmp_path)))
    for key in ("registration_shared_secret",):
        assert len(raw[key]) >= 32
        assert raw[key] != other[key]
    # every key line is preceded by a comment explaining it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line and not line[0].isspace() and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"


def test_generated_config_postgres_url(tmp_path):
    text = generate_config_yaml(
        "example.org", str(tmp_path),
        database_url="postgresql://hx:p%40ss@db.internal:5433/hexagone",
    )
    raw = yaml.safe_load(text)
    assert raw["database"] == {
        "name": "psycopg2",
        "args": {"user": "hx", "password": "p@ss", "dbname": "hexagone",
                 "host": "db.internal", "port": 5433, "cp_min": 5, "cp_max": 10},
    }
    c = parse_config(raw, str(tmp_path / "homeserver.yaml"))
    assert conninfo_to_dict(c.database.pg_dsn) == {
        "user": "hx", "password": "p@ss", "dbname": "hexagone",
        "host": "db.internal", "port": "5433",
    }


@pytest.mark.parametrize(
    "url", ["sqlite:///srv/hx/hs.db", "sqlite:////srv/hx/hs.db", "/srv/hx/hs.db"]
)
def test_generated_config_sqlite_url(tmp_path, url):
    raw = yaml.safe_load(generate_config_yaml("example.org", str(tmp_path), database_url=url))
    assert raw["database"] == {"name": "sqlite3", "args": {"database": "/srv/hx/hs.db"}}


def test_generated_config_refuses_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="^server_name:"):
        generate_config_yaml("https://example.org", str(tmp_path))
    with pytest.raises(ConfigError, match="^database:"):
        generate_config_yaml("example.org", str(tmp_path), database_url="mysql://x/y")


def test_sample_config_is_current():
    with open(os.path.join(REPO_ROOT, "conf", "homeserver.sample.yaml")) as f:
        sample = f.read()
    expected = generate_config_yaml(
        "example.org", "/var/lib/hexagone", placeholder_secret="CHANGE_ME"
    )
    assert sample == expected, (
        "conf/homeserver.sample.yaml is stale; regenerate it with generate_config_yaml"
    )
    raw = yaml.safe_load(sample)
    assert raw["registration_shared_secret"] == "CHANGE_ME"


@pytest.mark.parametrize(
    "key,value,prefix",
    [
        ("max_event_delay_duration", 0, "max_event_delay_duration:"),
        ("max_event_delay_duration", "soon", "max_event_delay_duration:"),
        ("experimental_features", {"msc4140_max_delayed_events_per_user": -1},
         "experimental_features.msc4140_max_delayed_events_per_user:"),
        ("extra_well_known_client_content", ["org.matrix.msc4143.rtc_foci"], "extra_well_known_client_content:"),
        ("matrix_rtc", {"transports": {"type": "livekit"}}, "matrix_rtc.transports:"),
        ("matrix_rtc", {"transports": [{"type": "livekit"}]}, "matrix_rtc.transports[0]:"),
        ("matrix_rtc", {"transports": ["livekit"]}, "matrix_rtc.transports[0]:"),
    ],
)
def test_bad_matrixrtc_keys(cfg_dir, key, value, prefix):
    """Issue 17: delayed events, the RTC focus in .well-known, the MSC4143 transports."""
    refused(cfg_dir, prefix, **{key: value})


def test_matrixrtc_keys(cfg_dir):
    foci = {"org.matrix.msc4143.rtc_foci": [{"type": "livekit", "livekit_service_url": "https://j.example.org"}]}
    c = parse(cfg_dir, max_event_delay_duration="1d", extra_well_known_client_content=foci,
              matrix_rtc={"transports": foci["org.matrix.msc4143.rtc_foci"]})
    assert (c.max_event_delay_ms, c.max_delayed_events_per_user) == (86_400_000, 100)
    assert c.extra_well_known_client_content == foci
    assert c.matrix_rtc_transports == foci["org.matrix.msc4143.rtc_foci"]
    assert parse(cfg_dir).max_event_delay_ms is None
def test_media_keys(cfg_dir):
    c = parse(cfg_dir, max_upload_size="10M", max_image_pixels=1000, media_store_path="media",
              media_upload_limits=[{"time_period": "1h", "max_size": "1G"}],
              thumbnail_sizes=[{"width": 64, "height": 48, "method": "crop"}],
              media_retention={"local_media_lifetime": "30d"})
    assert (c.max_upload_size, c.max_image_pixels) == (10 * 1024 ** 2, 1000)
    assert c.media_store_path == str(cfg_dir / "media")
    assert [(u.time_period_ms, u.max_size) for u in c.media_upload_limits] == [(3_600_000, 1024 ** 3)]
    assert [tuple(t) for t in c.thumbnail_sizes] == [(64, 48, "crop")]
    assert (c.media_retention.local_media_lifetime_ms, c.media_retention.remote_media_lifetime_ms) == (
        30 * 86_400_000, None)
    defaults = parse(cfg_dir)
    assert defaults.media_store_path == str(cfg_dir / "media_store") and defaults.enable_authenticated_media
    assert len(defaults.thumbnail_sizes) == 5 and defaults.max_upload_size == 50 * 1024 ** 2


def test_event_cache_size_as_synapse_reads_it(cfg_dir):
    assert parse(cfg_dir, event_cache_size="10K").event_cache_size == 10_240
    assert parse(cfg_dir, event_cache_size=2000).event_cache_size == 2000
    assert parse(cfg_dir).event_cache_size == 50_000
    refused(cfg_dir, "event_cache_size:", event_cache_size="many")


@pytest.mark.parametrize("key,value,prefix", [
    ("max_upload_size", "lots", "max_upload_size:"),
    ("max_upload_size", -1, "max_upload_size:"),
    ("media_upload_limits", [{"time_period": "1h"}], "media_upload_limits[0]:"),
    ("media_upload_limits", [{"time_period": "1h", "max_size": "big"}], "media_upload_limits[0].max_size:"),
    ("thumbnail_sizes", [{"width": 32, "height": 32, "method": "stretch"}], "thumbnail_sizes[0].method:"),
    ("thumbnail_sizes", [{"width": 0, "height": 32}], "thumbnail_sizes[0].width:"),
    ("thumbnail_sizes", [{"method": "crop"}], "thumbnail_sizes[0]:"),
    ("media_retention", {"local_media_lifetime": "soon"}, "media_retention.local_media_lifetime:"),
])
def test_bad_media_keys(cfg_dir, key, value, prefix):
    refused(cfg_dir, prefix, **{key: value})


def test_media_storage_providers(cfg_dir):
    entry = {"module": "s3_storage_provider.S3StorageProviderBackend", "store_local": True, "store_remote": True,
             "store_synchronous": True, "config": {"bucket": "b", "endpoint_url": "http://127.0.0.1:9000"}}
    (provider,) = parse(cfg_dir, media_storage_providers=[entry]).media_storage_providers
    assert (provider.module, provider.store_local, provider.store_remote, provider.store_synchronous) == (
        "s3_storage_provider.S3StorageProviderBackend", True, True, True)
    assert provider.config == {"bucket": "b", "endpoint_url": "http://127.0.0.1:9000"}
    (defaults,) = parse(cfg_dir, media_storage_providers=[{**entry, "store_local": None, "store_remote": None,
                                                           "store_synchronous": None}]).media_storage_providers
    assert (defaults.store_local, defaults.store_remote, defaults.store_synchronous) == (False, False, False)
    refused(cfg_dir, "media_storage_providers[0].module:", media_storage_providers=[{"store_local": True}])
    refused(cfg_dir, "media_storage_providers[0].module:", media_storage_providers=[{**entry, "module": "x.Y"}])
    refused(cfg_dir, "media_storage_providers[0].store_local:", media_storage_providers=[
        {**entry, "store_local": "yes"}])


# ---------------------------------------------------------------------------
# email (Synapse's section)
# ---------------------------------------------------------------------------


def test_email_section_read_with_synapse_defaults(cfg_dir, caplog):
    caplog.set_level(logging.WARNING)
    c = parse(cfg_dir, email={"smtp_host": "mail.example.org", "smtp_pass": "s3cret", "notif_from": "x <x@example.org>",
                              "notif_delay_before_mail": "2m", "force_tls": False})
    assert (c.email_smtp_host, c.email_smtp_port, c.email_app_name) == ("mail.example.org", 25, "Matrix")
    assert c.email_notif_delay_before_mail_ms == 120_000 and c.email_validation_token_lifetime_ms == 3_600_000
    assert c.email_enable_tls and not c.email_require_transport_security and not c.email_enable_notifs
    assert "s3cret" not in repr(c)
    warnings = config_warnings(caplog)
    assert len(warnings) == 1 and "email.force_tls" in warnings[0]


def test_email_section_needs_notif_from_and_tls_for_transport_security(cfg_dir):
    refused(cfg_dir, "email.notif_from", email={"smtp_host": "mail.example.org"})
    refused(cfg_dir, "email.notif_from", email={"notif_from": "not an address"})
    refused(cfg_dir, "email.require_transport_security",
            email={"notif_from": "x@example.org", "require_transport_security": True, "enable_tls": False})
    refused(cfg_dir, "registrations_require_3pid", registrations_require_3pid=["email"])
    refused(cfg_dir, "registrations_require_3pid", registrations_require_3pid=["msisdn"],
            email={"notif_from": "x@example.org"})
    assert parse(cfg_dir, registrations_require_3pid=["email"],
                 email={"notif_from": "x@example.org"}).registrations_require_3pid == ["email"]

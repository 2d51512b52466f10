"""Homeserver configuration: a YAML file using Synapse's key names and shapes.

An administrator's Synapse ``homeserver.yaml`` should mostly carry over:

* keys we implement are validated; a wrong value raises :class:`ConfigError`
  whose message starts with the key path (``listeners[0].port: ...``);
* Synapse keys we do not implement yet are logged once each (a warning, never
  a refusal) and ignored;
* keys neither we nor Synapse know are logged once each as a possible typo.

Relative paths are resolved against the directory holding the config file.

This module is pure: no Twisted, no network, only file reads (secret files,
signing key).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

logger = logging.getLogger(__name__)


class ConfigError(Exception):
    """A configuration value we cannot start with.

    The message starts with the key path, e.g.
    ``listeners[0].port: must be an integer between 1 and 65535``.
    """


# ---------------------------------------------------------------------------
# Value objects
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst_count: int


@dataclass(frozen=True)
class FederationRateLimit:
    """Synapse's ``rc_federation`` shape."""

    window_size: int = 1000  # ms
    sleep_limit: int = 10
    sleep_delay: int = 500  # ms
    reject_limit: int = 50
    concurrent: int = 3


@dataclass(frozen=True)
class ListenerConfig:
    port: int
    bind_addresses: list[str]
    type: str
    tls: bool
    # Resource names served on this listener, including the ones Synapse
    # implies (client -> media, static; federation -> media, keys, openid).
    resources: list[str]
    x_forwarded: bool
    compress: bool = False
    # Peers whose X-Forwarded-For is believed when x_forwarded is on (Hexagone's key; Synapse has none).
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class DatabaseConfig:
    engine: str  # "sqlite" or "postgresql"
    sqlite_path: str | None
    # libpq keyword/value conninfo; may contain the password, so not in repr.
    pg_dsn: str | None = field(repr=False)
    cp_min: int
    cp_max: int


# Synapse's default outbound blacklist (private / special-use ranges).
DEFAULT_IP_RANGE_BLACKLIST: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
)

KNOWN_ROOM_VERSIONS: tuple[str, ...] = tuple(str(i) for i in range(1, 13))
CREATABLE_ROOM_VERSIONS: tuple[str, ...] = ("10", "11", "12")
DEFAULT_ROOM_VERSION = "12"

DEFAULT_MAX_UPLOAD_SIZE = 50 * 1024 * 1024
DEFAULT_TURN_USER_LIFETIME_MS = 60 * 60 * 1000

# Synapse ratelimits of features Hexagone does not have yet: parsed, reported at start-up, not enforced.
RC_NOT_ENFORCED = ("rc_third_party_invite", "rc_3pid_validation", "rc_media_create", "rc_delayed_event_mgmt",
                   "rc_reports")

# Synapse's documented ratelimit defaults.
RC_DEFAULTS: dict[str, tuple[float, float]] = {
    "rc_message": (0.2, 10),
    "rc_registration": (0.17, 3),
    "rc_registration_token_validity": (0.1, 5),
    "rc_login.address": (0.003, 5),
    "rc_login.account": (0.003, 5),
    "rc_login.failed_attempts": (0.17, 3),
    "rc_joins.local": (0.1, 10),
    "rc_joins.remote": (0.01, 10),
    "rc_joins_per_room": (1.0, 10),
    "rc_invites.per_room": (0.3, 10),
    "rc_invites.per_user": (0.003, 5),
    "rc_invites.per_issuer": (0.3, 10),
    "rc_third_party_invite": (0.2, 10),
    "rc_3pid_validation": (0.003, 5),
    "rc_media_create": (10.0, 50),
    "rc_presence.per_user": (0.1, 1),
    "rc_delayed_event_mgmt": (1.0, 5),
    "rc_reports": (1.0, 5),
    "rc_room_creation": (0.016, 10),
    "rc_user_directory": (0.016, 200),
    # rc_admin_redaction defaults to whatever rc_message is.
}


@dataclass(frozen=True)
class Config:
    config_path: str
    config_dir: str
    server_name: str
    public_baseurl: str
    listeners: list[ListenerConfig]
    database: DatabaseConfig
    signing_key_path: str

    # registration
    enable_registration: bool = False
    enable_registration_without_verification: bool = False
    registration_shared_secret: str | None = field(default=None, repr=False)
    registration_requires_token: bool = False
    bcrypt_rounds: int = 12
    filter_timeline_limit: int = 100

    # VoIP
    turn_uris: list[str] = field(default_factory=list)
    turn_shared_secret: str | None = field(default=None, repr=False)
    turn_username: str | None = None
    turn_password: str | None = field(default=None, repr=False)
    turn_user_lifetime_ms: int = DEFAULT_TURN_USER_LIFETIME_MS
    turn_allow_guests: bool = True

    # ratelimits
    rc_message: RateLimit = RateLimit(0.2, 10)
    rc_registration: RateLimit = RateLimit(0.17, 3)
    rc_registration_token_validity: RateLimit = RateLimit(0.1, 5)
    rc_login_address: RateLimit = RateLimit(0.003, 5)
    rc_login_account: RateLimit = RateLimit(0.003, 5)
    rc_login_failed_attempts: RateLimit = RateLimit(0.17, 3)
    rc_joins_local: RateLimit = RateLimit(0.1, 10)
    rc_joins_remote: RateLimit = RateLimit(0.01, 10)
    rc_joins_per_room: RateLimit = RateLimit(1.0, 10)
    rc_invites_per_room: RateLimit = RateLimit(0.3, 10)
    rc_invites_per_user: RateLimit = RateLimit(0.003, 5)
    rc_invites_per_issuer: RateLimit = RateLimit(0.3, 10)
    rc_third_party_invite: RateLimit = RateLimit(0.2, 10)
    rc_admin_redaction: RateLimit = RateLimit(0.2, 10)
    rc_3pid_validation: RateLimit = RateLimit(0.003, 5)
    rc_media_create: RateLimit = RateLimit(10.0, 50)
    rc_presence_per_user: RateLimit = RateLimit(0.1, 1)
    rc_delayed_event_mgmt: RateLimit = RateLimit(1.0, 5)
    rc_reports: RateLimit = RateLimit(1.0, 5)
    rc_room_creation: RateLimit = RateLimit(0.016, 10)
    rc_user_directory: RateLimit = RateLimit(0.016, 200)
    rc_federation: FederationRateLimit = FederationRateLimit()

    # application services, media
    app_service_config_files: list[str] = field(default_factory=list)
    max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE
    media_store_path: str = ""

    # rooms, profiles, presence, directory
    default_room_version: str = DEFAULT_ROOM_VERSION
    allow_public_rooms_without_auth: bool = False
    allow_public_rooms_over_federation: bool = False
    require_auth_for_profile_requests: bool = False
    limit_profile_requests_to_users_who_share_rooms: bool = False
    presence_enabled: bool = True
    user_directory_enabled: bool = True
    user_directory_search_all_users: bool = False
    serve_server_wellknown: bool = False

    # process
    log_config: str | None = None
    pid_file: str | None = None

    # secrets (never logged)
    form_secret: str | None = field(default=None, repr=False)
    macaroon_secret_key: str | None = field(default=None, repr=False)

    # federation
    federation_domain_whitelist: list[str] | None = None
    trusted_key_servers: list[dict] = field(
        default_factory=lambda: [{"server_name": "matrix.org"}]
    )
    suppress_key_server_warning: bool = False
    federation_verify_certificates: bool = True
    federation_custom_ca_list: list[str] = field(default_factory=list)
    federation_client_minimum_tls_version: str = "1.2"  # "1.2" or "1.3": never below 1.2
    ip_range_blacklist: list[str] = field(
        default_factory=lambda: list(DEFAULT_IP_RANGE_BLACKLIST)
    )
    ip_range_whitelist: list[str] = field(default_factory=list)
    # Synapse's older key: when set, federation uses it (and no whitelist) instead of the two above.
    federation_ip_range_blacklist: list[str] | None = None
    tls_certificate_path: str | None = None
    tls_private_key_path: str | None = None

    # the parsed YAML, as read (contains secrets: not in repr)
    raw: dict = field(default_factory=dict, repr=False)


# ---------------------------------------------------------------------------
# Key catalogues
# ---------------------------------------------------------------------------

# Top-level keys from Synapse's configuration documentation
# (docs/usage/configuration/config_documentation.md), plus a few legacy names
# Synapse still reads. Used only to word the warning for keys we ignore.
SYNAPSE_TOP_LEVEL_KEYS: frozenset[str] = frozenset(
    """
    modules server_name pid_file daemonize print_pidfile user_agent_suffix
    use_frozen_dicts web_client_location public_baseurl serve_server_wellknown
    extra_well_known_client_content soft_file_limit presence
    require_auth_for_profile_requests
    limit_profile_requests_to_users_who_share_rooms include_profile_data_on_invite
    allow_public_rooms_without_auth allow_public_rooms_over_federation
    default_room_version gc_thresholds gc_min_interval
    block_non_admin_invites enable_search ip_range_blacklist ip_range_whitelist
    listeners manhole manhole_settings http_proxy https_proxy no_proxy_hosts
    matrix_authentication_service dummy_events_threshold delete_stale_devices_after
    email max_event_delay_duration user_types admin_contact hs_disabled
    hs_disabled_message limit_usage_by_mau max_mau_value mau_trial_days
    mau_appservice_trial_days mau_limit_alerting mau_stats_only
    mau_limit_reserved_threepids server_context limit_remote_rooms
    require_membership_for_aliases allow_per_room_profiles max_avatar_size
    allowed_avatar_mimetypes redaction_retention_period
    forgotten_room_retention_period user_ips_max_age
    request_token_inhibit_3pid_errors next_link_domain_whitelist templates
    retention tls_certificate_path tls_private_key_path
    federation_verify_certificates federation_client_minimum_tls_version
    federation_certificate_verification_whitelist federation_custom_ca_list
    federation_domain_whitelist federation_whitelist_endpoint_enabled
    federation_metrics_domains allow_profile_lookup_over_federation
    allow_device_name_lookup_over_federation federation event_cache_size caches
    database databases log_config rc_message rc_registration
    rc_registration_token_validity rc_login rc_admin_redaction rc_joins
    rc_joins_per_room rc_3pid_validation rc_invites rc_third_party_invite
    rc_media_create rc_federation rc_presence rc_delayed_event_mgmt rc_reports
    rc_room_creation rc_user_directory
    federation_rr_transactions_per_room_per_second enable_authenticated_media
    enable_media_repo enable_local_media_storage media_store_path
    max_pending_media_uploads unused_expiration_time media_storage_providers
    max_upload_size media_upload_limits max_image_pixels
    remote_media_download_burst_count remote_media_download_per_second
    prevent_media_downloads_from dynamic_thumbnails thumbnail_sizes
    media_retention url_preview_enabled url_preview_ip_range_blacklist
    url_preview_ip_range_whitelist url_preview_url_blacklist max_spider_size
    url_preview_accept_language oembed recaptcha_public_key
    recaptcha_public_key_path recaptcha_private_key recaptcha_private_key_path
    enable_registration_captcha recaptcha_siteverify_api turn_uris
    turn_shared_secret turn_shared_secret_path turn_username turn_password
    turn_user_lifetime turn_allow_guests matrix_rtc enable_registration
    enable_registration_without_verification registrations_require_3pid
    disable_msisdn_registration allowed_local_3pids enable_3pid_lookup
    registration_requires_token registration_shared_secret
    registration_shared_secret_path bcrypt_rounds allow_guest_access
    default_identity_server account_threepid_delegates enable_set_displayname
    enable_set_avatar_url enable_3pid_changes auto_join_rooms
    autocreate_auto_join_rooms autocreate_auto_join_rooms_federated
    autocreate_auto_join_room_preset auto_join_mxid_localpart
    auto_join_rooms_for_guests inhibit_user_in_use_error
    allow_underscore_prefixed_registration session_lifetime
    refreshable_access_token_lifetime refresh_token_lifetime
    nonrefreshable_access_token_lifetime ui_auth login_via_existing_session
    enable_metrics sentry metrics_flags report_stats report_stats_endpoint
    room_prejoin_state track_puppeted_user_ips app_service_config_files
    track_appservice_user_ips use_appservice_legacy_authorization
    macaroon_secret_key macaroon_secret_key_path form_secret form_secret_path
    signing_key_path old_signing_keys key_refresh_interval trusted_key_servers
    suppress_key_server_warning key_server_signing_keys_path saml2_config
    oidc_providers cas_config sso jwt_config password_config push
    encryption_enabled_by_default_for_room_type user_directory user_consent stats
    server_notices enable_room_list_search alias_creation_rules
    room_list_publication_rules default_power_level_content_override
    forget_rooms_on_leave exclude_rooms_from_sync exclude_rooms_from_presence
    opentracing worker_replication_secret worker_replication_secret_path
    start_pushers pusher_instances send_federation federation_sender_instances
    instance_map stream_writers outbound_federation_restricted_to
    run_background_tasks_on update_user_directory_from_worker
    notify_appservices_from_worker media_instance_running_background_jobs redis
    worker_app worker_name worker_listeners worker_manhole worker_daemonize
    worker_pid_file worker_log_config background_updates auto_accept_invites
    experimental_features
    use_presence perspectives
    url_preview_ip_range_blacklist limit_profile_requests_to_known_users
    no_tls tls_fingerprints acme enable_group_creation group_creation_prefix
    uploads_path media_storage_providers public_baseurl web_client
    """.split()
)

# Top-level keys read silently and deliberately ignored.
_SILENTLY_IGNORED_KEYS = frozenset({"report_stats"})

# Listener resource names.
_IMPLEMENTED_RESOURCES = frozenset(
    {"client", "federation", "keys", "media", "openid", "static", "health"}
)
_SYNAPSE_RESOURCES = frozenset(
    {"consent", "metrics", "replication"}
)  # known to Synapse, not served by Hexagone
_IMPLIED_RESOURCES = {
    "client": ("media", "static"),
    "federation": ("media", "keys", "openid"),
}

_DURATION_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60 * 1000,
    "h": 60 * 60 * 1000,
    "d": 24 * 60 * 60 * 1000,
    "w": 7 * 24 * 60 * 60 * 1000,
    "y": 365 * 24 * 60 * 60 * 1000,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$")

_SIZE_UNITS = {
    "": 1,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)\s*$", re.IGNORECASE)

# server_name: a DNS name, IPv4 literal or bracketed IPv6 literal, optional port.
_DNS_NAME_RE = re.compile(r"^[A-Za-z0-9.\-]{1,255}$")

_MISSING = object()


# ---------------------------------------------------------------------------
# Small value parsers (usable by other modules)
# ---------------------------------------------------------------------------


def parse_duration_ms(value: Any, key: str) -> int:
    """Synapse duration: an int (milliseconds) or a string like "5m", "1h",
    "86400000" (milliseconds). Returns milliseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: must be a duration like 30s, 5m, 1h or milliseconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return int(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            number, unit = m.group(1), m.group(2) or "ms"
            return int(float(number) * _DURATION_UNITS_MS[unit])
    raise ConfigError(
        f"{key}: must be a duration like 30s, 5m, 1h, 7d or a number of "
        f"milliseconds, got {value!r}"
    )


def parse_size(value: Any, key: str) -> int:
    """Synapse byte size: an int (bytes) or a string like "50M", "100K"."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: must be a size like 50M, 100K or a number of bytes")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    raise ConfigError(
        f"{key}: must be a size like 50M, 100K, 1G or a number of bytes, got {value!r}"
    )


def validate_server_name(value: Any, key: str = "server_name") -> str:
    """A Matrix server name: hostname / IP literal with an optional port."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty hostname such as example.org")
    if "://" in value:
        raise ConfigError(
            f"{key}: must be a bare hostname such as example.org, not a URL "
            f"(got {value!r}; put URLs in public_baseurl)"
        )
    if value != value.strip() or any(c in value for c in "/?#@ \t"):
        raise ConfigError(
            f"{key}: must be a bare hostname with an optional :port, got {value!r}"
        )
    host, port = value, None
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            raise ConfigError(f"{key}: unterminated IPv6 literal in {value!r}")
        host, rest = value[: end + 1], value[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ConfigError(f"{key}: invalid IPv6 literal {host!r}") from None
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{key}: unexpected text after IPv6 literal in {value!r}")
            port = rest[1:]
    else:
        if value.count(":") > 1:
            raise ConfigError(f"{key}: IPv6 literals must be in brackets, e.g. [::1]:8448")
        if ":" in value:
            host, port = value.split(":", 1)
        if not host or not _DNS_NAME_RE.match(host):
            raise ConfigError(
                f"{key}: {host!r} is not a valid hostname (letters, digits, '-' and '.')"
            )
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"{key}: port must be an integer between 1 and 65535")
    return value


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------


class _Parser:
    def __init__(self, raw: dict, config_path: str):
        self.raw = raw
        self.config_path = os.path.abspath(config_path)
        self.config_dir = os.path.dirname(self.config_path)
        self._warned: set[str] = set()

    # -- warnings --------------------------------------------------------

    def warn_once(self, key: str, message: str) -> None:
        """Log ``config <message>`` once per ``key`` (per parse)."""
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning("config %s", message)

    def warn_not_implemented(self, key: str, what: str = "a Synapse option") -> None:
        self.warn_once(
            key, f"{key}: is {what} that Hexagone does not implement yet; ignored"
        )

    def warn_unknown(self, key: str) -> None:
        self.warn_once(
            key, f"{key}: is not a known Hexagone or Synapse option (typo?); ignored"
        )

    def check_subkeys(
        self,
        value: dict,
        path: str,
        implemented: Iterable[str],
        synapse_only: Iterable[str] = (),
    ) -> None:
        implemented = set(implemented)
        synapse_only = set(synapse_only)
        for k in value:
            if k in implemented:
                continue
            sub = f"{path}.{k}"
            if k in synapse_only:
                if not _is_empty(value[k]):
                    self.warn_not_implemented(sub)
            else:
                self.warn_unknown(sub)

    # -- typed getters ---------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        return value

    def bool_(self, key: str, default: bool, src: dict | None = None, path: str | None = None) -> bool:
        src = self.raw if src is None else src
        path = path or key
        value = src.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: must be true or false, got {value!r}")
        return value

    def str_(self, key: str, default: str | None = None, src: dict | None = None, path: str | None = None) -> str | None:
        src = self.raw if src is None else src
        path = path or key
        value = src.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ConfigError(f"{path}: must be a string, got {value!r}")
        return value

    def int_(self, key: str, default: int, lo: int | None = None, hi: int | None = None,
             src: dict | None = None, path: str | None = None) -> int:
        src = self.raw if src is None else src
        path = path or key
        value = src.get(key)
        if value is None:
            return default
        return check_int(value, path, lo, hi)

    def str_list(self, key: str, default: list[str] | None, src: dict | None = None,
                 path: str | None = None) -> list[str] | None:
        src = self.raw if src is None else src
        path = path or key
        value = src.get(key)
        if value is None:
            return default
        if not isinstance(value, list):
            raise ConfigError(f"{path}: must be a list of strings, got {value!r}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{path}[{i}]: must be a string, got {item!r}")
        return list(value)

    def dict_(self, key: str, src: dict | None = None, path: str | None = None) -> dict:
        src = self.raw if src is None else src
        path = path or key
        value = src.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: must be a mapping, got {value!r}")
        return value

    def path_(self, key: str, default: str | None = None, src: dict | None = None,
              path: str | None = None) -> str | None:
        value = self.str_(key, None, src, path)
        if value is None:
            return default
        if not value.strip():
            raise ConfigError(f"{path or key}: must be a non-empty path")
        return self.resolve(value)

    def resolve(self, p: str) -> str:
        p = os.path.expanduser(p)
        if os.path.isabs(p):
            return os.path.normpath(p)
        return os.path.normpath(os.path.join(self.config_dir, p))

    def secret(self, key: str) -> str | None:
        """``key`` or ``key_path`` (a file holding the secret); an error never quotes the value."""
        if not isinstance(self.raw.get(key), (str, type(None))):
            raise ConfigError(f"{key}: must be a string")
        inline = self.str_(key)
        file_key = f"{key}_path"
        file_path = self.path_(file_key)
        if inline is not None and file_path is not None:
            raise ConfigError(f"{key}: set either {key} or {file_key}, not both")
        if file_path is not None:
            return _read_secret_file(file_path, file_key)
        if inline is not None and not inline:
            raise ConfigError(f"{key}: must not be empty (remove the key instead)")
        return inline

    def ratelimit(self, value: Any, path: str, default: RateLimit) -> RateLimit:
        if value is None:
            return default
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: must be a mapping with per_second and burst_count")
        self.check_subkeys(value, path, ("per_second", "burst_count"))
        per_second = value.get("per_second")
        burst = value.get("burst_count")
        if per_second is None:
            per_second = default.per_second
        elif isinstance(per_second, bool) or not isinstance(per_second, (int, float)) or per_second < 0:
            raise ConfigError(f"{path}.per_second: must be a non-negative number, got {per_second!r}")
        if burst is None:
            burst = default.burst_count
        elif isinstance(burst, bool) or not isinstance(burst, (int, float)) or burst < 0:
            raise ConfigError(f"{path}.burst_count: must be a non-negative number, got {burst!r}")
        return RateLimit(per_second=float(per_second), burst_count=int(burst))

    # -- sections --------------------------------------------------------

    def parse(self) -> Config:
        raw = self.raw
        server_name = validate_server_name(raw.get("server_name"))

        kwargs: dict[str, Any] = {}

        # public_baseurl
        public_baseurl = self.str_("public_baseurl")
        if public_baseurl is None:
            public_baseurl = f"https://{server_name}/"
        else:
            parts = urllib.parse.urlsplit(public_baseurl)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(
                    f"public_baseurl: must be an http:// or https:// URL, got {public_baseurl!r}"
                )
            if not public_baseurl.endswith("/"):
                public_baseurl += "/"

        listeners = self.parse_listeners()
        database = self.parse_database()
        signing_key_path = self.path_(
            "signing_key_path",
            os.path.join(self.config_dir, f"{server_name}.signing.key"),
        )

        # registration
        kwargs["enable_registration"] = self.bool_("enable_registration", False)
        kwargs["enable_registration_without_verification"] = self.bool_(
            "enable_registration_without_verification", False
        )
        kwargs["registration_requires_token"] = self.bool_("registration_requires_token", False)
        kwargs["registration_shared_secret"] = self.secret("registration_shared_secret")
        kwargs["bcrypt_rounds"] = self.int_("bcrypt_rounds", 12, 4, 31)
        kwargs["filter_timeline_limit"] = self.int_("filter_timeline_limit", 100, -1)
        if (
            kwargs["enable_registration"]
            and not kwargs["enable_registration_without_verification"]
            and not kwargs["registration_requires_token"]
        ):
            raise ConfigError(
                "enable_registration: open registration without any verification "
                "is refused; also set registration_requires_token: true, or "
                "enable_registration_without_verification: true if you really "
                "want anyone to register"
            )

        # TURN
        kwargs["turn_uris"] = self.str_list("turn_uris", [])
        kwargs["turn_shared_secret"] = self.secret("turn_shared_secret")
        kwargs["turn_username"] = self.str_("turn_username")
        kwargs["turn_password"] = self.str_("turn_password")
        kwargs["turn_allow_guests"] = self.bool_("turn_allow_guests", True)
        lifetime = raw.get("turn_user_lifetime")
        kwargs["turn_user_lifetime_ms"] = (
            DEFAULT_TURN_USER_LIFETIME_MS
            if lifetime is None
            else parse_duration_ms(lifetime, "turn_user_lifetime")
        )

        kwargs.update(self.parse_ratelimits())

        # appservices, media
        kwargs["app_service_config_files"] = [
            self.resolve(p) for p in self.str_list("app_service_config_files", [])
        ]
        size = raw.get("max_upload_size")
        kwargs["max_upload_size"] = (
            DEFAULT_MAX_UPLOAD_SIZE if size is None else parse_size(size, "max_upload_size")
        )
        if kwargs["max_upload_size"] <= 0:
            raise ConfigError("max_upload_size: must be greater than zero")
        kwargs["media_store_path"] = self.path_(
            "media_store_path", os.path.join(self.config_dir, "media_store")
        )

        # rooms & users
        kwargs["default_room_version"] = self.parse_room_version()
        for key in (
            "allow_public_rooms_without_auth",
            "allow_public_rooms_over_federation",
            "require_auth_for_profile_requests",
            "limit_profile_requests_to_users_who_share_rooms",
            "serve_server_wellknown",
            "suppress_key_server_warning",
        ):
            kwargs[key] = self.bool_(key, False)
        kwargs["federation_verify_certificates"] = self.bool_("federation_verify_certificates", True)
        kwargs["federation_client_minimum_tls_version"] = self.parse_minimum_tls_version()
        kwargs["presence_enabled"] = self.parse_presence()
        ud = self.dict_("user_directory")
        self.check_subkeys(
            ud, "user_directory", ("enabled", "search_all_users"),
            ("prefer_local_users", "exclude_remote_users", "show_locked_users"),
        )
        kwargs["user_directory_enabled"] = self.bool_("enabled", True, ud, "user_directory.enabled")
        kwargs["user_directory_search_all_users"] = self.bool_(
            "search_all_users", False, ud, "user_directory.search_all_users"
        )

        # process
        kwargs["log_config"] = self.path_("log_config")
        kwargs["pid_file"] = self.path_("pid_file")

        # secrets
        kwargs["form_secret"] = self.secret("form_secret")
        kwargs["macaroon_secret_key"] = self.secret("macaroon_secret_key")

        # federation
        whitelist = self.str_list("federation_domain_whitelist", None)
        if whitelist is not None:
            for i, name in enumerate(whitelist):
                validate_server_name(name, f"federation_domain_whitelist[{i}]")
        kwargs["federation_domain_whitelist"] = whitelist
        kwargs["trusted_key_servers"] = self.parse_trusted_key_servers()
        kwargs["federation_custom_ca_list"] = [
            self.resolve(p) for p in self.str_list("federation_custom_ca_list", [])
        ]
        kwargs["ip_range_blacklist"] = self.ip_ranges(
            "ip_range_blacklist", list(DEFAULT_IP_RANGE_BLACKLIST)
        )
        kwargs["ip_range_whitelist"] = self.ip_ranges("ip_range_whitelist", [])
        kwargs["federation_ip_range_blacklist"] = self.ip_ranges("federation_ip_range_blacklist", None)
        kwargs["tls_certificate_path"] = self.path_("tls_certificate_path")
        kwargs["tls_private_key_path"] = self.path_("tls_private_key_path")
        for i, lc in enumerate(listeners):
            if lc.tls and not (kwargs["tls_certificate_path"] and kwargs["tls_private_key_path"]):
                raise ConfigError(
                    f"listeners[{i}].tls: needs tls_certificate_path and "
                    "tls_private_key_path to be set"
                )

        self.warn_ignored_top_level()

        return Config(
            config_path=self.config_path,
            config_dir=self.config_dir,
            server_name=server_name,
            public_baseurl=public_baseurl,
            listeners=listeners,
            database=database,
            signing_key_path=signing_key_path,
            raw=raw,
            **kwargs,
        )

    def parse_listeners(self) -> list[ListenerConfig]:
        value = self.raw.get("listeners")
        if value is None:
            return [
                ListenerConfig(
                    port=8008,
                    bind_addresses=["127.0.0.1"],
                    type="http",
                    tls=False,
                    resources=_expand_resources(["client", "federation"]),
                    x_forwarded=False,
                )
            ]
        if not isinstance(value, list):
            raise ConfigError("listeners: must be a list of listener mappings")
        result = []
        for i, item in enumerate(value):
            path = f"listeners[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(f"{path}: must be a mapping")
            ltype = self.str_("type", "http", item, f"{path}.type")
            if ltype != "http":
                if ltype in ("metrics", "manhole", "replication"):
                    self.warn_once(
                        f"{path}.type",
                        f"{path}.type: {ltype!r} is a Synapse listener type that "
                        "Hexagone does not implement yet; this listener is ignored",
                    )
                else:
                    self.warn_once(
                        f"{path}.type",
                        f"{path}.type: unknown listener type {ltype!r} (typo? "
                        "expected http); this listener is ignored",
                    )
                continue
            if item.get("path") is not None:
                self.warn_once(
                    f"{path}.path",
                    f"{path}.path: UNIX socket listeners are a Synapse feature that Hexagone does "
                    "not implement yet; this listener is ignored",
                )
                continue
            self.check_subkeys(
                item, path,
                ("port", "bind_addresses", "type", "tls", "x_forwarded", "resources", "trusted_proxies"),
                ("tag", "request_id_header", "additional_resources", "path", "mode"),
            )
            if "port" not in item or item["port"] is None:
                raise ConfigError(f"{path}.port: is required")
            port = check_int(item["port"], f"{path}.port", 1, 65535)
            binds = self.str_list("bind_addresses", None, item, f"{path}.bind_addresses")
            if binds is None:
                binds = ["::", "0.0.0.0"]
            for j, addr in enumerate(binds):
                try:
                    ipaddress.ip_address(addr)
                except ValueError:
                    raise ConfigError(
                        f"{path}.bind_addresses[{j}]: {addr!r} is not an IP address"
                    ) from None
            if not binds:
                raise ConfigError(f"{path}.bind_addresses: must not be empty")
            tls = self.bool_("tls", False, item, f"{path}.tls")
            x_forwarded = self.bool_("x_forwarded", False, item, f"{path}.x_forwarded")
            proxies = self.ip_ranges(f"{path}.trusted_proxies", list(ListenerConfig.trusted_proxies),
                                     item, "trusted_proxies")
            names, compress = self.parse_resources(item.get("resources"), f"{path}.resources")
            result.append(
                ListenerConfig(
                    port=port,
                    bind_addresses=binds,
                    type="http",
                    tls=tls,
                    resources=names,
                    x_forwarded=x_forwarded,
                    compress=compress,
                    trusted_proxies=tuple(proxies),
                )
            )
        if not result:
            raise ConfigError(
                "listeners: no usable listener; at least one entry with type: http "
                "and a port is needed"
            )
        seen: dict[tuple[str, int], int] = {}
        for i, lc in enumerate(result):
            for addr in lc.bind_addresses:
                if (addr, lc.port) in seen:
                    raise ConfigError(
                        f"listeners: port {lc.port} on {addr} is configured twice"
                    )
                seen[(addr, lc.port)] = i
        return result

    def parse_resources(self, value: Any, path: str) -> tuple[list[str], bool]:
        if value is None:
            return [], False
        if not isinstance(value, list):
            raise ConfigError(f"{path}: must be a list of mappings with 'names'")
        names: list[str] = []
        compress = False
        for i, res in enumerate(value):
            rpath = f"{path}[{i}]"
            if not isinstance(res, dict):
                raise ConfigError(f"{rpath}: must be a mapping with 'names'")
            self.check_subkeys(res, rpath, ("names", "compress"))
            compress = self.bool_("compress", False, res, f"{rpath}.compress") or compress
            res_names = self.str_list("names", [], res, f"{rpath}.names")
            for j, name in enumerate(res_names):
                npath = f"{rpath}.names[{j}]"
                if name in _IMPLEMENTED_RESOURCES:
                    names.append(name)
                elif name in _SYNAPSE_RESOURCES:
                    self.warn_once(
                        f"resource:{name}",
                        f"{npath}: resource {name!r} is a Synapse resource that "
                        "Hexagone does not implement yet; ignored",
                    )
                else:
                    self.warn_once(
                        f"resource:{name}",
                        f"{npath}: unknown resource name {name!r} (typo?); ignored",
                    )
        return _expand_resources(names), compress

    def parse_database(self) -> DatabaseConfig:
        if self.raw.get("databases") is not None:
            self.warn_not_implemented("databases")
        db = self.dict_("database")
        self.check_subkeys(db, "database", ("name", "args", "txn_limit", "allow_unsafe_locale"))
        name = self.str_("name", "sqlite3", db, "database.name")
        args = self.dict_("args", db, "database.args")
        if name == "sqlite3":
            dbfile = args.get("database", "homeserver.db")
            if not isinstance(dbfile, str) or not dbfile:
                raise ConfigError("database.args.database: must be a file path")
            sqlite_path = dbfile if dbfile == ":memory:" else self.resolve(dbfile)
            cp_min, cp_max = self.pool_sizes(args, 1, 1)
            return DatabaseConfig("sqlite", sqlite_path, None, cp_min, cp_max)
        if name in ("psycopg2", "psycopg"):
            cp_min, cp_max = self.pool_sizes(args, 5, 10)
            return DatabaseConfig("postgresql", None, self.pg_dsn(args), cp_min, cp_max)
        raise ConfigError(
            f"database.name: unknown database engine {name!r}; use sqlite3 or psycopg2"
        )

    def pool_sizes(self, args: dict, dmin: int, dmax: int) -> tuple[int, int]:
        cp_min = self.int_("cp_min", dmin, 0, None, args, "database.args.cp_min")
        cp_max = self.int_("cp_max", dmax, 1, None, args, "database.args.cp_max")
        if cp_min > cp_max:
            raise ConfigError(
                f"database.args.cp_min: must not exceed cp_max ({cp_min} > {cp_max})"
            )
        return cp_min, cp_max

    def pg_dsn(self, args: dict) -> str:
        params: dict[str, str] = {}
        dbname = args.get("dbname")
        database = args.get("database")
        if dbname is not None and database is not None and dbname != database:
            raise ConfigError(
                "database.args.dbname: conflicts with database.args.database; set only one"
            )
        for key, value in args.items():
            if key.startswith("cp_") or value is None:
                continue
            kpath = f"database.args.{key}"
            if key == "password_file":
                continue
            if key == "database":
                key = "dbname"
            if key == "port":
                value = check_int(value, kpath, 1, 65535)
            if isinstance(value, bool):
                value = "1" if value else "0"
            if not isinstance(value, (str, int, float)):
                shown = "" if key == "password" else f", got {value!r}"
                raise ConfigError(f"{kpath}: must be a string or number{shown}")
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ConfigError(f"{kpath}: not a valid connection parameter name")
            params[key] = str(value)
        password_file = args.get("password_file")
        if password_file is not None:
            if "password" in params:
                raise ConfigError(
                    "database.args.password_file: set either password or password_file, not both"
                )
            if not isinstance(password_file, str):
                raise ConfigError("database.args.password_file: must be a file path")
            params["password"] = _read_secret_file(
                self.resolve(password_file), "database.args.password_file"
            )
        elif "password" not in params and os.environ.get("PGPASSWORD"):
            params["password"] = os.environ["PGPASSWORD"]
        return " ".join(f"{k}={_conninfo_quote(v)}" for k, v in sorted(params.items()))

    def parse_ratelimits(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        raw = self.raw

        def d(path: str) -> RateLimit:
            ps, bc = RC_DEFAULTS[path]
            return RateLimit(ps, int(bc))

        for key in (
            "rc_message", "rc_registration", "rc_registration_token_validity",
            "rc_joins_per_room", "rc_third_party_invite", "rc_3pid_validation",
            "rc_media_create", "rc_delayed_event_mgmt", "rc_reports",
            "rc_room_creation", "rc_user_directory",
        ):
            out[key] = self.ratelimit(raw.get(key), key, d(key))
        for key in RC_NOT_ENFORCED:
            if key in raw:
                self.warn_not_implemented(key, "a Synapse rate limit of a feature")
        out["rc_admin_redaction"] = self.ratelimit(
            raw.get("rc_admin_redaction"), "rc_admin_redaction", out["rc_message"]
        )
        for group, subs in (
            ("rc_login", ("address", "account", "failed_attempts")),
            ("rc_joins", ("local", "remote")),
            ("rc_invites", ("per_room", "per_user", "per_issuer")),
            ("rc_presence", ("per_user",)),
        ):
            section = self.dict_(group)
            self.check_subkeys(section, group, subs)
            for sub in subs:
                path = f"{group}.{sub}"
                out[f"{group}_{sub}"] = self.ratelimit(section.get(sub), path, d(path))
        fed = self.dict_("rc_federation")
        fields = ("window_size", "sleep_limit", "sleep_delay", "reject_limit", "concurrent")
        self.check_subkeys(fed, "rc_federation", fields)
        defaults = FederationRateLimit()
        out["rc_federation"] = FederationRateLimit(
            **{
                f: self.int_(f, getattr(defaults, f), 0, None, fed, f"rc_federation.{f}")
                for f in fields
            }
        )
        return out

    def parse_room_version(self) -> str:
        value = self.raw.get("default_room_version")
        if value is None:
            return DEFAULT_ROOM_VERSION
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"default_room_version: must be a string such as \"12\", got {value!r}")
        version = str(value)
        if version not in KNOWN_ROOM_VERSIONS:
            raise ConfigError(
                f"default_room_version: unknown room version {version!r} "
                f"(known: {', '.join(KNOWN_ROOM_VERSIONS)})"
            )
        if version not in CREATABLE_ROOM_VERSIONS:
            raise ConfigError(
                f"default_room_version: room version {version!r} is known but "
                f"Hexagone creates rooms only in versions "
                f"{', '.join(CREATABLE_ROOM_VERSIONS)}"
            )
        return version

    def parse_presence(self) -> bool:
        presence = self.dict_("presence")
        self.check_subkeys(
            presence, "presence", ("enabled",),
            ("include_offline_users_on_sync", "last_active_granularity",
             "sync_online_timeout", "idle_timeout"),
        )
        if "enabled" not in presence and self.raw.get("use_presence") is not None:
            # Synapse's older spelling.
            return self.bool_("use_presence", True)
        value = presence.get("enabled")
        if value is None:
            return True
        if value == "untracked":
            self.warn_once(
                "presence.enabled",
                "presence.enabled: 'untracked' presence is a Synapse mode that Hexagone does not "
                "implement yet; presence is treated as enabled",
            )
            return True
        if not isinstance(value, bool):
            raise ConfigError(
                f"presence.enabled: must be true, false or \"untracked\", got {value!r}"
            )
        return value

    def parse_minimum_tls_version(self) -> str:
        """Synapse's values ("1", "1.1", "1.2", "1.3", also as YAML numbers); below 1.2 means 1.2 here."""
        key = "federation_client_minimum_tls_version"
        value = self.raw.get(key)
        if value is None:
            return "1.2"
        text = str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
        if text not in ("1", "1.0", "1.1", "1.2", "1.3"):
            raise ConfigError(f"{key}: must be one of 1, 1.1, 1.2 or 1.3, got {value!r}")
        if text in ("1", "1.0", "1.1"):
            self.warn_once(key, f"{key}: Hexagone never federates over TLS older than 1.2; using 1.2 "
                                f"instead of {text}")
            return "1.2"
        return text

    def parse_trusted_key_servers(self) -> list[dict]:
        value = self.raw.get("trusted_key_servers", _MISSING)
        if value is _MISSING or value is None:
            return [{"server_name": "matrix.org"}]
        if not isinstance(value, list):
            raise ConfigError("trusted_key_servers: must be a list of {server_name: ...} mappings")
        out = []
        for i, item in enumerate(value):
            path = f"trusted_key_servers[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(f"{path}: must be a mapping with server_name")
            self.check_subkeys(item, path, ("server_name", "verify_keys", "accept_keys_insecurely"))
            validate_server_name(item.get("server_name"), f"{path}.server_name")
            entry: dict[str, Any] = {"server_name": item["server_name"]}
            vk = item.get("verify_keys")
            if vk is not None:
                if not isinstance(vk, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in vk.items()
                ):
                    raise ConfigError(
                        f"{path}.verify_keys: must map key ids (ed25519:...) to "
                        "unpadded base64 public keys"
                    )
                for k in vk:
                    if not k.startswith("ed25519:"):
                        raise ConfigError(
                            f"{path}.verify_keys: unsupported key id {k!r} (expected ed25519:...)"
                        )
                entry["verify_keys"] = dict(vk)
            insecure = self.bool_("accept_keys_insecurely", False, item, f"{path}.accept_keys_insecurely")
            if insecure:
                entry["accept_keys_insecurely"] = True
            out.append(entry)
        return out

    def ip_ranges(self, key: str, default: list[str] | None, section: dict | None = None,
                  name: str | None = None) -> list[str] | None:
        """A list of CIDR ranges at ``key`` (or at ``name`` of ``section``, reported as ``key``)."""
        ranges = self.str_list(key, default) if section is None else self.str_list(name, default, section, key)
        for i, r in enumerate(ranges or ()):
            try:
                ipaddress.ip_network(r, strict=False)
            except ValueError:
                raise ConfigError(f"{key}[{i}]: {r!r} is not an IP address or CIDR range") from None
        return ranges

    def warn_ignored_top_level(self) -> None:
        for key, value in self.raw.items():
            if key in _IMPLEMENTED_TOP_LEVEL_KEYS or key in _SILENTLY_IGNORED_KEYS:
                continue
            if not isinstance(key, str):
                self.warn_unknown(str(key))
            elif key in SYNAPSE_TOP_LEVEL_KEYS:
                if not _is_empty(value):
                    self.warn_not_implemented(key)
            else:
                self.warn_unknown(key)


_IMPLEMENTED_TOP_LEVEL_KEYS = frozenset(
    """
    server_name public_baseurl listeners database databases signing_key_path
    enable_registration enable_registration_without_verification
    registration_shared_secret registration_shared_secret_path
    registration_requires_token bcrypt_rounds
    turn_uris turn_shared_secret turn_shared_secret_path turn_username
    turn_password turn_user_lifetime turn_allow_guests
    rc_message rc_registration rc_registration_token_validity rc_login
    rc_admin_redaction rc_joins rc_joins_per_room rc_3pid_validation rc_invites
    rc_third_party_invite rc_media_create rc_federation rc_presence
    rc_delayed_event_mgmt rc_reports rc_room_creation rc_user_directory
    app_service_config_files max_upload_size media_store_path
    default_room_version allow_public_rooms_without_auth allow_public_rooms_over_federation
    require_auth_for_profile_requests
    limit_profile_requests_to_users_who_share_rooms presence use_presence
    user_directory serve_server_wellknown log_config pid_file
    form_secret form_secret_path macaroon_secret_key macaroon_secret_key_path
    federation_domain_whitelist trusted_key_servers suppress_key_server_warning old_signing_keys
    federation_verify_certificates federation_custom_ca_list federation_client_minimum_tls_version
    ip_range_blacklist ip_range_whitelist federation_ip_range_blacklist tls_certificate_path
    tls_private_key_path
    filter_timeline_limit
    """.split()
)


def _is_empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def check_int(value: Any, path: str, lo: int | None, hi: int | None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and isinstance(value, str) and value.strip().isdigit():
        value, ok = int(value), True
    if ok and (lo is None or value >= lo) and (hi is None or value <= hi):
        return value
    if lo is not None and hi is not None:
        raise ConfigError(f"{path}: must be an integer between {lo} and {hi}")
    if lo is not None:
        raise ConfigError(f"{path}: must be an integer >= {lo}")
    raise ConfigError(f"{path}: must be an integer")


def _expand_resources(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for n in (name, *_IMPLIED_RESOURCES.get(name, ())):
            if n not in out:
                out.append(n)
    return out


def _conninfo_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _read_secret_file(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror or e}") from None
    if not value:
        raise ConfigError(f"{key}: {path} is empty")
    return value


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


def parse_config(raw: dict, config_path: str) -> Config:
    """Validate an already-parsed YAML mapping; ``config_path`` anchors
    relative paths (its directory) and is recorded in the result."""
    if not isinstance(raw, dict):
        raise ConfigError("config file: the top level must be a mapping of keys to values")
    return _Parser(raw, config_path).parse()


def load_config(path: str) -> Config:
    """Read, parse and validate the YAML config file at ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"config file: cannot read {path}: {e.strerror or e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file: {path} is not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    return parse_config(raw, path)


def read_signing_key(path: str):
    """Return the first signing key of a Synapse-format key file."""
    from signedjson.key import read_signing_keys

    try:
        with open(path, encoding="utf-8") as f:
            keys = read_signing_keys(f)
    except OSError as e:
        raise ConfigError(f"signing_key_path: cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # malformed line, bad base64, unknown algorithm
        raise ConfigError(
            f"signing_key_path: {path} is not a valid signing key file "
            f"(expected 'ed25519 <version> <base64 seed>'): {e}"
        ) from None
    if not keys:
        raise ConfigError(f"signing_key_path: {path} contains no key")
    return keys[0]

"""The configuration keys Hexagone implements, each declared once.

Everything else derives from :data:`KEYS`: the attributes and defaults of the parsed
:class:`~homeserver.config.Config`, the set of implemented keys (any other Synapse key is
warned about at start), the parser used for each value and the sample ``homeserver.yaml``
(``homeserver/config_sample.py``).

Adding a key: append one :class:`Key` to :data:`KEYS` in the section it belongs to, then
regenerate ``conf/homeserver.sample.yaml`` (``tests/core/test_config.py`` says how).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from homeserver.config.values import (DEFAULT_IP_RANGE_BLACKLIST, FederationRateLimit, ListenerConfig, MediaRetention,
                                      RateLimit, ThumbnailSize)
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION

SYNAPSE = "synapse"  # a key of Synapse's homeserver.yaml, same name and shape
HEXAGONE = "hexagone"  # Hexagone's own key


@dataclass(frozen=True)
class SampleContext:
    """What ``hexagone init`` knows when it writes a sample: the values a key's sample may use."""

    server_name: str
    config_dir: str
    port: int
    db_name: str
    db_args: dict
    secret: Callable[[], str]
    federate_with: tuple[str, ...] = ()  # `hexagone init --federate-with`


@dataclass(frozen=True)
class Field:
    """One sub-key of a key's items: of each list item (``listeners[].port``), of the mapping itself
    (``database.args``) or of each value of a mapping by id (``old_signing_keys.<key id>.key``).

    Read by the same ``Reader.kind_<kind>`` parsers as keys, its path in errors naming the item
    (``listeners[0].port: ...``). ``items`` declares its own sub-keys; ``synapse_items`` names the
    sub-keys Synapse has and Hexagone does not implement (warned about); ``open``: other sub-keys are
    passed on (``database.args`` to libpq), not warned about.
    """

    name: str
    kind: str
    default: Any
    doc: str
    origin: str = SYNAPSE
    bounds: tuple[int | None, int | None] = (None, None)
    required: bool = False
    items: tuple["Field", ...] = ()
    synapse_items: tuple[str, ...] = ()
    open: bool = False


@dataclass(frozen=True)
class Key:
    """One configuration key.

    ``name`` is the YAML path (``rc_login.address`` is ``address`` inside the ``rc_login``
    mapping); ``kind`` names the parser (``Reader.kind_<kind>``); ``attr`` is the attribute of
    the parsed config (``name`` with dots as underscores unless given); ``sample`` gives the
    value shown in the sample file (default: ``default``), ``commented`` shows it commented out;
    ``items``, ``synapse_items`` and ``open`` declare its sub-keys as for a :class:`Field`.
    """

    name: str
    kind: str
    default: Any
    section: str
    doc: str
    origin: str = SYNAPSE
    attr: str = ""
    bounds: tuple[int | None, int | None] = (None, None)
    secret: bool = False
    sample: Callable[[SampleContext], Any] | None = None
    commented: bool = False
    items: tuple[Field, ...] = ()
    synapse_items: tuple[str, ...] = ()
    open: bool = False

    @property
    def attribute(self) -> str:
        return self.attr or self.name.replace(".", "_")

    @property
    def top(self) -> str:
        return self.name.split(".", 1)[0]


def _ratelimits(group: str, section: str, subs: list[tuple[str, float, int, str]]) -> list[Key]:
    return [Key(f"{group}.{sub}" if sub else group, "ratelimit", RateLimit(ps, bc), section, doc)
            for sub, ps, bc, doc in subs]


def _in_dir(name: str) -> Callable[[SampleContext], str]:
    return lambda ctx: os.path.join(ctx.config_dir, name)


_SERVER, _NET, _DIR, _DB, _REG, _TURN, _RTC, _RC, _KEYS, _FED, _AS, _MEDIA, _RET, _MAIL, _WORKERS = (
    "Server", "Network", "Presence and directory", "Database", "Registration", "VoIP (TURN)",
    "Calls (MatrixRTC)", "Rate limiting", "Secrets and keys", "Federation", "Application services",
    "Media store", "Message retention", "E-mail", "Workers (several processes, docs/workers.md)",
)
_IDENTITY = "Identity servers (third-party invites, 3PID binds)"
_NOTICES = "Server notices"
_SSO = "Single sign-on (CAS)"
_POLICY = "Policy server (spec v1.18 Policy Servers)"

# -- the sub-keys of list items and mappings ------------------------------------------

_RESOURCE = (
    Field("names", "resource_names", (), "Resource names (see above); unknown ones are ignored with a warning."),
    Field("compress", "bool", False, "Gzip the responses of these resources."),
)

_LISTENER = (
    Field("port", "int", None, "The TCP port (1-65535).", bounds=(1, 65535), required=True),
    Field("bind_addresses", "ip_addresses", ("::", "0.0.0.0"), "The IP addresses to listen on."),
    Field("type", "str", "http", "http, or metrics (the metrics resource alone); a listener of another\n"
          "type is ignored with a warning."),
    Field("tls", "bool", False, "Serve TLS with tls_certificate_path and tls_private_key_path."),
    Field("x_forwarded", "bool", False, "Take the client address from X-Forwarded-For."),
    Field("trusted_proxies", "ip_ranges", ListenerConfig.trusted_proxies,
          "The peers whose X-Forwarded-For is believed.", origin=HEXAGONE),
    Field("resources", "resources", (), "What the listener serves: a list of mappings.", items=_RESOURCE),
)

_DATABASE_ARGS = (
    Field("database", "verbatim", None, "SQLite: the database file (homeserver.db by default);\n"
          "PostgreSQL: the database name (as dbname)."),
    Field("cp_min", "int", None, "Fewest connections in the pool (1 for SQLite, 5 for PostgreSQL\n"
          "by default).", bounds=(0, None)),
    Field("cp_max", "int", None, "Most connections in the pool (1 for SQLite, 10 for PostgreSQL\n"
          "by default).", bounds=(1, None)),
    Field("port", "int", None, "PostgreSQL: the server's port.", bounds=(1, 65535)),
    Field("password_file", "path", None, "PostgreSQL: a file holding the password, instead of password.",
          origin=HEXAGONE),
)

_DATABASE = (
    Field("name", "str", "sqlite3", "sqlite3, or psycopg2 for PostgreSQL (psycopg is accepted too)."),
    Field("args", "connection_args", None, "Connection parameters; for PostgreSQL any other libpq\n"
          "parameter (user, password, host, sslmode, ...) is passed on.", items=_DATABASE_ARGS, open=True),
    Field("txn_limit", "verbatim", None, "Accepted for Synapse's sake; no effect."),
    Field("allow_unsafe_locale", "verbatim", None, "Accepted for Synapse's sake; Hexagone does not\n"
          "check the database's locale."),
)

_KEY_SERVER = (
    Field("server_name", "server_name", None, "The key server's name.", required=True),
    Field("verify_keys", "verify_keys", None, "Its public keys by key id (ed25519:...), unpadded base64:\n"
          "when set, its answers must be signed by one of them."),
    Field("accept_keys_insecurely", "bool", False, "Accepted for Synapse's sake: Hexagone never\n"
          "requires verify_keys."),
)

_OLD_SIGNING_KEY = (
    Field("key", "ed25519_public_key", None, "The public key, unpadded base64.", required=True),
    Field("expired_ts", "int", None, "When it stopped being used, in milliseconds since the epoch.",
          required=True),
)

# Synapse's defaults: two cropped avatar sizes and three scaled previews.
DEFAULT_THUMBNAIL_SIZES = (ThumbnailSize(32, 32, "crop"), ThumbnailSize(96, 96, "crop"),
                           ThumbnailSize(320, 240, "scale"), ThumbnailSize(640, 480, "scale"),
                           ThumbnailSize(800, 600, "scale"))

KEYS: tuple[Key, ...] = (
    Key("server_name", "server_name", None, _SERVER,
        "The public domain of this server: user IDs look like @alice:<server_name>.\n"
        "It cannot be changed once users and rooms exist. No scheme, no path; an\n"
        "explicit :port is allowed.", sample=lambda ctx: ctx.server_name),
    Key("public_baseurl", "public_baseurl", None, _SERVER,
        "The URL clients use to reach this server (as entered in a client's\n"
        "\"homeserver URL\" field), usually behind a reverse proxy.\n"
        "Defaults to https://<server_name>/.", sample=lambda ctx: f"https://{ctx.server_name}/"),
    Key("serve_server_wellknown", "bool", False, _SERVER,
        "Serve /.well-known/matrix/server so other servers reach us on port 443\n"
        "(through public_baseurl's host) instead of 8448."),
    Key("admin_contact", "str", None, _SERVER,
        "How to reach this server's admin, published in /.well-known/matrix/support:\n"
        "mailto:<address>, a Matrix user ID, or an https:// support page. Unset, that\n"
        "document answers 404.", sample=lambda ctx: f"mailto:admin@{ctx.server_name}", commented=True),
    Key("log_config", "path", None, _SERVER,
        "A Python logging configuration file (YAML dictConfig). Without it, logs go\n"
        "to stderr at the level given by `hexagone run --log-level`.",
        sample=_in_dir("log.config"), commented=True),
    Key("filter_timeline_limit", "int", 100, _SERVER,
        "The largest room.timeline.limit a /sync filter may ask for; a larger one is\n"
        "lowered to it (-1: no limit).", origin=HEXAGONE, bounds=(-1, None)),
    Key("event_cache_size", "size", 50_000, _SERVER,
        "How many events are kept in memory (a member event takes about 2.5 KB).\n"
        "A number, or with a unit as in Synapse: 10K is 10,240 events (Synapse's\n"
        "default)."),
    Key("default_room_version", "room_version", DEFAULT_ROOM_VERSION, _SERVER,
        "The room version used for new rooms."),

    Key("ip_range_blacklist", "ip_ranges", DEFAULT_IP_RANGE_BLACKLIST, _NET,
        "IP ranges this server never sends outbound requests to (federation, push,\n"
        "key checks). Defaults to private and special-use ranges."),
    Key("ip_range_whitelist", "ip_ranges", (), _NET,
        "Exceptions to ip_range_blacklist (e.g. a push gateway on the LAN)."),
    Key("listeners", "listeners", None, _NET,
        "Network listeners. Only type: http is implemented. Resource names:\n"
        "  client     client-server API (also serves media and static)\n"
        "  federation server-server API (also serves media, keys and openid)\n"
        "  keys, media, openid, static, health  individual APIs\n"
        "  metrics    Prometheus metrics, when enable_metrics is true\n"
        "  (/health is served on every listener; other paths outside a listener's\n"
        "  resources are answered 404 M_UNRECOGNIZED.)\n"
        "Put TLS and public ports on a reverse proxy and set x_forwarded: true so the\n"
        "client address is taken from X-Forwarded-For (read right to left, skipping\n"
        "trusted_proxies), only for connections from trusted_proxies (Hexagone's key,\n"
        "loopback by default; Synapse believes the header from any peer).",
        items=_LISTENER, synapse_items=("tag", "request_id_header", "additional_resources", "path", "mode"),
        sample=lambda ctx: [{
            "port": ctx.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
            "x_forwarded": False, "trusted_proxies": ["127.0.0.0/8", "::1/128"],
            "resources": [{"names": ["client", "federation"], "compress": False}],
        }]),
    Key("enable_metrics", "bool", False, _NET,
        "Serve Prometheus metrics (GET /_synapse/metrics) on the listeners naming the\n"
        "metrics resource, or on a listener of type: metrics. Unauthenticated: bind\n"
        "that listener to an address only the monitoring can reach."),
    Key("tls_certificate_path", "path", None, _NET,
        "Certificate (full chain) in PEM format, needed only by listeners with tls: true.",
        sample=_in_dir("tls.crt"), commented=True),
    Key("tls_private_key_path", "path", None, _NET,
        "Private key of tls_certificate_path, in PEM format.",
        sample=_in_dir("tls.key"), commented=True),

    Key("presence.enabled", "presence", True, _DIR,
        "Presence (online/offline status) tracking; false turns it off entirely."),
    Key("user_directory.enabled", "bool", True, _DIR,
        "User directory search; false returns empty results to every search."),
    Key("user_directory.search_all_users", "bool", False, _DIR,
        "true: search every user this server knows; false: only users in public\n"
        "rooms or sharing a room with the searcher."),
    Key("server_notices.system_mxid_localpart", "str", None, _NOTICES,
        "Server notices (spec \"Server Notices\"): when set, admins send notices to\n"
        "users (POST /_synapse/admin/v1/send_server_notice) from this system user,\n"
        "each user's notices in one room tagged m.server_notice where they cannot\n"
        "post. The other server_notices keys name and dress that user and room.",
        sample=lambda ctx: "notices", commented=True),
    Key("server_notices.system_mxid_display_name", "str", None, _NOTICES,
        "Display name of the system user.", sample=lambda ctx: "Server Notices", commented=True),
    Key("server_notices.system_mxid_avatar_url", "str", None, _NOTICES,
        "Avatar (mxc:// URL) of the system user.", sample=lambda ctx: "mxc://example.org/notices", commented=True),
    Key("server_notices.room_name", "str", "Server Notices", _NOTICES, "Name of each notices room."),
    Key("server_notices.room_avatar_url", "str", None, _NOTICES,
        "Avatar (mxc:// URL) of each notices room.", sample=lambda ctx: "mxc://example.org/notices", commented=True),
    Key("server_notices.room_topic", "str", None, _NOTICES,
        "Topic of each notices room.", sample=lambda ctx: "Messages from the administrators", commented=True),
    Key("server_notices.auto_join", "bool", False, _NOTICES,
        "true: users are joined to their notices room; false: invited to it."),
    Key("allow_public_rooms_without_auth", "bool", False, _DIR,
        "Let anyone, without an access token, read this server's public room list."),
    Key("require_membership_for_aliases", "bool", True, _DIR,
        "Only members of a room (and server admins) may give it an alias. An application\n"
        "service may give any room an alias of its namespace."),
    Key("allow_public_rooms_over_federation", "bool", False, _DIR,
        "Let other servers read this server's public room list (their users browse it)."),
    Key("require_auth_for_profile_requests", "bool", False, _DIR,
        "Require an access token to read other users' profiles."),
    Key("limit_profile_requests_to_users_who_share_rooms", "bool", False, _DIR,
        "Only show profiles of users who share a room with the requester (or are in\n"
        "the user directory)."),

    Key("database", "database", None, _DB,
        "SQLite (name: sqlite3) is fine for trying things out and small servers.\n"
        "PostgreSQL: without password or password_file, libpq reads PGPASSWORD.",
        items=_DATABASE, sample=lambda ctx: {"name": ctx.db_name, "args": ctx.db_args}),

    Key("enable_registration", "bool", False, _REG,
        "Let anyone create an account through the client API. Refused at start\n"
        "unless registration_requires_token or\n"
        "enable_registration_without_verification is also true."),
    Key("enable_registration_without_verification", "bool", False, _REG,
        "Allow open registration with no verification at all (spam risk)."),
    Key("registration_requires_token", "bool", False, _REG,
        "Require a registration token (created with the admin API) to register."),
    Key("enable_registration_captcha", "bool", False, _REG,
        "Registration asks for a Google reCAPTCHA (the m.login.recaptcha stage), checked\n"
        "with recaptcha_private_key at recaptcha_siteverify_api; needs both recaptcha keys.",
        commented=True, sample=lambda ctx: True),
    Key("recaptcha_public_key", "secret", None, _REG,
        "The reCAPTCHA site key, given to clients (or recaptcha_public_key_path).", commented=True,
        sample=lambda ctx: "YOUR_SITE_KEY"),
    Key("recaptcha_private_key", "secret", None, _REG,
        "The reCAPTCHA secret key (or recaptcha_private_key_path). Once set, an\n"
        "m.login.recaptcha stage is checked even where no flow asks for it (as Synapse).",
        secret=True, commented=True, sample=lambda ctx: "YOUR_SECRET_KEY"),
    Key("recaptcha_siteverify_api", "https_url", "https://www.recaptcha.net/recaptcha/api/siteverify", _REG,
        "Where captcha answers are checked (a POST of secret, response and remoteip); its https\n"
        "is checked as outbound federation's (federation_custom_ca_list, else the system's CAs).",
        commented=True),
    Key("allow_guest_access", "bool", False, _REG,
        "Let anyone get a guest account (POST /register?kind=guest): it reads\n"
        "world-readable rooms and joins rooms whose guest_access is can_join."),
    Key("registration_shared_secret", "secret", None, _REG,
        "Shared secret for the admin registration API and `hexagone register-user`.\n"
        "Anyone who knows it can create admin accounts: keep it private.\n"
        "(Or put it in a file and set registration_shared_secret_path instead.)",
        secret=True, sample=lambda ctx: ctx.secret()),
    Key("refreshable_access_token_lifetime", "duration", 5 * 60 * 1000, _REG,
        "Lifetime of the access tokens of clients that ask for a refresh token\n"
        "(refresh_token: true on /login and /register).",
        attr="refreshable_access_token_lifetime_ms", sample=lambda ctx: "5m"),
    Key("refresh_token_lifetime", "duration", None, _REG,
        "Lifetime of a refresh token (unset: until it is used).", attr="refresh_token_lifetime_ms",
        sample=lambda ctx: "24h", commented=True),
    Key("nonrefreshable_access_token_lifetime", "duration", None, _REG,
        "Lifetime of the access tokens of clients with no refresh token (unset: until logout).",
        attr="nonrefreshable_access_token_lifetime_ms", sample=lambda ctx: "24h", commented=True),
    Key("login_via_existing_session.enabled", "bool", False, _REG,
        "Let a logged-in client get a single-use login token for another device\n"
        "(POST /_matrix/client/v1/login/get_token, then m.login.token)."),
    Key("login_via_existing_session.require_ui_auth", "bool", True, _REG,
        "Ask for the user's password again before issuing such a token."),
    Key("login_via_existing_session.token_timeout", "duration", 5 * 60 * 1000, _REG,
        "How long such a login token stays valid.", attr="login_via_existing_session_token_timeout_ms",
        sample=lambda ctx: "5m"),
    Key("bcrypt_rounds", "int", 12, _REG,
        "bcrypt cost for password hashes (4-31; each +1 doubles the time).", bounds=(4, 31)),

    Key("turn_uris", "str_list", (), _TURN,
        "TURN server URIs given to clients, e.g. \"turn:turn.example.org:3478?transport=udp\"."),
    Key("turn_shared_secret", "secret", None, _TURN,
        "Shared secret of the TURN server (coturn's static-auth-secret), used to mint\n"
        "time-limited credentials. (Or turn_shared_secret_path: a file holding it.)",
        secret=True, sample=lambda ctx: "...", commented=True),
    Key("turn_username", "str", None, _TURN,
        "Static TURN credentials, instead of turn_shared_secret.",
        sample=lambda ctx: "...", commented=True),
    Key("turn_password", "str", None, _TURN, "Password of turn_username.",
        secret=True, sample=lambda ctx: "...", commented=True),
    Key("turn_user_lifetime", "duration", 60 * 60 * 1000, _TURN,
        "How long generated TURN credentials stay valid.", attr="turn_user_lifetime_ms",
        sample=lambda ctx: "1h"),

    Key("extra_well_known_client_content", "mapping", None, _RTC,
        "Extra fields of /.well-known/matrix/client, e.g. the MatrixRTC focus of\n"
        "Element Call: {\"org.matrix.msc4143.rtc_foci\": [{\"type\": \"livekit\",\n"
        "\"livekit_service_url\": \"https://jwt.example.org\"}]}. m.homeserver stays ours.",
        sample=lambda ctx: {"org.matrix.msc4143.rtc_foci": [
            {"type": "livekit", "livekit_service_url": "https://livekit-jwt.example.org"}]}, commented=True),
    Key("matrix_rtc.transports", "rtc_transports", (), _RTC,
        "MatrixRTC transports offered to clients on\n"
        "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports (MSC4143), each a\n"
        "mapping with a type; a livekit one also names its livekit_service_url (the\n"
        "SFU's token service, e.g. lk-jwt-service).",
        sample=lambda ctx: [{"type": "livekit", "livekit_service_url": "https://livekit-jwt.example.org"}],
        commented=True),
    Key("max_event_delay_duration", "duration", None, _RTC,
        "Delayed events (MSC4140, which MatrixRTC calls use to leave a call whose\n"
        "client vanished): the longest delay a client may ask for. Unset: delayed\n"
        "events are refused.", attr="max_event_delay_ms", bounds=(1, None),
        sample=lambda ctx: "24h", commented=True),
    Key("experimental_features.msc4140_max_delayed_events_per_user", "int", 100, _RTC,
        "How many delayed events one user may have pending (0: delayed events are refused).",
        attr="max_delayed_events_per_user", bounds=(0, None)),

    *_ratelimits("rc_message", _RC, [
        ("", 0.2, 10, "Events sent and profile changes, per account (and to-device sends, key uploads).")]),
    *_ratelimits("rc_registration", _RC, [("", 0.17, 3, "Registration attempts, per client IP.")]),
    *_ratelimits("rc_3pid_validation", _RC, [
        ("", 0.003, 5, "Validation mails asked for (the requestToken endpoints), per client IP.")]),
    *_ratelimits("rc_registration_token_validity", _RC, [
        ("", 0.1, 5, "Registration token validity checks, per client IP.")]),
    *_ratelimits("rc_login", _RC, [
        ("address", 0.003, 5, "Login attempts per client IP."),
        ("account", 0.003, 5, "Login attempts per account being logged into."),
        ("failed_attempts", 0.17, 3, "Failed login attempts, per account."),
    ]),
    Key("rc_admin_redaction", "admin_redaction", None, _RC,
        "Redactions of other users' events, by moderators (defaults to the rc_message limits).",
        sample=lambda ctx: RateLimit(0.2, 10)),
    *_ratelimits("rc_joins", _RC, [
        ("local", 0.1, 10, "Room joins per account, to rooms this server is already in."),
        ("remote", 0.01, 10, "Room joins per account, to rooms needing a federated join."),
    ]),
    *_ratelimits("rc_joins_per_room", _RC, [("", 1.0, 10, "Joins to a single room, from any user.")]),
    *_ratelimits("rc_invites", _RC, [
        ("per_room", 0.3, 10, "Invites per room."),
        ("per_user", 0.003, 5, "Invites per invited user (receiver)."),
        ("per_issuer", 0.3, 10, "Invites per inviting user (sender)."),
    ]),
    *_ratelimits("rc_presence", _RC, [("per_user", 0.1, 1, "Presence updates, per user.")]),
    *_ratelimits("rc_room_creation", _RC, [("", 0.016, 10, "Room creation, per account.")]),
    *_ratelimits("rc_third_party_invite", _RC, [("", 0.2, 10, "Invites by third-party identifier (each asks an\n"
                                                          "identity server), per account.")]),
    *_ratelimits("rc_user_directory", _RC, [("", 0.016, 200, "User directory searches, per account.")]),
    *_ratelimits("rc_reports", _RC, [("", 1.0, 5, "Reports of events, rooms and users, per account.")]),
    *_ratelimits("rc_media_create", _RC, [("", 10.0, 50, "Media IDs reserved with /_matrix/media/v1/create, per account.")]),
    Key("remote_media_download_per_second", "size", 87 * 1024, _RC,
        "Remote media fetched for a client: bytes per second drained from the\n"
        "per-client-IP bucket (see remote_media_download_burst_count).", sample=lambda ctx: "87K"),
    Key("remote_media_download_burst_count", "size", 500 * 1024 ** 2, _RC,
        "Remote media fetched for a client: the bytes of each fetch fill a bucket\n"
        "per client IP; while it is full, fetches of media not cached are refused\n"
        "(429) until it drains.", sample=lambda ctx: "500M"),
    *_ratelimits("rc_delayed_event_mgmt", _RC, [
        ("", 1.0, 5, "Listing, restarting, cancelling and sending delayed events, per account\n"
                     "(per client IP without an access token).")]),
    Key("rc_federation", "rc_federation", FederationRateLimit(), _RC,
        "Inbound federation requests, per remote server: after sleep_limit requests\n"
        "in window_size ms, each is delayed by sleep_delay ms; at most concurrent are\n"
        "processed at once and beyond reject_limit queued requests are refused.\n"
        "The same limits apply per client IP to the key server (/_matrix/key/v2/query)."),

    Key("signing_key_path", "signing_key_path", None, _KEYS,
        "This server's ed25519 signing key, in Synapse's format. Back it up: losing\n"
        "it makes other servers distrust this one for a while.",
        sample=_in_dir("signing.key")),
    Key("old_signing_keys", "old_signing_keys", None, _KEYS,
        "Public keys this server signed with before, still served to other servers,\n"
        "by key id (ed25519:...).", items=_OLD_SIGNING_KEY,
        sample=lambda ctx: {"ed25519:a_old": {"key": "<unpadded base64 public key>",
                                             "expired_ts": 1700000000000}},
        commented=True),

    Key("trusted_key_servers", "trusted_key_servers", ({"server_name": "matrix.org"},), _FED,
        "Servers asked for other servers' signing keys when those cannot be fetched\n"
        "directly. [] (as `hexagone init` writes): keys are fetched only from their\n"
        "owners. Absent: matrix.org, as in Synapse.", items=_KEY_SERVER, sample=lambda ctx: []),
    Key("suppress_key_server_warning", "bool", False, _FED,
        "Silence the start-up warning about trusting matrix.org as key server."),
    Key("federation_domain_whitelist", "server_names", None, _FED,
        "Federate only with these server names, inbound and outbound (key fetches\n"
        "included). [] (as `hexagone init` writes): with nobody. Absent: with every\n"
        "server. To add an agency, add its server name, e.g.\n"
        "  federation_domain_whitelist:\n"
        "    - agence-b.gouv.example\n"
        "then reload: `kill -HUP <pid>` or POST /_hexagone/admin/v1/reload (no restart).",
        sample=lambda ctx: list(ctx.federate_with)),
    Key("federation_peer_policy", "peer_policy", None, _FED,
        "What each peer server may do here, by server name (\"*\": every other peer):\n"
        "  invite_users: may its users invite ours (default true)\n"
        "  join_rooms: may its users join or knock on our rooms (default true)\n"
        "  rc_federation: its own inbound limits (missing fields: rc_federation's)\n"
        "Reloaded with federation_domain_whitelist.", origin=HEXAGONE,
        sample=lambda ctx: {"agence-b.gouv.example": {
            "invite_users": True, "join_rooms": False, "rc_federation": {"sleep_limit": 50, "concurrent": 5}}},
        commented=True),
    Key("federation.destination_min_retry_interval", "duration", 1000, _FED,
        "After a failed transaction to a server, wait this long before the next try;\n"
        "each further failure multiplies the wait by destination_retry_multiplier, up\n"
        "to destination_max_retry_interval. A request from that server retries at once.\n"
        "(Synapse's defaults are 10m, 2 and 1w: Hexagone retries sooner.)", bounds=(1, None),
        sample=lambda ctx: "1s"),
    Key("federation.destination_retry_multiplier", "multiplier", 2.0, _FED,
        "What each further failure multiplies the wait by (a number at least 1)."),
    Key("federation.destination_max_retry_interval", "duration", 3600 * 1000, _FED,
        "The longest wait between two tries.", bounds=(1, None), sample=lambda ctx: "1h"),
    Key("federation_verify_certificates", "bool", True, _FED,
        "Verify TLS certificates of other servers. Only turn off for testing."),
    Key("federation_custom_ca_list", "path_list", (), _FED,
        "Extra CA certificates (PEM files) trusted for federation; replaces the\n"
        "system list when set."),
    Key("federation_client_minimum_tls_version", "tls_version", "1.2", _FED,
        "Lowest TLS version used to reach other servers: \"1.2\" or \"1.3\". Synapse's\n"
        "\"1\" and \"1.1\" are read as \"1.2\": Hexagone never federates below TLS 1.2."),
    Key("use_insecure_ssl_client_just_for_testing_do_not_use", "bool", False, _FED,
        "Do not verify the TLS certificates of push gateways (non-federation requests,\n"
        "as in Synapse). Only for test suites whose gateways use their own CA.",
        commented=True),
    Key("federation_ip_range_blacklist", "ip_ranges", None, _FED,
        "Synapse's older key: when set, federation uses it (and no whitelist) instead\n"
        "of ip_range_blacklist and ip_range_whitelist.",
        sample=lambda ctx: ["10.0.0.0/8"], commented=True),

    Key("app_service_config_files", "appservices", (), _AS,
        "Registration files of application services (bridges, bots), as Synapse reads\n"
        "them. A broken file, or two sharing an id or a token, refuses start-up.\n"
        "Appservice URLs are trusted as the admin wrote them: ip_range_blacklist does\n"
        "not apply to them (as in Synapse), so a bridge on 127.0.0.1 works.",
        attr="app_services", sample=lambda ctx: [os.path.join(ctx.config_dir, "bridge-registration.yaml")],
        commented=True),
    Key("retention", "retention", None, _RET,
        "Message retention (m.room.retention, as Synapse): when enabled, the events of\n"
        "a room older than its max_lifetime are hidden from clients and purged by the\n"
        "purge_jobs (state events, the room's latest event and its forward extremities\n"
        "are always kept). default_policy applies to rooms without a policy; a room's\n"
        "max_lifetime is brought within [allowed_lifetime_min, allowed_lifetime_max].\n"
        "Each job purges the rooms whose max_lifetime is in (shortest_max_lifetime,\n"
        "longest_max_lifetime] every interval (default: one job, every day).",
        sample=lambda ctx: {"enabled": True, "default_policy": {"min_lifetime": "1d", "max_lifetime": "1y"},
                            "allowed_lifetime_min": "1d", "allowed_lifetime_max": "1y",
                            "purge_jobs": [{"longest_max_lifetime": "3d", "interval": "12h"},
                                           {"shortest_max_lifetime": "3d", "interval": "1d"}]},
        commented=True),
    Key("room_access_rules.internal_servers", "server_names", None, _FED,
        "Room access rules (Tchap's im.vector.room.access_rules: restricted,\n"
        "unrestricted, direct) are enforced when this is set: these server names\n"
        "(and this server) are the internal agencies, the only ones whose users may\n"
        "join or be invited into a restricted room (or one without the event).",
        origin=HEXAGONE, sample=lambda ctx: ["agence-b.gouv.example"], commented=True),
    Key("policy_server.enabled", "bool", False, _POLICY,
        "Act as a Policy Server: sign (POST /_matrix/policy/v1/sign) the events of the\n"
        "rooms whose m.room.policy names this server (via) with the key served at\n"
        "/.well-known/matrix/policy_server, and refuse those the rules below refuse.\n"
        "A room uses it only while one of our users is joined to it. Whatever this\n"
        "says, this server asks the policy server a room names before sending an event\n"
        "there, and soft-fails received events that lack its signature.",
        origin=HEXAGONE, commented=True, sample=lambda ctx: True),
    Key("policy_server.signing_key_path", "path", None, _POLICY,
        "The policy server's own Ed25519 key (never the server's signing key), in the\n"
        "signing key file format; created at start when missing (default:\n"
        "policy_server.signing.key beside signing_key_path).",
        origin=HEXAGONE, commented=True, sample=_in_dir("policy_server.signing.key")),
    Key("policy_server.rooms", "str_list", (), _POLICY,
        "Protect only these room IDs (other rooms: 404 M_NOT_FOUND). Empty: every\n"
        "room we are in whose m.room.policy names this server with our key.",
        origin=HEXAGONE, commented=True, sample=lambda ctx: ["!community:" + ctx.server_name]),
    Key("policy_server.banned_users", "str_list", (), _POLICY,
        "Refuse events sent by these user IDs (globs: * and ?).",
        origin=HEXAGONE, commented=True, sample=lambda ctx: ["@spammer:*"]),
    Key("policy_server.banned_servers", "str_list", (), _POLICY,
        "Refuse events sent by users of these server names (globs).",
        origin=HEXAGONE, commented=True, sample=lambda ctx: ["*.spam.example"]),
    Key("policy_server.ban_lists", "str_list", (), _POLICY,
        "Room IDs of moderation policy lists (m.policy.rule.user and\n"
        "m.policy.rule.server state) this server is in: their m.ban rules are applied\n"
        "as banned_users and banned_servers.",
        origin=HEXAGONE, commented=True, sample=lambda ctx: ["!banlist:" + ctx.server_name]),
    Key("policy_server.spam_keywords", "str_list", (), _POLICY,
        "Refuse events whose content contains one of these words (case-insensitive).",
        origin=HEXAGONE, commented=True, sample=lambda ctx: ["buy followers"]),
    Key("media_store_path", "media_store_path", None, _MEDIA,
        "Directory holding uploaded files, thumbnails and the cache of remote media\n"
        "(default: media_store beside this file). Always the primary copy.",
        sample=_in_dir("media_store")),
    Key("max_upload_size", "size", 50 * 1024 ** 2, _MEDIA,
        "Largest file accepted (uploads, and remote media fetched for our users).\n"
        "A size in bytes or with a unit: 10K, 50M, 1G.", sample=lambda ctx: "50M"),
    Key("media_upload_limits", "upload_limits", (), _MEDIA,
        "Per-user upload quotas: each entry refuses an upload that would take a\n"
        "user's uploads within time_period over max_size (429 M_RESOURCE_LIMIT_EXCEEDED).",
        sample=lambda ctx: [{"time_period": "1h", "max_size": "100M"}], commented=True),
    Key("enable_authenticated_media", "bool", True, _MEDIA,
        "Media uploaded or fetched while true are served only on the authenticated\n"
        "endpoints (/_matrix/client/v1/media); the legacy /_matrix/media/v3 ones\n"
        "serve only what existed before (spec v1.11 \"freeze\")."),
    Key("max_pending_media_uploads", "int", 5, _MEDIA,
        "Media IDs a user may hold from /_matrix/media/v1/create without content.", bounds=(1, None)),
    Key("unused_expiration_time", "duration", 24 * 60 * 60 * 1000, _MEDIA,
        "How long an ID from /_matrix/media/v1/create stays usable.", attr="unused_expiration_time_ms",
        sample=lambda ctx: "24h"),
    Key("max_image_pixels", "size", 32 * 1024 ** 2, _MEDIA,
        "Images with more pixels than this are never decoded (no thumbnails).",
        sample=lambda ctx: "32M"),
    Key("dynamic_thumbnails", "bool", False, _MEDIA,
        "Generate a thumbnail of the exact size asked for; false: answer with the\n"
        "nearest of thumbnail_sizes."),
    Key("thumbnail_sizes", "thumbnail_sizes", DEFAULT_THUMBNAIL_SIZES, _MEDIA,
        "Thumbnails generated for every uploaded image (method: crop or scale).",
        sample=lambda ctx: [{"width": t.width, "height": t.height, "method": t.method}
                            for t in DEFAULT_THUMBNAIL_SIZES]),
    Key("media_retention", "media_retention", MediaRetention(), _MEDIA,
        "Delete local media not accessed for local_media_lifetime, and cached remote\n"
        "media not accessed for remote_media_lifetime (durations; unset: kept).",
        sample=lambda ctx: {"local_media_lifetime": "90d", "remote_media_lifetime": "14d"}, commented=True),

    Key("content_scanner", "content_scanner", None, _MEDIA,
        "Antivirus: every uploaded file and every file fetched from another server is\n"
        "scanned by ClamAV's daemon (clamd, INSTREAM protocol) before anyone can\n"
        "download it; an infected upload is refused with 403 M_FORBIDDEN, an infected\n"
        "remote file answered 404. clamd: tcp://HOST:PORT or unix:PATH. fail_closed\n"
        "(default true): refuse media while clamd cannot be reached. Set clamd's\n"
        "StreamMaxLength to at least max_upload_size, or larger files are refused.\n"
        "Verdicts are remembered by content hash. (Hexagone's key.)",
        origin=HEXAGONE, sample=lambda ctx: {"clamd": "unix:/run/clamav/clamd.ctl", "fail_closed": True},
        commented=True),
    Key("media_storage_providers", "media_storage_providers", (), _MEDIA,
        "Extra places media are stored, behind the local media_store_path (which stays\n"
        "the primary copy and the cache). Synapse's synapse-s3-storage-provider entries\n"
        "carry over: S3 (or any S3-compatible store) is built in, through boto3.\n"
        "store_local / store_remote: store local uploads / remote media there;\n"
        "store_synchronous: the upload answers only once stored there. A file missing\n"
        "locally is fetched from the providers into media_store_path.",
        sample=lambda ctx: [{
            "module": "s3_storage_provider.S3StorageProviderBackend", "store_local": True,
            "store_remote": True, "store_synchronous": True,
            "config": {"bucket": "my-media-bucket", "endpoint_url": "https://s3.example.org",
                       "region_name": "eu-west-3", "access_key_id": "...", "secret_access_key": "..."}}],
        commented=True),
    Key("url_preview_enabled", "bool", False, _MEDIA,
        "Let clients ask this server for previews of web pages: it then fetches any\n"
        "URL a user gives it, within the limits below. Needs\n"
        "url_preview_ip_range_blacklist."),
    Key("url_preview_ip_range_blacklist", "ip_ranges", None, _MEDIA,
        "IP ranges URL previews never connect to (checked on the resolved address, on\n"
        "each redirect). Required when url_preview_enabled is true.",
        sample=lambda ctx: list(DEFAULT_IP_RANGE_BLACKLIST)),
    Key("url_preview_ip_range_whitelist", "ip_ranges", (), _MEDIA,
        "Exceptions to url_preview_ip_range_blacklist."),
    Key("url_preview_url_blacklist", "url_blacklist", (), _MEDIA,
        "URLs never previewed: each entry maps URL parts (scheme, netloc, path, query,\n"
        "fragment, username, password, hostname, port) to a glob, or to a regular\n"
        "expression when it starts with ^; a URL matching every part of one entry is\n"
        "refused.", sample=lambda ctx: [{"netloc": "*.internal.example.org"}], commented=True),
    Key("max_spider_size", "size", 10 * 1024 * 1024, _MEDIA,
        "The largest page or image a URL preview downloads.", sample=lambda ctx: "10M"),

    Key("email.smtp_host", "str", "localhost", _MAIL,
        "E-mail (as Synapse's email section): with this section set, e-mail addresses can\n"
        "be added to accounts, used to register and to reset a forgotten password\n"
        "(validation links point at public_baseurl). The SMTP server mails go through.",
        sample=lambda ctx: "smtp.example.org", commented=True),
    Key("email.smtp_port", "int", 25, _MAIL, "Its port.", bounds=(1, 65535),
        sample=lambda ctx: 587, commented=True),
    Key("email.smtp_user", "str", None, _MAIL, "The user to log in to the SMTP server as (no login when unset).",
        sample=lambda ctx: "matrix", commented=True),
    Key("email.smtp_pass", "str", None, _MAIL, "Its password (never logged).", secret=True,
        sample=lambda ctx: "...", commented=True),
    Key("email.require_transport_security", "bool", False, _MAIL,
        "Send only over TLS (STARTTLS): no mail goes out if the server does not offer it.", commented=True),
    Key("email.enable_tls", "bool", True, _MAIL,
        "Use STARTTLS when the SMTP server offers it (its certificate is verified).", commented=True),
    Key("email.notif_from", "str", None, _MAIL,
        "The From of every mail; required when the email section is set. %(app)s is\n"
        "replaced by app_name.", sample=lambda ctx: "Your Friendly %(app)s homeserver <noreply@example.org>",
        commented=True),
    Key("email.app_name", "str", "Matrix", _MAIL, "The name of the service, in mails.", commented=True),
    Key("email.client_base_url", "str", None, _MAIL,
        "The web client linked from notification mails (e.g. https://app.element.io).",
        sample=lambda ctx: "https://app.element.io", commented=True),
    Key("email.validation_token_lifetime", "duration", 60 * 60 * 1000, _MAIL,
        "How long a link mailed to validate an address works.", attr="email_validation_token_lifetime_ms",
        bounds=(1, None), sample=lambda ctx: "1h", commented=True),
    Key("email.enable_notifs", "bool", False, _MAIL,
        "Mail users who have an email pusher about messages they have not read.", commented=True),
    Key("email.notif_for_new_users", "bool", True, _MAIL,
        "With enable_notifs: a user registering with an e-mail address gets an email\n"
        "pusher for it.", commented=True),
    Key("registrations_require_3pid", "str_list", (), _MAIL,
        "[email]: registering needs a validated e-mail address (the email section set).\n"
        "Phone numbers (msisdn) are not supported.", sample=lambda ctx: ["email"], commented=True),
    Key("email.notif_delay_before_mail", "duration", 10 * 60 * 1000, _MAIL,
        "How long a notification stays unread before it is mailed.",
        attr="email_notif_delay_before_mail_ms", sample=lambda ctx: "10m", commented=True),
    Key("cas_config.enabled", "section_enabled", False, _SSO,
        "Single sign-on through a CAS server (as Synapse's cas_config): with this section set\n"
        "(and enabled not false), /login offers m.login.sso and m.login.token, clients send\n"
        "their users to the CAS server through /login/sso/redirect, and the CAS server\n"
        "sends them back to public_baseurl + _matrix/client/r0/login/cas/ticket. The\n"
        "homeserver asks only the CAS server (server_url) to validate tickets, over https\n"
        "checked as outbound federation is: against federation_custom_ca_list when set,\n"
        "else the system's CAs (federation_verify_certificates: false turns checks off).",
        sample=lambda ctx: True, commented=True),
    Key("cas_config.server_url", "cas_server_url", None, _SSO,
        "The CAS server's base URL (its /login and /proxyValidate are under it); required.",
        sample=lambda ctx: "https://cas.example.org/cas", commented=True),
    Key("cas_config.service_url", "str", None, _SSO,
        "Deprecated (as in Synapse) and ignored: the service URL is built from public_baseurl.", commented=True),
    Key("cas_config.protocol_version", "cas_protocol_version", None, _SSO,
        "1, 2 or 3: with 3, tickets are validated at /p3/proxyValidate (CAS 3 attributes),\n"
        "else at /proxyValidate.", sample=lambda ctx: 3, commented=True),
    Key("cas_config.displayname_attribute", "str", None, _SSO,
        "The CAS attribute whose (first) value becomes a new user's display name.",
        sample=lambda ctx: "name", commented=True),
    Key("cas_config.required_attributes", "cas_required_attributes", None, _SSO,
        "Attributes the CAS response must hold for a login: attribute name to the value\n"
        "required, or null when any value will do.",
        sample=lambda ctx: {"userGroup": "staff", "department": None}, commented=True),
    Key("cas_config.enable_registration", "bool", True, _SSO,
        "false: a CAS user with no Matrix account yet is refused instead of registered.", commented=True),
    Key("cas_config.allow_numeric_ids", "bool", False, _SSO,
        "Accept CAS usernames made of digits only, prefixed with numeric_ids_prefix.", commented=True),
    Key("cas_config.numeric_ids_prefix", "str", "u", _SSO,
        "The prefix of numeric CAS usernames (letters and digits only).", commented=True),
    Key("cas_config.idp_name", "str", "CAS", _SSO, "The provider's name, shown by clients.", commented=True),
    Key("cas_config.idp_icon", "str", None, _SSO, "An mxc:// URI of the provider's icon, shown by clients.",
        sample=lambda ctx: "mxc://example.org/abc", commented=True),
    Key("cas_config.idp_brand", "str", None, _SSO,
        "A brand identifier clients may use for styling (spec: e.g. apple, google).", commented=True),
    Key("sso.client_whitelist", "str_list", (), _SSO,
        "URL prefixes of clients sent straight back with their login token; any other\n"
        "redirectUrl first gets a page asking the user to confirm (as Synapse).",
        sample=lambda ctx: ["https://app.element.io/"], commented=True),
    Key("sso.update_profile_information", "bool", False, _SSO,
        "At each SSO login, set the user's display name from the identity provider's\n"
        "(cas_config.displayname_attribute), not only at registration."),
    Key("default_identity_server", "str", None, _IDENTITY,
        "The identity server clients are offered (/.well-known/matrix/client's\n"
        "m.identity_server). Unless trusted_third_party_id_servers is set, it is also\n"
        "the only identity server this server talks to.",
        sample=lambda ctx: "https://id.example.org", commented=True),
    Key("trusted_third_party_id_servers", "server_names", None, _IDENTITY,
        "The identity servers this server may talk to (third-party invites, 3PID\n"
        "bind and unbind, key checks), as host or host:port (a bare host: any port).\n"
        "Any other a client names is refused with M_SERVER_NOT_TRUSTED. Unset: the host\n"
        "of default_identity_server; [] (or neither set): none. Synapse no longer reads\n"
        "this key and talks to any identity server a client names.",
        sample=lambda ctx: ["id.example.org"], commented=True),
    Key("worker_app", "worker_app", None, _WORKERS,
        "Unset (or synapse.app.homeserver): the main process, which writes every stream.\n"
        "synapse.app.generic_worker: a worker serving what its worker_listeners name\n"
        "(client reads and /sync, federation, media), and sending federation, pushes or\n"
        "appservice transactions when federation_sender_instances, pusher_instances or\n"
        "notify_appservices_from_worker names it; synapse.app.federation_sender,\n"
        "media_repository, pusher, appservice: those roles. Workers need PostgreSQL\n"
        "and redis.enabled (docs/workers.md).",
        sample=lambda ctx: "synapse.app.generic_worker", commented=True),
    Key("worker_name", "str", None, _WORKERS,
        "This worker's instance name (unique; required for a worker).",
        sample=lambda ctx: "sync1", commented=True),
    Key("worker_listeners", "worker_listeners", (), _WORKERS,
        "A worker's listeners (as listeners; they replace listeners in a worker).",
        items=_LISTENER, synapse_items=("tag", "request_id_header", "additional_resources", "path", "mode"),
        sample=lambda ctx: [{"port": 8083, "bind_addresses": ["127.0.0.1"], "type": "http",
                             "resources": [{"names": ["client"]}]}], commented=True),
    Key("instance_map", "instance_map", None, _WORKERS,
        "Where each process listens ({name: {host, port}}, main included); workers\n"
        "reach main's replication listener at main's entry (other news go over Redis).",
        sample=lambda ctx: {"main": {"host": "127.0.0.1", "port": 8008}}, commented=True),
    Key("stream_writers", "stream_writers", None, _WORKERS,
        "The writer of each stream: main only (any other instance is refused).",
        sample=lambda ctx: {"events": ["main"]}, commented=True),
    Key("send_federation", "bool", True, _WORKERS,
        "false: the main process queues federation but does not send it (a federation\n"
        "sender worker does)."),
    Key("federation_sender_instances", "str_list", (), _WORKERS,
        "The workers that send the federation queue; main then does not. Several share\n"
        "the destinations as Synapse's do (by the SHA-256 of the server name)."),
    Key("worker_replication_secret", "secret", None, _WORKERS,
        "The secret workers send main's replication listener (a listener naming the\n"
        "replication resource, at instance_map.main): an inbound federation worker\n"
        "has main persist the events it received through it. Required for that.",
        secret=True, sample=lambda ctx: ctx.secret(), commented=True),
    Key("enable_media_repo", "bool", True, _WORKERS,
        "false: this process serves no media (uploads, downloads, thumbnails, media\n"
        "admin APIs); set it on main when a media worker (enable_media_repo: true in\n"
        "its own file, or worker_app: synapse.app.media_repository) serves them."),
    Key("media_instance_running_background_jobs", "str", None, _WORKERS,
        "The instance that runs the media background jobs (media retention); main\n"
        "when unset.", sample=lambda ctx: "media1", commented=True),
    Key("pusher_instances", "str_list", (), _WORKERS,
        "The workers that send push notifications; main then does not. Several share\n"
        "the users as Synapse's do (by the SHA-256 of the user ID)."),
    Key("start_pushers", "bool", True, _WORKERS,
        "false: main sends no push notifications (pusher_instances names who does)."),
    Key("notify_appservices_from_worker", "str", None, _WORKERS,
        "The worker that sends the application services their transactions; main\n"
        "then does not.", sample=lambda ctx: "as1", commented=True),
    Key("redis.enabled", "bool", False, _WORKERS,
        "Tell the other processes of this one's writes over Redis pub/sub (required\n"
        "with workers, on every process)."),
    Key("redis.host", "str", "localhost", _WORKERS, "The Redis server's host."),
    Key("redis.port", "int", 6379, _WORKERS, "The Redis server's port.", bounds=(1, 65535)),
)

# Sub-keys of implemented sections that Synapse knows and Hexagone does not implement yet.
SYNAPSE_SUBKEYS: dict[str, tuple[str, ...]] = {
    "presence": ("include_offline_users_on_sync", "last_active_granularity", "sync_online_timeout",
                 "idle_timeout"),
    "user_directory": ("prefer_local_users", "exclude_remote_users", "show_locked_users"),
    "email": ("force_tls", "template_dir", "subjects", "invite_client_location", "riot_base_url",
              "notif_template_html", "notif_template_text", "expiry_template_html", "expiry_template_text",
              "password_reset_template_html", "password_reset_template_text", "registration_template_html",
              "registration_template_text", "add_threepid_template_html", "add_threepid_template_text",
              "password_reset_template_failure_html", "registration_template_failure_html",
              "add_threepid_template_failure_html", "password_reset_template_success_html",
              "registration_template_success_html", "add_threepid_template_success_html"),
    "sso": ("template_dir",),
    "federation": ("client_timeout", "max_short_retry_delay", "max_long_retry_delay", "max_short_retries",
                   "max_long_retries"),
    "redis": ("password", "password_path", "dbid", "path", "use_tls", "certificate_file", "private_key_file",
              "ca_file", "ca_path"),
}

# Spellings read by the parser of an implemented key: a secret's file, Synapse's older names.
ALIASES: frozenset[str] = frozenset(
    {f"{k.name}_path" for k in KEYS if k.kind == "secret"} | {"use_presence", "databases"}
)

# Top-level keys read silently and deliberately ignored.
SILENTLY_IGNORED_KEYS = frozenset({"report_stats"})

IMPLEMENTED_TOP_LEVEL_KEYS: frozenset[str] = frozenset({k.top for k in KEYS} | ALIASES)

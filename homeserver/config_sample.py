"""Writing a new ``homeserver.yaml`` (``hexagone init``): every key commented, in Synapse's shapes."""

from __future__ import annotations

import os
import re
import secrets
import string
import urllib.parse
from typing import Any

from homeserver.config import (DEFAULT_IP_RANGE_BLACKLIST, DEFAULT_ROOM_VERSION, RC_DEFAULTS, ConfigError,
                               check_int, validate_server_name)

def generate_signing_key_version() -> str:
    """A key id version in Synapse's style: ``a_`` plus 4 random characters."""
    alphabet = string.ascii_letters + string.digits
    return "a_" + "".join(secrets.choice(alphabet) for _ in range(4))


# ---------------------------------------------------------------------------
# Config generation
# ---------------------------------------------------------------------------


def _q(value: Any) -> str:
    """A YAML scalar: strings double-quoted (JSON strings are valid YAML)."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def database_from_url(url: str | None, config_dir: str) -> tuple[str, dict]:
    """(name, args) in Synapse's shape from a database URL or SQLite path."""
    if not url:
        return "sqlite3", {"database": os.path.join(config_dir, "homeserver.db")}
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        args: dict[str, Any] = {}
        if parts.username:
            args["user"] = urllib.parse.unquote(parts.username)
        if parts.password is not None:
            args["password"] = urllib.parse.unquote(parts.password)
        dbname = urllib.parse.unquote(parts.path.lstrip("/"))
        if dbname:
            args["dbname"] = dbname
        if parts.hostname:
            args["host"] = urllib.parse.unquote(parts.hostname)
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"database: invalid port in database URL {url!r}") from None
        if port:
            args["port"] = port
        for k, v in urllib.parse.parse_qsl(parts.query):
            args[k] = v
        args.setdefault("cp_min", 5)
        args.setdefault("cp_max", 10)
        return "psycopg2", args
    if parts.scheme == "sqlite":
        # sqlite:///abs/path -> /abs/path ; sqlite://rel/path -> rel/path
        path = urllib.parse.unquote(url[len("sqlite://"):]) if url.startswith("sqlite://") \
            else urllib.parse.unquote(url[len("sqlite:"):])
        if not path:
            raise ConfigError(f"database: no file path in database URL {url!r}")
        if path.startswith("/"):
            path = "/" + path.lstrip("/")  # sqlite:///abs and sqlite:////abs
        return "sqlite3", {"database": os.path.abspath(path)}
    if parts.scheme and len(parts.scheme) > 1:  # not a Windows drive letter
        raise ConfigError(
            f"database: unsupported database URL {url!r}; use postgresql://user:pw@host:port/db, "
            "sqlite:///path/to/file.db or a plain file path"
        )
    return "sqlite3", {"database": os.path.abspath(url)}


def generate_config_yaml(
    server_name: str,
    config_dir: str,
    port: int = 8008,
    database_url: str | None = None,
    *,
    placeholder_secret: str | None = None,
) -> str:
    """A complete, commented homeserver.yaml in Synapse's shape.

    Fresh random secrets are generated unless ``placeholder_secret`` is given
    (used for the checked-in sample).
    """
    validate_server_name(server_name)
    check_int(port, "port", 1, 65535)
    config_dir = os.path.abspath(config_dir)
    db_name, db_args = database_from_url(database_url, config_dir)

    def secret() -> str:
        return placeholder_secret if placeholder_secret is not None else secrets.token_urlsafe(32)

    def ratelimit(key: str, explain: str, default_key: str | None = None) -> str:
        ps, bc = RC_DEFAULTS[default_key or key]
        return (
            f"# {explain}\n"
            f"{key}:\n"
            f"  per_second: {ps}\n"
            f"  burst_count: {int(bc)}\n"
        )

    def nested_ratelimit(key: str, explain: str, subs: list[tuple[str, str]]) -> str:
        out = f"# {explain}\n{key}:\n"
        for sub, sub_explain in subs:
            ps, bc = RC_DEFAULTS[f"{key}.{sub}"]
            out += (
                f"  # {sub_explain}\n"
                f"  {sub}:\n"
                f"    per_second: {ps}\n"
                f"    burst_count: {int(bc)}\n"
            )
        return out

    db_lines = "".join(f"    {k}: {_q(v)}\n" for k, v in db_args.items())
    if db_name == "psycopg2":
        db_comment = (
            "# PostgreSQL (name: psycopg2, as in Synapse; psycopg is accepted too).\n"
            "# args are libpq connection parameters (user, password, dbname, host,\n"
            "# port, sslmode, ...) except cp_min/cp_max, the connection pool size.\n"
            "# Instead of password you may set password_file (a file holding it)\n"
            "# or leave both out and export PGPASSWORD.\n"
        )
    else:
        db_comment = (
            "# SQLite (name: sqlite3, as in Synapse): fine for trying things out and\n"
            "# small servers. For PostgreSQL use:\n"
            "#   database:\n"
            "#     name: psycopg2\n"
            "#     args: {user: hexagone, password: ..., dbname: hexagone,\n"
            "#            host: localhost, port: 5432, cp_min: 5, cp_max: 10}\n"
        )

    text = f"""\
# Hexagone homeserver configuration.
#
# Keys and value shapes follow Synapse's homeserver.yaml, so most of a Synapse
# configuration carries over. Synapse options Hexagone does not implement yet
# are logged as warnings at start and ignored; unknown keys are logged as
# possible typos. A wrong value for an implemented option refuses to start,
# naming the key. Relative paths are relative to this file's directory.
#
# Durations accept Synapse's suffixes: ms, s, m, h, d, w, y (a bare number is
# milliseconds). Sizes accept K, M, G, T (a bare number is bytes).

## Server ##

# The public domain of this server: user IDs look like @alice:<server_name>.
# It cannot be changed once users and rooms exist. No scheme, no path; an
# explicit :port is allowed.
server_name: {_q(server_name)}

# The URL clients use to reach this server (as entered in a client's
# "homeserver URL" field), usually behind a reverse proxy.
# Defaults to https://<server_name>/.
public_baseurl: {_q(f"https://{server_name}/")}

# Serve /.well-known/matrix/server so other servers reach us on port 443
# (through public_baseurl's host) instead of 8448.
serve_server_wellknown: false

# File to write the process id to, if any.
#pid_file: {_q(os.path.join(config_dir, "homeserver.pid"))}

# A Python logging configuration file (YAML dictConfig). Without it, logs go
# to stderr at the level given by `hexagone run --log-level`.
#log_config: {_q(os.path.join(config_dir, "log.config"))}

# The largest room.timeline.limit a /sync filter may ask for; a larger one is
# lowered to it (-1: no limit).
filter_timeline_limit: 100

# The room version used for new rooms. Hexagone creates rooms in versions
# 10, 11 and 12.
default_room_version: "{DEFAULT_ROOM_VERSION}"

# IP ranges this server never sends outbound requests to (federation, push,
# key checks). Defaults to private and special-use ranges.
ip_range_blacklist:
{"".join(f"  - {_q(r)}{chr(10)}" for r in DEFAULT_IP_RANGE_BLACKLIST)}
# Exceptions to ip_range_blacklist (e.g. a push gateway on the LAN).
ip_range_whitelist: []

# Network listeners. Only type: http is implemented. Resource names:
#   client     client-server API (also serves media and static)
#   federation server-server API (also serves media, keys and openid)
#   keys, media, openid, static, health  individual APIs
#   (/health is served on every listener; other paths outside a listener's
#   resources are answered 404 M_UNRECOGNIZED.)
# Put TLS and public ports on a reverse proxy and set x_forwarded: true so the
# client address is taken from X-Forwarded-For (read right to left, skipping
# trusted_proxies), only for connections from trusted_proxies (Hexagone's key,
# loopback by default; Synapse believes the header from any peer).
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    trusted_proxies: ["127.0.0.0/8", "::1/128"]
    resources:
      - names: [client, federation]
        compress: false

# Certificate (full chain) and key in PEM format, needed only by listeners
# with tls: true.
#tls_certificate_path: {_q(os.path.join(config_dir, "tls.crt"))}
#tls_private_key_path: {_q(os.path.join(config_dir, "tls.key"))}

## Presence and directory ##

# Presence (online/offline status) tracking.
presence:
  # Set to false to turn presence off entirely.
  enabled: true

# User directory search.
user_directory:
  # Set to false to return empty results to every search.
  enabled: true
  # true: search every user this server knows; false: only users in public
  # rooms or sharing a room with the searcher.
  search_all_users: false

# Let anyone, without an access token, read this server's public room list.
allow_public_rooms_without_auth: false

# Let other servers read this server's public room list (their users browse it).
allow_public_rooms_over_federation: false

# Require an access token to read other users' profiles.
require_auth_for_profile_requests: false

# Only show profiles of users who share a room with the requester (or are in
# the user directory).
limit_profile_requests_to_users_who_share_rooms: false

## Database ##

{db_comment}database:
  name: {db_name}
  args:
{db_lines}
## Media ##

# Directory where uploaded files and thumbnails are stored.
media_store_path: {_q(os.path.join(config_dir, "media_store"))}

# The largest upload accepted. Remember your reverse proxy's body size limit.
max_upload_size: 50M

## Registration ##

# Let anyone create an account through the client API. Refused at start
# unless registration_requires_token or
# enable_registration_without_verification is also true.
enable_registration: false

# Allow open registration with no verification at all (spam risk).
enable_registration_without_verification: false

# Require a registration token (created with the admin API) to register.
registration_requires_token: false

# Shared secret for the admin registration API and `hexagone register-user`.
# Anyone who knows it can create admin accounts: keep it private.
# (Or put it in a file and set registration_shared_secret_path instead.)
registration_shared_secret: {_q(secret())}

# bcrypt cost for password hashes (4-31; each +1 doubles the time).
bcrypt_rounds: 12

## VoIP (TURN) ##

# TURN server URIs given to clients, e.g. "turn:turn.example.org:3478?transport=udp".
turn_uris: []

# Shared secret of the TURN server (coturn's static-auth-secret), used to mint
# time-limited credentials. Alternative: turn_username/turn_password.
#turn_shared_secret: "..."
#turn_username: "..."
#turn_password: "..."

# How long generated TURN credentials stay valid.
turn_user_lifetime: 1h

# Give TURN credentials to guest users too.
turn_allow_guests: true

## Rate limiting ##
# per_second: sustained requests per second; burst_count: requests allowed
# in a burst before throttling.

{ratelimit("rc_message", "Events sent and profile changes, per account (and to-device sends, key uploads).")}
{ratelimit("rc_registration", "Registration attempts, per client IP.")}
{ratelimit("rc_registration_token_validity", "Registration token validity checks, per client IP.")}
{nested_ratelimit("rc_login", "Login attempts.", [
    ("address", "per client IP"),
    ("account", "per account being logged into"),
    ("failed_attempts", "failed attempts, per account"),
])}
# Redactions of other users' events, by moderators (defaults to the rc_message limits).
rc_admin_redaction:
  per_second: {RC_DEFAULTS["rc_message"][0]}
  burst_count: {int(RC_DEFAULTS["rc_message"][1])}

{nested_ratelimit("rc_joins", "Room joins, per account.", [
    ("local", "rooms this server is already in"),
    ("remote", "rooms needing a federated join"),
])}
{ratelimit("rc_joins_per_room", "Joins to a single room, from any user.")}
{nested_ratelimit("rc_invites", "Invites.", [
    ("per_room", "per room"),
    ("per_user", "per invited user (receiver)"),
    ("per_issuer", "per inviting user (sender)"),
])}
{nested_ratelimit("rc_presence", "Presence updates.", [("per_user", "per user")])}
{ratelimit("rc_room_creation", "Room creation, per account.")}
{ratelimit("rc_user_directory", "User directory searches, per account.")}
# Inbound federation requests, per remote server: after sleep_limit requests
# in window_size ms, each is delayed by sleep_delay ms; at most concurrent are
# processed at once and beyond reject_limit queued requests are refused.
# The same limits apply per client IP to the key server (/_matrix/key/v2/query).
rc_federation:
  window_size: 1000
  sleep_limit: 10
  sleep_delay: 500
  reject_limit: 50
  concurrent: 3

## Application services ##

# Registration files of application services (bridges, bots).
app_service_config_files: []

## Secrets and keys ##

# Signs guest access tokens and other short-lived tokens. Changing it logs out
# guests. (Or macaroon_secret_key_path: a file holding it.)
macaroon_secret_key: {_q(secret())}

# Used to sign form values (HMAC). (Or form_secret_path.)
form_secret: {_q(secret())}

# This server's ed25519 signing key, in Synapse's format. Back it up: losing
# it makes other servers distrust this one for a while.
signing_key_path: {_q(os.path.join(config_dir, "signing.key"))}

## Federation ##

# Servers asked for other servers' signing keys when those cannot be fetched
# directly. Set to [] to fetch keys only from their owners.
trusted_key_servers:
  - server_name: "matrix.org"

# Silence the start-up warning about trusting matrix.org as key server.
suppress_key_server_warning: false

# If set, federate only with these server names (a private federation).
#federation_domain_whitelist:
#  - example.com

# Verify TLS certificates of other servers. Only turn off for testing.
federation_verify_certificates: true

# Extra CA certificates (PEM files) trusted for federation; replaces the
# system list when set.
federation_custom_ca_list: []

# Lowest TLS version used to reach other servers: "1.2" or "1.3". Synapse's
# "1" and "1.1" are read as "1.2": Hexagone never federates below TLS 1.2.
federation_client_minimum_tls_version: "1.2"
"""
    return re.sub(r"\n{3,}", "\n\n", text)

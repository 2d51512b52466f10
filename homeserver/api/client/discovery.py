"""Server discovery, versions, capabilities and TURN credentials.

Spec v1.19 client-server: "Server Discovery", "API Standards" (versions),
"Capabilities negotiation", "Voice over IP" (TURN server), "Getting the support information", "OAuth 2.0
API" (server metadata discovery).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from homeserver.bodies import RawBody
from homeserver.http.router import AUTH_NONE, NO_PREFIX, ApiRequest, Endpoint
from homeserver.services.profiles import PROFILE_FIELDS

SUPPORTED_VERSIONS = ["r0.6.1"] + [f"v1.{minor}" for minor in range(1, 20)]


def turn_credentials(secret: str, user_id: str, now_ms: int, lifetime_ms: int) -> tuple[str, str]:
    """coturn's use-auth-secret REST scheme: username "<expiry>:<user>", password base64(HMAC-SHA1)."""
    expiry = (now_ms + lifetime_ms) // 1000
    username = f"{expiry}:{user_id}"
    mac = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode("ascii")


async def health(hs, req: ApiRequest) -> RawBody:
    """GET /health: the process answers (Synapse's load-balancer check, served on every listener)."""
    return RawBody(b"OK", b"text/plain; charset=utf-8")


async def versions(hs, req: ApiRequest):
    """GET /versions: v1.1 to v1.19; unstable features as Synapse names them, only those served: cross-signing
    uploads under ``/unstable`` too, delayed events (MSC4140) when enabled, RTC transports (MSC4143) when
    configured."""
    return {"versions": SUPPORTED_VERSIONS, "unstable_features": {
        "org.matrix.e2e_cross_signing": True,
        "org.matrix.msc4140": hs.delayed_events.enabled, "org.matrix.msc4143": bool(hs.config.matrix_rtc_transports)}}


async def well_known_client(hs, req: ApiRequest):
    """GET /.well-known/matrix/client, with ``extra_well_known_client_content`` (e.g. MatrixRTC's
    ``org.matrix.msc4143.rtc_foci``) beside the fields we set, which it cannot override (Synapse)."""
    answer = {**hs.config.extra_well_known_client_content, "m.homeserver": {"base_url": hs.config.public_baseurl}}
    if hs.config.default_identity_server:  # as Synapse
        answer["m.identity_server"] = {"base_url": hs.config.default_identity_server}
    return answer


async def well_known_server(hs, req: ApiRequest):
    if not hs.config.serve_server_wellknown:
        return 404, {"errcode": "M_NOT_FOUND", "error": "No .well-known/matrix/server configured"}
    port = 443 if hs.config.public_baseurl.startswith("https") else 8448
    return {"m.server": f"{hs.config.server_name}:{port}"}


async def well_known_policy_server(hs, req: ApiRequest):
    """GET /.well-known/matrix/policy_server (spec v1.18 client-server "Policy Servers"): the public key of
    our policy server, to put in a room's ``m.room.policy``; 404 when ``policy_server.enabled`` is false."""
    if hs.policy_server is None:
        return 404, {"errcode": "M_NOT_FOUND", "error": "This server is not a policy server"}
    return hs.policy_server.public_keys()


async def well_known_support(hs, req: ApiRequest):
    """GET /.well-known/matrix/support (spec v1.10) from Synapse's ``admin_contact``: a ``mailto:`` address or a
    Matrix user ID as the admin contact, an ``https://`` address as the support page; unset, 404."""
    contact = hs.config.admin_contact
    if not contact:
        return 404, {"errcode": "M_NOT_FOUND", "error": "No support information configured"}
    if contact.startswith("https://") or contact.startswith("http://"):
        return {"support_page": contact}
    how = {"email_address": contact[len("mailto:"):]} if contact.startswith("mailto:") else {"matrix_id": contact}
    return {"contacts": [{"role": "m.role.admin", **how}]}


async def auth_metadata(hs, req: ApiRequest):
    """GET /auth_metadata (spec v1.15, "OAuth 2.0 API"): this server authenticates with the legacy API only,
    which the spec says to answer 404 M_UNRECOGNIZED, so that clients use it."""
    return 404, {"errcode": "M_UNRECOGNIZED", "error": "This server does not support the OAuth 2.0 API"}


async def capabilities(hs, req: ApiRequest):
    """GET /capabilities: what this server lets a user do. Of the profile fields (v1.16), only the display
    name and avatar are stored; rooms are not forgotten on leave (v1.18); a server admin may suspend and lock
    accounts (``m.account_moderation``, omitted for anyone else as the spec asks); e-mail addresses can be
    changed (``/account/3pid``); login tokens for another device as ``login_via_existing_session`` says."""
    from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
    moderation = {"m.account_moderation": {"suspend": True, "lock": True}} if req.requester.is_admin else {}
    return {"capabilities": {**moderation,
        "m.change_password": {"enabled": True},
        "m.room_versions": {"default": hs.config.default_room_version,
                            "available": {v: "stable" for v in KNOWN_ROOM_VERSIONS}},
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        "m.3pid_changes": {"enabled": True},
        "m.get_login_token": {"enabled": hs.config.login_via_existing_session_enabled},
        "m.profile_fields": {"enabled": True, "allowed": sorted(PROFILE_FIELDS)},
        "m.forget_forced_upon_leave": {"enabled": False},
        "org.matrix.msc4140.delayed_events": {"max_delay_ms": hs.config.max_event_delay_ms or 0,
                                              "max_scheduled": hs.config.max_delayed_events_per_user},
    }}


async def turn_server(hs, req: ApiRequest):
    """GET /voip/turnServer: time-limited credentials from turn_shared_secret (or static ones)."""
    if not hs.config.turn_uris:
        return {}
    ttl = hs.config.turn_user_lifetime_ms
    if hs.config.turn_shared_secret:
        username, password = turn_credentials(hs.config.turn_shared_secret, req.user_id,
                                              hs.auth.now_ms(), ttl)
    elif hs.config.turn_username and hs.config.turn_password:
        username, password = hs.config.turn_username, hs.config.turn_password
    else:
        return {}
    return {"username": username, "password": password, "uris": list(hs.config.turn_uris), "ttl": ttl // 1000}


async def rtc_transports(hs, req: ApiRequest):
    """GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports: the configured ``matrix_rtc.transports``
    (MSC4143, as Synapse serves it: empty when none)."""
    transports = hs.config.matrix_rtc_transports
    return {"rtc_transports": transports} if transports else {}


ROUTES = [
    Endpoint("GET", "/_matrix/client/versions", versions, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/health", health, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/.well-known/matrix/client", well_known_client, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/.well-known/matrix/server", well_known_server, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/.well-known/matrix/support", well_known_support, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/.well-known/matrix/policy_server", well_known_policy_server, auth=AUTH_NONE,
             prefixes=NO_PREFIX),
    Endpoint("GET", "/auth_metadata", auth_metadata, auth=AUTH_NONE, prefixes=("/_matrix/client/v1",)),
    Endpoint("GET", "/capabilities", capabilities),
    Endpoint("GET", "/voip/turnServer", turn_server),
    Endpoint("GET", "/org.matrix.msc4143/rtc/transports", rtc_transports,
             prefixes=("/_matrix/client/unstable",)),
]

"""Single sign-on: spec v1.19 client-server "Login" ("Client login via SSO", ``m.login.sso``,
``GET /login/sso/redirect[/{idpId}]``), the ``m.login.sso`` stage of "User-Interactive Authentication API"
(with its fallback page), and Synapse's ``sso`` section (``client_whitelist``, ``update_profile_information``).

The one identity provider is CAS (``services/cas.py``). After the provider has vouched for a user:

1. the provider's user maps to a Matrix user: the one recorded for it (``storage/sso.py``), else (as Synapse,
   whose CAS logins long predate that record) an existing account of the mapped localpart, else a new account
   (``cas_config.enable_registration``) named after it, its display name from ``displayname_attribute``;
2. a deactivated account gets a page saying so, nothing else;
3. a single-use login token (2 minutes, as Synapse) is added to the client's ``redirectUrl``; a client whose
   URL starts with an ``sso.client_whitelist`` prefix is sent there at once, any other gets a page asking the
   user to confirm first (so a link made by someone else cannot silently log a victim into their client).

For user-interactive auth the CAS login completes the stage of the session named in the service URL, for the
user it maps to; a different user (or one never seen) fails the session's operation with 403 (as Synapse).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from homeserver.errors import MatrixError, not_found
from homeserver.services.auth import SSO_STAGE
from homeserver.services.cas import CasError, CasProvider, missing_requirement, username_to_localpart

logger = logging.getLogger(__name__)

LOGIN_TOKEN_LIFETIME_MS = 2 * 60 * 1000
MAX_REDIRECT_URL = 2048
_UNSAFE_SCHEMES = {"javascript", "data", "vbscript", "file", "blob", "about"}


@dataclass(frozen=True)
class SsoPage:
    """What the browser is answered after the identity provider: a ``redirect`` to ``url``, a page to
    ``confirm`` going there, an ``error`` page, or the end of a UIA stage (``uia_done``, ``uia_bad_user``)."""

    kind: str
    status: int = 200
    url: str | None = None
    display_url: str | None = None
    user_id: str | None = None
    new_user: bool = False
    error: str | None = None
    description: str | None = None


def error_page(error: str, description: str, status: int = 400) -> SsoPage:
    return SsoPage("error", status, error=error, description=description)


def check_redirect_url(url: str | None) -> str:
    """The client's ``redirectUrl``: 400 M_MISSING_PARAM when absent; M_INVALID_PARAM unless an absolute URL
    (custom schemes of mobile apps included) that cannot run script in our pages or carry a header."""
    if url is None or url == "":
        raise MatrixError(400, "M_MISSING_PARAM", "Missing redirectUrl")
    parts = urlsplit(url)
    if (len(url) > MAX_REDIRECT_URL or any(ord(c) < 0x21 or ord(c) == 0x7f for c in url) or not parts.scheme
            or parts.scheme.lower() in _UNSAFE_SCHEMES or not (parts.netloc or parts.path)):
        raise MatrixError(400, "M_INVALID_PARAM", "redirectUrl must be an absolute URL of a client")
    return url


def with_login_token(url: str, token: str) -> str:
    """The client's URL with ``loginToken`` added to its query, the rest kept as it was (as Synapse)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("loginToken", token)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def display_url(url: str) -> str:
    """The client shown on the confirmation page: an https URL's host, else the URL without query."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return parts.netloc
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class SsoService:
    def __init__(self, *, config, cas: CasProvider | None, store, accounts, auth, registration, profiles,
                 session_tokens, registration_limit):
        self._cas = cas   # None: cas_config is not enabled, so there is no identity provider
        self._store = store   # storage/sso.py
        self._accounts = accounts
        self._auth = auth
        self._registration = registration
        self._profiles = profiles
        self._session_tokens = session_tokens
        self._registration_limit = registration_limit   # rc_registration, as for any new account
        self._required = dict(config.cas_config_required_attributes or {})
        self._displayname_attribute = config.cas_config_displayname_attribute
        self._enable_registration = config.cas_config_enable_registration
        self._update_profile = config.sso_update_profile_information
        # Synapse also trusts its own login fallback page, which takes the token itself.
        self._whitelist = tuple(config.sso_client_whitelist) + (config.public_baseurl + "_matrix/static/client/login",)
        self._server_name = config.server_name

    @property
    def enabled(self) -> bool:
        return self._cas is not None

    @property
    def provider_name(self) -> str:
        return self._cas.name if self._cas is not None else ""

    def identity_providers(self) -> list[dict]:
        return [self._cas.describe()] if self._cas is not None else []

    def _provider(self, idp_id: str | None) -> CasProvider:
        if self._cas is None:
            raise MatrixError(400, "M_UNRECOGNIZED", "Homeserver not configured for SSO.")
        if idp_id is not None and idp_id != self._cas.idp_id:
            raise not_found("Unknown identity provider")
        return self._cas

    def login_redirect(self, client_redirect_url: str | None, idp_id: str | None = None) -> str:
        """GET /login/sso/redirect[/{idpId}]: the identity provider's login page (CAS's /login)."""
        provider = self._provider(idp_id)
        return provider.login_url({"redirectUrl": check_redirect_url(client_redirect_url)})

    def uia_redirect(self, session_id: str) -> str | None:
        """The fallback page's link for the ``m.login.sso`` stage of ``session_id``; None for an unknown session."""
        if self._cas is None or self._auth.uia_session_owner(session_id) is None:
            return None
        return self._cas.login_url({"session": session_id})

    async def uia_flows(self, user_id: str) -> list[list[str]]:
        """The UIA flows offered to confirm ``user_id``'s identity (as Synapse): their password, unless they
        have none and can sign on instead; ``m.login.sso`` when they have signed on with our provider."""
        sso = self._cas is not None and self._cas.idp_id in await self._store.providers_of(user_id)
        user = await self._accounts.get_user(user_id)
        flows = [] if sso and user is not None and not user["password_hash"] else [["m.login.password"]]
        return flows + ([[SSO_STAGE]] if sso else [])

    async def on_deactivated(self, user_id: str) -> None:
        await self._store.forget_user(user_id)

    # -- back from the CAS server ----------------------------------------------------------------
    async def cas_ticket(self, ticket: str, client_redirect_url: str | None, session_id: str | None,
                         client_ip: str) -> SsoPage:
        """GET of our service URL with the CAS server's ticket: validated with the CAS server, then a login
        (``redirectUrl``) or a UIA stage (``session``)."""
        cas = self._provider(None)
        if client_redirect_url is None and session_id is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing string query parameter redirectUrl or session")
        args = {}
        if client_redirect_url is not None:
            args["redirectUrl"] = check_redirect_url(client_redirect_url)
        if session_id is not None:
            args["session"] = session_id
        try:
            response = await cas.validate(ticket, args)
        except CasError as e:
            logger.warning("CAS ticket not validated: %s", e)
            return error_page(e.error, e.description, 401)
        if session_id is not None:
            return await self._complete_uia(cas.idp_id, response.username, session_id)
        missing = missing_requirement(response.attributes, self._required)
        if missing is not None:
            logger.info("CAS user %r lacks the required attribute %r", response.username, missing)
            return error_page("unauthorised", "You are not authorised to log in here.")
        display_name = (response.attributes.get(self._displayname_attribute) or [None])[0] \
            if self._displayname_attribute else None
        try:
            user_id, new_user = await self._map_user(cas.idp_id, response.username, display_name, client_ip)
        except MatrixError as e:
            logger.warning("CAS user %r not mapped to a Matrix user: %s", response.username, e.error)
            return error_page("mapping_error", e.error, 429 if e.status == 429 else 400)
        return await self._complete_login(user_id, args["redirectUrl"], new_user)

    async def _map_user(self, idp_id: str, username: str, display_name: str | None,
                        client_ip: str) -> tuple[str, bool]:
        """The Matrix user of the provider's ``username`` (registered if new): (user id, whether new)."""
        user_id = await self._store.user_of(idp_id, username)
        if user_id is None:
            localpart = username_to_localpart(username)
            existing = await self._accounts.find_user_case_insensitive(f"@{localpart}:{self._server_name}")
            if existing is not None:   # Synapse's "grandfathering": the account of that name is theirs
                return await self._store.record(idp_id, username, existing), False
            if not self._enable_registration:
                raise MatrixError(403, "M_FORBIDDEN", "User does not exist and registrations are disabled")
            if localpart.isdigit():
                raise MatrixError(400, "M_INVALID_USERNAME", "Numeric user IDs are reserved for guest users")
            self._registration_limit.check(client_ip)
            user_id = await self._registration.register(localpart, None)
            recorded = await self._store.record(idp_id, username, user_id)
            if display_name:
                await self._profiles.set_field(user_id, user_id, "displayname", display_name)
            return recorded, True
        if self._update_profile and display_name:
            profile = await self._profiles.member_content(user_id)
            if profile.get("displayname") != display_name:
                await self._profiles.set_field(user_id, user_id, "displayname", display_name)
        return user_id, False

    async def _complete_login(self, user_id: str, client_redirect_url: str, new_user: bool) -> SsoPage:
        user = await self._accounts.get_user(user_id)
        if user is None or user["deactivated"]:
            return error_page("deactivated", "This account has been deactivated.", 403)
        token = (await self._session_tokens.issue_login_token(user_id, LOGIN_TOKEN_LIFETIME_MS))["login_token"]
        url = with_login_token(client_redirect_url, token)
        if client_redirect_url.startswith(self._whitelist):
            return SsoPage("redirect", 302, url=url, user_id=user_id, new_user=new_user)
        return SsoPage("confirm", 200, url=url, display_url=display_url(client_redirect_url), user_id=user_id,
                       new_user=new_user)

    async def _complete_uia(self, idp_id: str, username: str, session_id: str) -> SsoPage:
        """The ``m.login.sso`` stage of the session, done for the user ``username`` maps to (``""`` for one
        never seen: the operation then fails, as for another user)."""
        user_id = await self._store.user_of(idp_id, username) or ""
        owner = self._auth.complete_sso_stage(session_id, user_id)
        if owner is None:
            return error_page("bad_session", "This authentication session is unknown or has expired.")
        if owner != user_id:
            logger.warning("SSO user %r/%r authenticated for a session of %s", idp_id, username, owner)
            return SsoPage("uia_bad_user", 200, user_id=owner)
        return SsoPage("uia_done", 200, user_id=user_id)

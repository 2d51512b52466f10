"""Access tokens that expire, refresh tokens and login tokens.

Spec v1.19 client-server: "Refreshing access tokens" (``refresh_token`` on /login and /register,
POST /refresh), "Login" (``m.login.token``) and POST /login/get_token (added in v1.7). Lifetimes are
Synapse's keys: ``refreshable_access_token_lifetime``, ``refresh_token_lifetime``,
``nonrefreshable_access_token_lifetime`` and ``login_via_existing_session.token_timeout``.
"""

from __future__ import annotations

from homeserver.errors import forbidden, unknown_token
from homeserver.services.auth import AuthService, random_string
from homeserver.storage.accounts import AccountStore
from homeserver.storage.session_tokens import SessionTokenStore

TOKEN_LENGTH = 40


class SessionTokens:
    def __init__(self, *, store: SessionTokenStore, accounts: AccountStore, auth: AuthService, config):
        self._store = store
        self._accounts = accounts
        self._auth = auth
        self._refreshable_ms = config.refreshable_access_token_lifetime_ms   # None: no refresh tokens
        self._refresh_token_ms = config.refresh_token_lifetime_ms
        self._nonrefreshable_ms = config.nonrefreshable_access_token_lifetime_ms
        self._login_token_ms = config.login_via_existing_session_token_timeout_ms

    def _lifetime(self, refresh: bool) -> int | None:
        return self._refreshable_ms if refresh else self._nonrefreshable_ms

    def _expiry(self, lifetime_ms: int | None) -> int | None:
        return None if lifetime_ms is None else self._auth.now_ms() + lifetime_ms

    async def login(self, user_id: str, device_id: str | None, display_name: str | None, client_ip: str | None,
                    *, refresh: bool) -> dict:
        """A device and its access token, with a refresh token when asked for and enabled (Synapse issues
        none when ``refreshable_access_token_lifetime`` is unset): the fields of the /login and /register
        responses. A reused device id loses its earlier refresh tokens with its earlier access tokens."""
        refresh = bool(refresh) and self._refreshable_ms is not None
        if device_id is not None:
            await self._store.on_devices_removed(user_id, [device_id])
        device_id, access_token = await self._auth.login_device(user_id, device_id, display_name, client_ip)
        result = {"device_id": device_id, "access_token": access_token}
        lifetime = self._lifetime(refresh)
        if refresh or lifetime is not None:
            refresh_token = "syr_" + random_string(TOKEN_LENGTH) if refresh else None
            await self._store.add_tokens(user_id, device_id, access_token, self._expiry(lifetime), refresh_token,
                                         self._expiry(self._refresh_token_ms))
            if refresh_token is not None:
                result["refresh_token"] = refresh_token
                result["expires_in_ms"] = lifetime
        return result

    async def refresh(self, refresh_token) -> dict:
        """POST /refresh: a new access token and refresh token; 401 M_UNKNOWN_TOKEN for a refresh token that
        is unknown, revoked or expired (soft logout for an expired one: the device may log in again)."""
        if not isinstance(refresh_token, str) or self._refreshable_ms is None:
            raise unknown_token("Unknown refresh token")
        access_token = "syt_" + random_string(TOKEN_LENGTH)
        new_refresh_token = "syr_" + random_string(TOKEN_LENGTH)
        outcome = await self._store.refresh(refresh_token, self._auth.now_ms(), access_token,
                                            self._expiry(self._refreshable_ms), new_refresh_token,
                                            self._expiry(self._refresh_token_ms))
        if outcome == "unknown":
            raise unknown_token("Unknown refresh token")
        if outcome == "expired":
            raise unknown_token("The refresh token has expired", soft_logout=True)
        user_id, device_id = outcome
        self._auth.forget_cached_tokens(user_id, device_id)   # a revoked access token of the device may be cached
        return {"access_token": access_token, "refresh_token": new_refresh_token,
                "expires_in_ms": self._refreshable_ms}

    # -- login tokens ----------------------------------------------------------------------------
    async def issue_login_token(self, user_id: str, lifetime_ms: int | None = None) -> dict:
        """POST /login/get_token (and single sign-on, with its own ``lifetime_ms``): a single-use token that
        logs ``user_id`` in on another device."""
        lifetime_ms = self._login_token_ms if lifetime_ms is None else lifetime_ms
        token = "syl_" + random_string(TOKEN_LENGTH)
        await self._store.add_login_token(token, user_id, self._expiry(lifetime_ms))
        return {"login_token": token, "expires_in_ms": lifetime_ms}

    async def user_of_login_token(self, token) -> str:
        """``m.login.token``: the user the token was issued to, once; else 403 M_FORBIDDEN (as Synapse)."""
        user_id = None
        if isinstance(token, str):
            user_id = await self._store.consume_login_token(token, self._auth.now_ms())
        user = await self._accounts.get_user(user_id) if user_id is not None else None
        if user is None or user["deactivated"]:
            raise forbidden("Invalid login token")
        return user_id

"""Spec client-server "OpenID": short-lived tokens a user hands to a third party (e.g. MatrixRTC's SFU token
service), which checks them on the federation API's /openid/userinfo."""

from __future__ import annotations

import secrets

from homeserver.storage.openid import OpenIdTokenStore

OPENID_TOKEN_LIFETIME_MS = 3600 * 1000


class OpenIdTokens:
    def __init__(self, *, store: OpenIdTokenStore, clock):
        self._store = store
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def issue(self, user_id: str) -> tuple[str, int]:
        """A new token for ``user_id`` and its lifetime in seconds."""
        token = secrets.token_urlsafe(32)
        now = self._now_ms()
        await self._store.add(token, user_id, now + OPENID_TOKEN_LIFETIME_MS, now)
        return token, OPENID_TOKEN_LIFETIME_MS // 1000

    async def user_for_token(self, token: str) -> str | None:
        return await self._store.user_for(token, self._now_ms())

"""The parts of Synapse's admin API that admin tooling relies on (server admins only).

Registration tokens: /_synapse/admin/v1/registration_tokens (Synapse's shape), used with
``registration_requires_token`` (client-server "Token-authenticated registration").
"""

from __future__ import annotations

import re

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.http.router import ApiRequest, Router
from homeserver.services.auth import random_string

PREFIX = "/_synapse/admin/v1"
TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")


def _optional_int(body: dict, key: str, minimum: int = 0) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise invalid_param(f"{key} must be an integer >= {minimum} or null")
    return value


def register(router: Router, hs) -> None:
    store = hs.accounts_store

    def admin_only(handler):
        async def wrapped(req: ApiRequest):
            if not req.requester.is_admin:
                raise forbidden("You are not a server admin")
            return await handler(req)
        return wrapped

    async def list_tokens(req: ApiRequest):
        tokens = await store.registration_tokens()
        valid = req.arg("valid")
        if valid is not None:
            now = hs.auth.now_ms()
            is_valid = [t for t in tokens if (t["expiry_time"] is None or t["expiry_time"] > now)
                        and (t["uses_allowed"] is None or t["completed"] + t["pending"] < t["uses_allowed"])]
            tokens = is_valid if valid == "true" else [t for t in tokens if t not in is_valid]
        return {"registration_tokens": tokens}

    async def new_token(req: ApiRequest):
        body = req.json(allow_empty=True)
        token = body.get("token")
        if token is None:
            length = _optional_int(body, "length", 1) or 16
            if length > 64:
                raise invalid_param("length must be at most 64")
            token = random_string(length)
        elif not isinstance(token, str) or not TOKEN_RE.match(token):
            raise invalid_param("token must be 1-64 characters of [A-Za-z0-9._~-]")
        uses_allowed = _optional_int(body, "uses_allowed")
        expiry_time = _optional_int(body, "expiry_time")
        if expiry_time is not None and expiry_time < hs.auth.now_ms():
            raise invalid_param("expiry_time must not be in the past")
        if not await store.create_registration_token(token, uses_allowed, expiry_time):
            raise MatrixError(400, "M_INVALID_PARAM", f"Token already exists: {token}")
        return (await store.registration_tokens(token))[0]

    async def get_token(req: ApiRequest):
        found = await store.registration_tokens(req.path_params["token"])
        if not found:
            raise not_found("No such registration token")
        return found[0]

    async def update_token(req: ApiRequest):
        body = req.json()
        changes = {k: _optional_int(body, k) for k in ("uses_allowed", "expiry_time") if k in body}
        if not await store.update_registration_token(req.path_params["token"], changes):
            raise not_found("No such registration token")
        return (await store.registration_tokens(req.path_params["token"]))[0]

    async def delete_token(req: ApiRequest):
        if not await store.delete_registration_token(req.path_params["token"]):
            raise not_found("No such registration token")
        return {}

    router.add("GET", PREFIX + "/registration_tokens", admin_only(list_tokens))
    router.add("POST", PREFIX + "/registration_tokens/new", admin_only(new_token))
    router.add("GET", PREFIX + "/registration_tokens/{token}", admin_only(get_token))
    router.add("PUT", PREFIX + "/registration_tokens/{token}", admin_only(update_token))
    router.add("DELETE", PREFIX + "/registration_tokens/{token}", admin_only(delete_token))

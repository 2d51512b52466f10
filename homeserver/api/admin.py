"""The parts of Synapse's admin API that admin tooling relies on.

Registration tokens: /_synapse/admin/v1/registration_tokens (Synapse's shape, server admins only), used
with ``registration_requires_token`` (client-server "Token-authenticated registration").
Shared-secret registration: /_synapse/admin/v1/register (``registration_shared_secret``), which
``register_new_matrix_user`` uses.
"""

from __future__ import annotations

import re

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.http.router import AUTH_ADMIN, AUTH_NONE, NO_PREFIX, ApiRequest, Endpoint
from homeserver.services.auth import random_string

PREFIX = V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")


def _optional_int(body: dict, key: str, minimum: int = 0) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise invalid_param(f"{key} must be an integer >= {minimum} or null")
    return value


def admin_route(method: str, path: str, handler) -> Endpoint:
    """An admin API endpoint: a server admin's access token required (``AUTH_ADMIN``), under no client prefix."""
    return Endpoint(method, path, handler, auth=AUTH_ADMIN, prefixes=NO_PREFIX)


def require_admin(req: ApiRequest) -> None:
    if not req.requester.is_admin:
        raise forbidden("You are not a server admin")


async def audited(hs, req: ApiRequest, action: str, target: str | None, **details) -> None:
    """An admin's change, in the audit trail (kind ``admin_action``)."""
    await hs.audit.record("admin_action", req.user_id, target, req.client_ip, {"action": action, **details})


def bool_arg(req: ApiRequest, name: str, default: bool | None) -> bool | None:
    """A ``true``/``false`` query parameter (Synapse's admin API spelling)."""
    value = req.arg(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise invalid_param(f"Query parameter {name!r} must be true or false")
    return value == "true"


def page_args(req: ApiRequest, default_limit: int = 100) -> tuple[int, int, bool]:
    """``from`` (an offset), ``limit`` and ``dir`` (f or b) of a paginated admin list."""
    direction = req.arg("dir", "f")
    if direction not in ("f", "b"):
        raise invalid_param("dir must be f or b")
    return req.int_arg("from", 0, minimum=0), req.int_arg("limit", default_limit, minimum=0), direction == "b"


async def list_tokens(hs, req: ApiRequest):
    require_admin(req)
    valid = req.arg("valid")
    return {"registration_tokens": await hs.registration.registration_tokens(
        None if valid is None else valid == "true")}


async def new_token(hs, req: ApiRequest):
    require_admin(req)
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
    if not await hs.registration.create_registration_token(token, uses_allowed, expiry_time):
        raise MatrixError(400, "M_INVALID_PARAM", f"Token already exists: {token}")
    await audited(hs, req, "new_registration_token", None, uses_allowed=uses_allowed, expiry_time=expiry_time)
    return await hs.registration.registration_token(token)


async def get_token(hs, req: ApiRequest):
    require_admin(req)
    found = await hs.registration.registration_token(req.path_params["token"])
    if found is None:
        raise not_found("No such registration token")
    return found


async def update_token(hs, req: ApiRequest):
    require_admin(req)
    body = req.json()
    changes = {k: _optional_int(body, k) for k in ("uses_allowed", "expiry_time") if k in body}
    if not await hs.registration.update_registration_token(req.path_params["token"], changes):
        raise not_found("No such registration token")
    await audited(hs, req, "update_registration_token", None, **changes)
    return await hs.registration.registration_token(req.path_params["token"])


async def delete_token(hs, req: ApiRequest):
    require_admin(req)
    if not await hs.registration.delete_registration_token(req.path_params["token"]):
        raise not_found("No such registration token")
    await audited(hs, req, "delete_registration_token", None)
    return {}


async def shared_secret_nonce(hs, req: ApiRequest):
    if not hs.config.registration_shared_secret:
        raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
    return {"nonce": hs.registration.new_nonce()}


async def shared_secret_register(hs, req: ApiRequest):
    """Synapse's /_synapse/admin/v1/register, which admin tooling uses."""
    body = req.json()
    user_id = await hs.registration.register_with_shared_secret(body)
    await hs.audit.record("registration", user_id, user_id, req.client_ip, {"shared_secret": True,
                                                                           "admin": bool(body.get("admin"))})
    device_id, token = await hs.auth.login_device(user_id, None, None, req.client_ip)
    return {"user_id": user_id, "access_token": token, "device_id": device_id,
            "home_server": hs.config.server_name}


ROUTES = [
    Endpoint("GET", PREFIX + "/registration_tokens", list_tokens, prefixes=NO_PREFIX),
    Endpoint("POST", PREFIX + "/registration_tokens/new", new_token, prefixes=NO_PREFIX),
    Endpoint("GET", PREFIX + "/registration_tokens/{token}", get_token, prefixes=NO_PREFIX),
    Endpoint("PUT", PREFIX + "/registration_tokens/{token}", update_token, prefixes=NO_PREFIX),
    Endpoint("DELETE", PREFIX + "/registration_tokens/{token}", delete_token, prefixes=NO_PREFIX),
    Endpoint("GET", PREFIX + "/register", shared_secret_nonce, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("POST", PREFIX + "/register", shared_secret_register, auth=AUTH_NONE, prefixes=NO_PREFIX),
]

"""Server administration for clients (spec v1.19 client-server "Server Administration": ``GET /admin/whois``,
account suspension and locking, ``/admin/suspend`` and ``/admin/lock``, v1.18)."""

from __future__ import annotations

from functools import partial

from homeserver.api.admin import audited
from homeserver.errors import MatrixError, forbidden
from homeserver.events.identifiers import domain_of, is_valid_user_id
from homeserver.http.router import AUTH_ADMIN, ApiRequest, Endpoint

V1 = ("/_matrix/client/v1",)


async def whois(hs, req: ApiRequest):
    """GET /admin/whois/{userId}: each device's sessions and connections (IP, last seen). As Synapse, a
    server admin may ask about any local user, anyone else only about themself."""
    user_id = req.path_params["userId"]
    if user_id != req.user_id and not req.requester.is_admin:
        raise forbidden("You are not a server admin")
    if not is_valid_user_id(user_id) or domain_of(user_id) != hs.config.server_name:
        raise MatrixError(400, "M_INVALID_PARAM", "Can only whois a local user")
    return await hs.admin.whois(user_id)


async def moderation(hs, req: ApiRequest, what: str):
    """GET and PUT /admin/suspend/{userId} (``what`` "suspended") and /admin/lock/{userId} ("locked")."""
    user_id = req.path_params["userId"]
    if req.method == "GET":
        return await hs.account_moderation.status(user_id, what)
    body = req.json()
    if what not in body:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing {what}")
    result = await hs.account_moderation.set_status(req.user_id, user_id, what, body[what])
    await audited(hs, req, f"set_{what}", user_id, **result)
    return result


ROUTES = [
    Endpoint("GET", "/admin/whois/{userId}", whois),
    Endpoint("GET", "/admin/suspend/{userId}", partial(moderation, what="suspended"), auth=AUTH_ADMIN, prefixes=V1),
    Endpoint("PUT", "/admin/suspend/{userId}", partial(moderation, what="suspended"), auth=AUTH_ADMIN, prefixes=V1),
    Endpoint("GET", "/admin/lock/{userId}", partial(moderation, what="locked"), auth=AUTH_ADMIN, prefixes=V1),
    Endpoint("PUT", "/admin/lock/{userId}", partial(moderation, what="locked"), auth=AUTH_ADMIN, prefixes=V1),
]

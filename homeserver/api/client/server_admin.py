"""Server administration for clients (spec v1.19 client-server "Server Administration": ``GET /admin/whois``)."""

from __future__ import annotations

from homeserver.errors import MatrixError, forbidden
from homeserver.events.identifiers import domain_of, is_valid_user_id
from homeserver.http.router import ApiRequest, Endpoint


async def whois(hs, req: ApiRequest):
    """GET /admin/whois/{userId}: each device's sessions and connections (IP, last seen). As Synapse, a
    server admin may ask about any local user, anyone else only about themself."""
    user_id = req.path_params["userId"]
    if user_id != req.user_id and not req.requester.is_admin:
        raise forbidden("You are not a server admin")
    if not is_valid_user_id(user_id) or domain_of(user_id) != hs.config.server_name:
        raise MatrixError(400, "M_INVALID_PARAM", "Can only whois a local user")
    return await hs.admin.whois(user_id)


ROUTES = [
    Endpoint("GET", "/admin/whois/{userId}", whois),
]

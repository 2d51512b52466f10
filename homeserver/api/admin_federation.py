"""Synapse's federation admin API (``docs/usage/administration/admin_api/federation.md``) and server version,
server admins only (``AUTH_ADMIN``): the destinations we send to with their retry state, and resetting a destination's
backoff."""

from __future__ import annotations

from federation.client import HEXAGONE_VERSION
from homeserver.api.admin import V1, admin_route, audited, page_args
from homeserver.http.router import ApiRequest


async def destinations(hs, req: ApiRequest):
    """GET /_synapse/admin/v1/federation/destinations: from, limit, order_by, dir, destination."""
    offset, limit, backwards = page_args(req)
    return await hs.admin.destinations(name=req.arg("destination"), order_by=req.arg("order_by", "destination"),
                                       backwards=backwards, offset=offset, limit=limit)


async def destination(hs, req: ApiRequest):
    return await hs.admin.destination(req.path_params["destination"])


async def reset_connection(hs, req: ApiRequest):
    await hs.admin.reset_destination(req.path_params["destination"])
    await audited(hs, req, "reset_federation_backoff", req.path_params["destination"])
    return {}


async def server_version(hs, req: ApiRequest):
    """GET /_synapse/admin/v1/server_version."""
    return {"server_version": f"Hexagone {HEXAGONE_VERSION}"}


ROUTES = [
    admin_route("GET", V1 + "/federation/destinations", destinations),
    admin_route("GET", V1 + "/federation/destinations/{destination}", destination),
    admin_route("POST", V1 + "/federation/destinations/{destination}/reset_connection", reset_connection),
    admin_route("GET", V1 + "/server_version", server_version),
]

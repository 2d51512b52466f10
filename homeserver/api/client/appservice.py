"""Application services seen from the client API: the ping (spec v1.19 client-server
"Application service ping", ``POST /_matrix/client/v1/appservice/{appserviceId}/ping``) and the
third-party lookups answered by the appservices (client-server "Third-party networks")."""

from __future__ import annotations

from functools import partial

from homeserver.errors import bad_json, not_found
from homeserver.http.router import ApiRequest, Endpoint

V1 = ("/_matrix/client/v1",)


async def ping(hs, req: ApiRequest):
    body = req.json(allow_empty=True)
    transaction_id = body.get("transaction_id")
    if transaction_id is not None and not isinstance(transaction_id, str):
        raise bad_json("transaction_id must be a string")
    return await hs.appservices.ping(req.requester, req.path_params["appserviceId"], transaction_id)


async def protocols(hs, req: ApiRequest):
    return await hs.appservices.protocols()


async def protocol(hs, req: ApiRequest):
    found = await hs.appservices.protocol(req.path_params["protocol"])
    if found is None:
        raise not_found("No application service serves this protocol")
    return found


async def lookup(hs, req: ApiRequest, *, kind: str):
    """GET /thirdparty/{location,user}[/{protocol}]: the query parameters go to the appservices as they are."""
    args = {k: v for k, v in req.args.items() if k != "access_token"}
    return await hs.appservices.thirdparty_lookup(kind, req.path_params.get("protocol"), args)


ROUTES = [
    Endpoint("POST", "/appservice/{appserviceId}/ping", ping, prefixes=V1),
    Endpoint("GET", "/thirdparty/protocols", protocols),
    Endpoint("GET", "/thirdparty/protocol/{protocol}", protocol),
    *(Endpoint("GET", f"/thirdparty/{kind}{tail}", partial(lookup, kind=kind))
      for kind in ("location", "user") for tail in ("/{protocol}", "")),
]

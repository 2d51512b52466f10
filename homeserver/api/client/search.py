"""Server-side search (spec v1.19 client-server "Server Side Search")."""

from __future__ import annotations

from homeserver.http.router import ApiRequest, Endpoint


async def search(hs, req: ApiRequest):
    return await hs.search.search(req.requester, req.json(), req.arg("next_batch"))


ROUTES = [
    Endpoint("POST", "/search", search),
]

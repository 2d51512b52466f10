"""Server-side search (spec v1.19 client-server "Server Side Search")."""

from __future__ import annotations

from homeserver.http.router import ApiRequest, Router


def register(router: Router, hs) -> None:
    async def search(req: ApiRequest):
        return await hs.search.search(req.requester, req.json(), req.arg("next_batch"))

    router.client("POST", "/search", search)

"""User directory (spec v1.19 client-server "User directory")."""

from __future__ import annotations

from homeserver.errors import bad_json, missing_param
from homeserver.http.router import ApiRequest, Endpoint

DEFAULT_LIMIT = 10


async def search(hs, req: ApiRequest):
    body = req.json()
    hs.ratelimit.check_user(hs.ratelimit.user_directory, req.user_id)
    if "search_term" not in body:
        raise missing_param("Missing 'search_term'")
    term, limit = body["search_term"], body.get("limit", DEFAULT_LIMIT)
    if not isinstance(term, str):
        raise bad_json("'search_term' must be a string")
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise bad_json("'limit' must be an integer")
    return await hs.user_directory.search(req.user_id, term, limit)


ROUTES = [
    Endpoint("POST", "/user_directory/search", search),
]

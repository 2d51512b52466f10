"""/sync and filters (spec v1.19 client-server "Syncing", "Filtering")."""

from __future__ import annotations

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.http.router import ApiRequest, Endpoint, parse_json
from homeserver.services.filtering import SyncFilter

MAX_TIMEOUT_MS = 5 * 60 * 1000


def _filter_id(raw: str) -> int | None:
    """A filter id as we hand them out (a non-negative 64-bit integer), else None."""
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 <= value < 2**63 else None


async def _load_filter(hs, req: ApiRequest) -> SyncFilter:
    raw = req.arg("filter")
    if raw is None:
        return SyncFilter()
    if raw.lstrip().startswith("{"):
        return await hs.filters.sync_filter(req.user_id, definition=parse_json(raw.encode("utf-8"), "filter"))
    filter_id = _filter_id(raw)
    if filter_id is None:
        raise MatrixError(400, "M_INVALID_PARAM", "filter must be a filter id or a JSON object")
    return await hs.filters.sync_filter(req.user_id, filter_id=filter_id)


async def sync(hs, req: ApiRequest):
    sync_filter = await _load_filter(hs, req)
    timeout = min(req.int_arg("timeout", 0, minimum=0), MAX_TIMEOUT_MS)
    set_presence = req.arg("set_presence", "online")
    if set_presence not in ("online", "offline", "unavailable"):
        raise MatrixError(400, "M_INVALID_PARAM", "set_presence must be online, offline or unavailable")
    if hs.presence is not None:
        await hs.presence.user_syncing(req.user_id, set_presence)
    return await hs.sync.sync(req.requester, req.arg("since"), timeout, sync_filter,
                              req.bool_arg("full_state"))


async def post_filter(hs, req: ApiRequest):
    if req.path_params["userId"] != req.user_id:
        raise forbidden("You may only create filters for yourself")
    return {"filter_id": str(await hs.filters.add(req.user_id, req.json()))}


async def get_filter(hs, req: ApiRequest):
    if req.path_params["userId"] != req.user_id:
        raise forbidden("You may only read your own filters")
    filter_id = _filter_id(req.path_params["filterId"])
    if filter_id is None:
        raise not_found("No such filter")
    return await hs.filters.get(req.user_id, filter_id)


ROUTES = [
    Endpoint("GET", "/sync", sync),
    Endpoint("POST", "/user/{userId}/filter", post_filter),
    Endpoint("GET", "/user/{userId}/filter/{filterId}", get_filter),
]

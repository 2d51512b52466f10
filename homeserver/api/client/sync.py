"""/sync and filters (spec v1.19 client-server "Syncing", "Filtering")."""

from __future__ import annotations

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.http.router import ApiRequest, Router, parse_json
from homeserver.services.filtering import SyncFilter

MAX_TIMEOUT_MS = 5 * 60 * 1000


def _filter_id(raw: str) -> int | None:
    """A filter id as we hand them out (a non-negative 64-bit integer), else None."""
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 <= value < 2**63 else None


def register(router: Router, hs) -> None:
    filters = hs.filter_store

    async def load_filter(req: ApiRequest) -> SyncFilter:
        raw = req.arg("filter")
        if raw is None:
            return SyncFilter()
        if raw.lstrip().startswith("{"):
            definition = parse_json(raw.encode("utf-8"), "filter")
        else:
            filter_id = _filter_id(raw)
            if filter_id is None:
                raise MatrixError(400, "M_INVALID_PARAM", "filter must be a filter id or a JSON object")
            definition = await filters.get_filter(req.user_id, filter_id)
            if definition is None:
                raise not_found("No such filter")
        return SyncFilter.parse(definition, hs.config.filter_timeline_limit)

    async def sync(req: ApiRequest):
        sync_filter = await load_filter(req)
        timeout = min(req.int_arg("timeout", 0, minimum=0), MAX_TIMEOUT_MS)
        set_presence = req.arg("set_presence", "online")
        if set_presence not in ("online", "offline", "unavailable"):
            raise MatrixError(400, "M_INVALID_PARAM", "set_presence must be online, offline or unavailable")
        if hs.presence is not None:
            await hs.presence.user_syncing(req.user_id, set_presence)
        return await hs.sync.sync(req.requester, req.arg("since"), timeout, sync_filter,
                                  req.bool_arg("full_state"))

    async def post_filter(req: ApiRequest):
        if req.path_params["userId"] != req.user_id:
            raise forbidden("You may only create filters for yourself")
        body = req.json()
        SyncFilter.parse(body)  # validate before storing
        return {"filter_id": str(await filters.add_filter(req.user_id, body))}

    async def get_filter(req: ApiRequest):
        if req.path_params["userId"] != req.user_id:
            raise forbidden("You may only read your own filters")
        filter_id = _filter_id(req.path_params["filterId"])
        if filter_id is None:
            raise not_found("No such filter")
        definition = await filters.get_filter(req.user_id, filter_id)
        if definition is None:
            raise not_found("No such filter")
        return definition

    router.client("GET", "/sync", sync)
    router.client("POST", "/user/{userId}/filter", post_filter)
    router.client("GET", "/user/{userId}/filter/{filterId}", get_filter)

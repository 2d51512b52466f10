"""/sync and filters (spec v1.19 client-server "Syncing", "Filtering")."""

from __future__ import annotations

import json

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.http.router import ApiRequest, Router
from homeserver.services.filtering import SyncFilter

MAX_TIMEOUT_MS = 5 * 60 * 1000


def register(router: Router, hs) -> None:
    filters = hs.filter_store

    async def load_filter(req: ApiRequest) -> SyncFilter:
        raw = req.arg("filter")
        if raw is None:
            return SyncFilter()
        if raw.lstrip().startswith("{"):
            try:
                definition = json.loads(raw)
            except ValueError:
                raise MatrixError(400, "M_NOT_JSON", "filter is not valid JSON")
        else:
            try:
                filter_id = int(raw)
            except ValueError:
                filter_id = -1
            if not 0 <= filter_id < 2 ** 63:
                raise MatrixError(400, "M_INVALID_PARAM", "filter must be a filter id or a JSON object")
            definition = await filters.get_filter(req.user_id, filter_id)
            if definition is None:
                raise not_found("No such filter")
        return SyncFilter.parse(definition)

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
        try:
            filter_id = int(req.path_params["filterId"])
        except ValueError:
            filter_id = -1
        if not 0 <= filter_id < 2 ** 63:
            raise not_found("No such filter")
        definition = await filters.get_filter(req.user_id, filter_id)
        if definition is None:
            raise not_found("No such filter")
        return definition

    router.client("GET", "/sync", sync)
    router.client("POST", "/user/{userId}/filter", post_filter)
    router.client("GET", "/user/{userId}/filter/{filterId}", get_filter)

"""Synapse's admin API for media (paths and shapes of Synapse's "Media Admin API"), server admins only:
quarantine a file or a room's media, delete by ID or by age, list a user's uploads, purge the remote cache."""

from __future__ import annotations

from homeserver.errors import forbidden, invalid_param, missing_param
from homeserver.http.router import NO_PREFIX, ApiRequest, Endpoint

PREFIX = "/_synapse/admin/v1"


def _require_admin(req: ApiRequest) -> None:
    if not req.requester.is_admin:
        raise forbidden("You are not a server admin")


def _before_ts(req: ApiRequest) -> int:
    before = req.int_arg("before_ts", minimum=0)
    if before is None:
        raise missing_param("Missing integer query parameter 'before_ts'")
    return before


async def quarantine_media(hs, req: ApiRequest, by_admin: bool = True):
    """POST /media/quarantine/{serverName}/{mediaId} (and /media/unquarantine/...)."""
    _require_admin(req)
    await hs.media.quarantine([(req.path_params["serverName"], req.path_params["mediaId"])],
                              req.user_id if by_admin else None)
    return {}


async def unquarantine_media(hs, req: ApiRequest):
    return await quarantine_media(hs, req, by_admin=False)


async def quarantine_room(hs, req: ApiRequest):
    """POST /room/{roomId}/media/quarantine (and Synapse's older /quarantine_media/{roomId})."""
    _require_admin(req)
    return {"num_quarantined": await hs.media.quarantine_room(req.path_params["roomId"], req.user_id)}


async def room_media(hs, req: ApiRequest):
    """GET /room/{roomId}/media."""
    _require_admin(req)
    local, remote = await hs.media.room_media(req.path_params["roomId"])
    return {"local": local, "remote": remote}


async def delete_media(hs, req: ApiRequest):
    """DELETE /media/{serverName}/{mediaId}: local media only."""
    _require_admin(req)
    if req.path_params["serverName"] != hs.config.server_name:
        raise invalid_param("Can only delete local media")
    deleted = await hs.media.delete_local([req.path_params["mediaId"]])
    return {"deleted_media": deleted, "total": len(deleted)}


async def delete_media_before(hs, req: ApiRequest):
    """POST /media/delete?before_ts=[&size_gt=][&keep_profiles=] (and /media/{serverName}/delete): local media
    last accessed before ``before_ts`` ms, users' avatars kept unless ``keep_profiles=false``."""
    _require_admin(req)
    server = req.path_params.get("serverName")
    if server is not None and server != hs.config.server_name:
        raise invalid_param("Can only delete local media")
    deleted = await hs.media.delete_local_before(_before_ts(req), req.int_arg("size_gt", 0, minimum=0),
                                                 req.bool_arg("keep_profiles", True))
    return {"deleted_media": deleted, "total": len(deleted)}


async def user_media(hs, req: ApiRequest):
    """GET /users/{userId}/media?from=&limit=&order_by=&dir=."""
    _require_admin(req)
    start = req.int_arg("from", 0, minimum=0)
    limit = req.int_arg("limit", 100, minimum=0)
    direction = req.arg("dir", "f")
    if direction not in ("f", "b"):
        raise invalid_param("dir must be f or b")
    media, total = await hs.media.user_media(req.path_params["userId"], start, limit,
                                             req.arg("order_by", "created_ts"), direction == "b")
    body = {"media": [{"media_id": m.media_id, "media_type": m.media_type, "media_length": m.media_length,
                       "upload_name": m.upload_name, "created_ts": m.created_ts, "last_access_ts": m.last_access_ts,
                       "quarantined_by": m.quarantined_by, "safe_from_quarantine": False} for m in media],
            "total": total}
    if start + len(media) < total:
        body["next_token"] = start + len(media)
    return body


async def media_statistics(hs, req: ApiRequest):
    """GET /statistics/users/media?from=&limit=&order_by=&dir=&search_term=: uploads and bytes per local user,
    largest first by default (Synapse's ``docs/admin_api/statistics.md``; no from_ts/until_ts)."""
    _require_admin(req)
    start, limit = req.int_arg("from", 0, minimum=0), req.int_arg("limit", 100, minimum=0)
    order_by, direction = req.arg("order_by", "media_length"), req.arg("dir", "b")
    if order_by not in ("user_id", "displayname", "media_count", "media_length") or direction not in ("f", "b"):
        raise invalid_param("order_by must be user_id, displayname, media_count or media_length; dir f or b")
    rows, total = await hs.media.usage_by_user(offset=start, limit=limit, search_term=req.arg("search_term"),
                                               order_by=order_by, descending=direction == "b")
    body = {"users": [{"user_id": u, "displayname": name, "media_count": count, "media_length": length}
                      for u, name, count, length in rows], "total": total}
    if start + len(rows) < total:
        body["next_token"] = start + len(rows)
    return body


async def delete_user_media(hs, req: ApiRequest):
    """DELETE /users/{userId}/media: every upload of a user."""
    _require_admin(req)
    media, _ = await hs.media.user_media(req.path_params["userId"], 0, 2 ** 31, "created_ts", False)
    deleted = await hs.media.delete_local([m.media_id for m in media])
    return {"deleted_media": deleted, "total": len(deleted)}


async def purge_media_cache(hs, req: ApiRequest):
    """POST /purge_media_cache?before_ts=: cached remote media not accessed since."""
    _require_admin(req)
    return {"deleted": await hs.media.purge_remote_before(_before_ts(req))}


# (method, path under /_synapse/admin/v1, handler); Synapse's older spellings beside the current ones.
_TABLE = (
    ("POST", "/media/quarantine/{serverName}/{mediaId}", quarantine_media),
    ("POST", "/media/unquarantine/{serverName}/{mediaId}", unquarantine_media),
    ("POST", "/room/{roomId}/media/quarantine", quarantine_room), ("POST", "/quarantine_media/{roomId}", quarantine_room),
    ("GET", "/room/{roomId}/media", room_media),
    ("DELETE", "/media/{serverName}/{mediaId}", delete_media),
    ("POST", "/media/delete", delete_media_before), ("POST", "/media/{serverName}/delete", delete_media_before),
    ("GET", "/users/{userId}/media", user_media), ("DELETE", "/users/{userId}/media", delete_user_media),
    ("POST", "/purge_media_cache", purge_media_cache),
    ("GET", "/statistics/users/media", media_statistics),
)
ROUTES = [Endpoint(method, PREFIX + path, handler, prefixes=NO_PREFIX) for method, path, handler in _TABLE]

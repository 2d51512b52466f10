"""Spaces, room summaries and mutual rooms.

Spec v1.19 client-server: "Spaces" (``GET /rooms/{roomId}/hierarchy``), "Room Summaries"
(``GET /room_summary/{roomIdOrAlias}``, v1.15, MSC3266) and "Mutual rooms" (``GET /mutual_rooms``).
"""

from __future__ import annotations

from homeserver.errors import MatrixError
from homeserver.events.identifiers import is_valid_server_name, is_valid_user_id
from homeserver.http.router import AUTH_OPTIONAL, ApiRequest, Endpoint

V1 = ("/_matrix/client/v1",)


async def hierarchy(hs, req: ApiRequest):
    """GET /rooms/{roomId}/hierarchy: ``limit`` positive, ``max_depth`` non-negative (400 M_INVALID_PARAM)."""
    limit = req.int_arg("limit", minimum=1)
    max_depth = req.int_arg("max_depth", minimum=0)
    return await hs.spaces.hierarchy(req.user_id, req.path_params["roomId"],
                                     suggested_only=req.bool_arg("suggested_only"), max_depth=max_depth,
                                     limit=limit, from_token=req.arg("from"))


async def room_summary(hs, req: ApiRequest):
    """GET /room_summary/{roomIdOrAlias}?via=: with or without an access token (then previewable rooms only)."""
    via = req.args.get("via", [])
    if not all(is_valid_server_name(s) for s in via):
        raise MatrixError(400, "M_INVALID_PARAM", "via must list server names")
    user_id = req.requester.user_id if req.requester is not None else None
    return await hs.spaces.summary(user_id, req.path_params["roomIdOrAlias"], via)


async def mutual_rooms(hs, req: ApiRequest):
    """GET /mutual_rooms?user_id=: every room both users are joined to, in one batch (so any ``from`` is a
    token this server never gave: 400 M_INVALID_PARAM)."""
    other = req.arg("user_id")
    if other is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing user_id")
    if not is_valid_user_id(other) or other == req.user_id:
        raise MatrixError(400, "M_INVALID_PARAM", "user_id must be another user's valid id")
    if req.arg("from") is not None:
        raise MatrixError(400, "M_INVALID_PARAM", "Unknown or expired from token")
    joined = await hs.rooms.mutual_rooms(req.user_id, other)
    return {"joined": joined, "count": len(joined)}


ROUTES = [
    Endpoint("GET", "/rooms/{roomId}/hierarchy", hierarchy, prefixes=V1),
    Endpoint("GET", "/room_summary/{roomIdOrAlias}", room_summary, auth=AUTH_OPTIONAL, prefixes=V1),
    Endpoint("GET", "/mutual_rooms", mutual_rooms, prefixes=V1),
]

"""Presence (spec v1.19 client-server "Presence")."""

from __future__ import annotations

from homeserver.errors import bad_json, forbidden
from homeserver.http.router import ApiRequest, Endpoint


async def get_status(hs, req: ApiRequest):
    return await hs.presence.get_presence(req.user_id, req.path_params["userId"])


async def put_status(hs, req: ApiRequest):
    if req.path_params["userId"] != req.user_id:
        raise forbidden("You can only set your own presence state")
    body = dict(req.json())
    state, status_msg = body.pop("presence", None), body.pop("status_msg", None)
    if not isinstance(state, str):
        raise bad_json("'presence' must be a string")
    if status_msg is not None and not isinstance(status_msg, str):
        raise bad_json("'status_msg' must be a string")
    if body:
        raise bad_json(f"Unknown keys: {', '.join(sorted(body))}")
    hs.ratelimit.check_user(hs.ratelimit.presence, req.user_id)
    await hs.presence.set_presence(req.user_id, state, status_msg)
    return {}


ROUTES = [
    Endpoint("GET", "/presence/{userId}/status", get_status),
    Endpoint("PUT", "/presence/{userId}/status", put_status),
]

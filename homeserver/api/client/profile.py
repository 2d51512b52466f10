"""Profiles (spec v1.19 client-server "Profiles")."""

from __future__ import annotations

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.http.router import AUTH_OPTIONAL, ApiRequest, Endpoint


async def _check_access(hs, req: ApiRequest, user_id: str) -> None:
    config = hs.config
    if config.require_auth_for_profile_requests and req.requester is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    if config.limit_profile_requests_to_users_who_share_rooms and req.requester is not None \
            and req.user_id != user_id and not await hs.profiles.shares_room(req.user_id, user_id):
        raise forbidden("You do not share a room with this user")


async def get_profile(hs, req: ApiRequest):
    user_id = req.path_params["userId"]
    await _check_access(hs, req, user_id)
    return await hs.profiles.lookup(user_id)


async def get_field(hs, req: ApiRequest):
    user_id, field = req.path_params["userId"], req.path_params["keyName"]
    await _check_access(hs, req, user_id)
    profile = await hs.profiles.lookup(user_id)
    if field not in profile:
        raise not_found("Profile field not set")
    return {field: profile[field]}


async def put_field(hs, req: ApiRequest):
    hs.account_moderation.check_not_suspended(req.user_id)
    field = req.path_params["keyName"]
    body = req.json()
    if field not in body:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing {field}")
    hs.ratelimit.event(req.user_id)  # a profile change is sent to every room of the user (Synapse)
    await hs.profiles.set_field(req.user_id, req.path_params["userId"], field, body[field])
    return {}


async def delete_field(hs, req: ApiRequest):
    hs.account_moderation.check_not_suspended(req.user_id)
    hs.ratelimit.event(req.user_id)
    await hs.profiles.set_field(req.user_id, req.path_params["userId"], req.path_params["keyName"], None)
    return {}


ROUTES = [
    Endpoint("GET", "/profile/{userId}", get_profile, auth=AUTH_OPTIONAL),
    Endpoint("GET", "/profile/{userId}/{keyName}", get_field, auth=AUTH_OPTIONAL),
    Endpoint("PUT", "/profile/{userId}/{keyName}", put_field),
    Endpoint("DELETE", "/profile/{userId}/{keyName}", delete_field),
]

"""Profiles (spec v1.19 client-server "Profiles")."""

from __future__ import annotations

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.http.router import AUTH_OPTIONAL, ApiRequest, Router


def register(router: Router, hs) -> None:
    profiles, config = hs.profiles, hs.config

    async def check_access(req: ApiRequest, user_id: str) -> None:
        if config.require_auth_for_profile_requests and req.requester is None:
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        if config.limit_profile_requests_to_users_who_share_rooms and req.requester is not None \
                and req.user_id != user_id and user_id not in await hs.event_store.users_sharing_rooms(req.user_id):
            raise forbidden("You do not share a room with this user")

    async def lookup(user_id: str) -> dict:
        """A local profile, or a remote one through federation's /query/profile."""
        if ":" not in user_id or user_id.split(":", 1)[1] == config.server_name or hs.federation is None:
            return await profiles.get(user_id)
        try:
            result = await hs.federation.client.get_json(
                user_id.split(":", 1)[1], "/_matrix/federation/v1/query/profile", {"user_id": user_id})
        except Exception:
            raise not_found("Profile not found")
        return {k: v for k, v in result.items() if k in ("displayname", "avatar_url") and isinstance(v, str)}

    async def get_profile(req: ApiRequest):
        user_id = req.path_params["userId"]
        await check_access(req, user_id)
        return await lookup(user_id)

    async def get_field(req: ApiRequest):
        user_id, field = req.path_params["userId"], req.path_params["keyName"]
        await check_access(req, user_id)
        profile = await lookup(user_id)
        if field not in profile:
            raise not_found("Profile field not set")
        return {field: profile[field]}

    async def put_field(req: ApiRequest):
        field = req.path_params["keyName"]
        body = req.json()
        if field not in body:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing {field}")
        hs.ratelimit.event(req.user_id)  # a profile change is sent to every room of the user (Synapse)
        await profiles.set_field(req.user_id, req.path_params["userId"], field, body[field])
        return {}

    async def delete_field(req: ApiRequest):
        hs.ratelimit.event(req.user_id)
        await profiles.set_field(req.user_id, req.path_params["userId"], req.path_params["keyName"], None)
        return {}

    router.client("GET", "/profile/{userId}", get_profile, auth=AUTH_OPTIONAL)
    router.client("GET", "/profile/{userId}/{keyName}", get_field, auth=AUTH_OPTIONAL)
    router.client("PUT", "/profile/{userId}/{keyName}", put_field)
    router.client("DELETE", "/profile/{userId}/{keyName}", delete_field)

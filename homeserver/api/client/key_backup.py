"""/room_keys/*: server-side key backups (spec v1.19 client-server "Server-side key backups")."""

from __future__ import annotations

from homeserver.errors import missing_param
from homeserver.http.router import ApiRequest, Endpoint


def _version_arg(req: ApiRequest) -> str:
    version = req.arg("version")
    if version is None:
        raise missing_param("Missing version")
    return version


def _scope(req: ApiRequest) -> tuple[str | None, str | None]:
    return req.path_params.get("roomId"), req.path_params.get("sessionId")


async def create_version(hs, req: ApiRequest):
    return await hs.key_backup.create_version(req.user_id, req.json())


async def latest_version(hs, req: ApiRequest):
    return await hs.key_backup.get_version(req.user_id, None)


async def get_version(hs, req: ApiRequest):
    return await hs.key_backup.get_version(req.user_id, req.path_params["version"])


async def put_version(hs, req: ApiRequest):
    return await hs.key_backup.update_version(req.user_id, req.path_params["version"], req.json())


async def delete_version(hs, req: ApiRequest):
    return await hs.key_backup.delete_version(req.user_id, req.path_params["version"])


async def put_keys(hs, req: ApiRequest):
    """The body is all rooms, one room's sessions, or one session's key, by path depth."""
    room_id, session_id = _scope(req)
    body = req.json()
    if session_id is not None:
        body = {"sessions": {session_id: body}}
    rooms = body.get("rooms") if room_id is None else {room_id: body}
    return await hs.key_backup.upload_keys(req.user_id, _version_arg(req), rooms)


async def get_keys(hs, req: ApiRequest):
    return await hs.key_backup.get_keys(req.user_id, _version_arg(req), *_scope(req))


async def delete_keys(hs, req: ApiRequest):
    return await hs.key_backup.delete_keys(req.user_id, _version_arg(req), *_scope(req))


ROUTES = [
    Endpoint("POST", "/room_keys/version", create_version),
    Endpoint("GET", "/room_keys/version", latest_version),
    Endpoint("GET", "/room_keys/version/{version}", get_version),
    Endpoint("PUT", "/room_keys/version/{version}", put_version),
    Endpoint("DELETE", "/room_keys/version/{version}", delete_version),
    Endpoint("PUT", "/room_keys/keys", put_keys),
    Endpoint("GET", "/room_keys/keys", get_keys),
    Endpoint("DELETE", "/room_keys/keys", delete_keys),
    Endpoint("PUT", "/room_keys/keys/{roomId}", put_keys),
    Endpoint("GET", "/room_keys/keys/{roomId}", get_keys),
    Endpoint("DELETE", "/room_keys/keys/{roomId}", delete_keys),
    Endpoint("PUT", "/room_keys/keys/{roomId}/{sessionId}", put_keys),
    Endpoint("GET", "/room_keys/keys/{roomId}/{sessionId}", get_keys),
    Endpoint("DELETE", "/room_keys/keys/{roomId}/{sessionId}", delete_keys),
]

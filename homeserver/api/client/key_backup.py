"""/room_keys/*: server-side key backups (spec v1.19 client-server "Server-side key backups")."""

from __future__ import annotations

from homeserver.errors import missing_param
from homeserver.http.router import ApiRequest, Router


def _version_arg(req: ApiRequest) -> str:
    version = req.arg("version")
    if version is None:
        raise missing_param("Missing version")
    return version


def register(router: Router, hs) -> None:
    backup = hs.key_backup

    async def create_version(req: ApiRequest):
        return await backup.create_version(req.user_id, req.json())

    async def latest_version(req: ApiRequest):
        return await backup.get_version(req.user_id, None)

    async def get_version(req: ApiRequest):
        return await backup.get_version(req.user_id, req.path_params["version"])

    async def put_version(req: ApiRequest):
        return await backup.update_version(req.user_id, req.path_params["version"], req.json())

    async def delete_version(req: ApiRequest):
        return await backup.delete_version(req.user_id, req.path_params["version"])

    def scope(req: ApiRequest) -> tuple[str | None, str | None]:
        return req.path_params.get("roomId"), req.path_params.get("sessionId")

    async def put_keys(req: ApiRequest):
        """The body is all rooms, one room's sessions, or one session's key, by path depth."""
        room_id, session_id = scope(req)
        body = req.json()
        if session_id is not None:
            body = {"sessions": {session_id: body}}
        rooms = body.get("rooms") if room_id is None else {room_id: body}
        return await backup.upload_keys(req.user_id, _version_arg(req), rooms)

    async def get_keys(req: ApiRequest):
        return await backup.get_keys(req.user_id, _version_arg(req), *scope(req))

    async def delete_keys(req: ApiRequest):
        return await backup.delete_keys(req.user_id, _version_arg(req), *scope(req))

    router.client("POST", "/room_keys/version", create_version)
    router.client("GET", "/room_keys/version", latest_version)
    router.client("GET", "/room_keys/version/{version}", get_version)
    router.client("PUT", "/room_keys/version/{version}", put_version)
    router.client("DELETE", "/room_keys/version/{version}", delete_version)
    for path in ("/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"):
        router.client("PUT", path, put_keys)
        router.client("GET", path, get_keys)
        router.client("DELETE", path, delete_keys)

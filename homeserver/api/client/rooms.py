"""Room creation, membership, upgrades, aliases and the directory.

Spec v1.19 client-server: "Creation", "Room membership", "Room upgrades",
"Room aliases", "Listing rooms".
"""

from __future__ import annotations

import logging

from federation.client import HttpResponseError
from homeserver.errors import MatrixError, bad_json, forbidden
from homeserver.events.identifiers import is_valid_server_name, is_valid_user_id
from homeserver.http.router import AUTH_NONE, AUTH_OPTIONAL, ApiRequest, Router
from homeserver.services.directory import public_rooms_body

logger = logging.getLogger(__name__)


def _reason(body: dict) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_json("reason must be a string")
    return reason


def _user_id(body: dict) -> str:
    user_id = body.get("user_id")
    if not is_valid_user_id(user_id):
        raise MatrixError(400, "M_MISSING_PARAM" if user_id is None else "M_INVALID_PARAM", "Missing or invalid user_id")
    return user_id


def register(router: Router, hs) -> None:
    rooms, directory = hs.rooms, hs.directory

    async def create_room(req: ApiRequest):
        body = req.json(allow_empty=True)
        hs.ratelimit.room_creation.check(req.user_id)
        room_id = await rooms.create_room(req.user_id, body)
        result = {"room_id": room_id}
        alias = body.get("room_alias_name")
        if alias:
            result["room_alias"] = f"#{alias}:{hs.config.server_name}"
        return result

    async def join(req: ApiRequest):
        body = req.json(allow_empty=True)
        target = req.path_params.get("roomIdOrAlias") or req.path_params["roomId"]
        servers = req.args.get("via", []) + req.args.get("server_name", [])
        room_id = await rooms.join(req.user_id, target, _reason(body), servers=servers)
        return {"room_id": room_id}

    def membership_change(membership: str, *, target_from_body: bool):
        async def handler(req: ApiRequest):
            body = req.json(allow_empty=not target_from_body)
            room_id = req.path_params["roomId"]
            target = _user_id(body) if target_from_body else req.user_id
            if membership == "invite":
                hs.ratelimit.invite(req.user_id, room_id, target)
            if membership == "unban":
                current = await hs.room_events.membership(room_id, target)
                if current != "ban":
                    raise forbidden("The user is not banned")
                await rooms.set_membership(room_id, req.user_id, target, "leave", _reason(body))
            elif membership == "kick":
                current = await hs.room_events.membership(room_id, target)
                if current not in ("join", "invite", "knock"):
                    raise forbidden("The user is not in the room")
                await rooms.set_membership(room_id, req.user_id, target, "leave", _reason(body))
            elif membership == "invite":
                current = await hs.room_events.membership(room_id, target)
                if current == "join":
                    raise forbidden("The user is already in the room")
                if current == "ban":
                    raise forbidden("The user is banned from the room")
                await rooms.set_membership(room_id, req.user_id, target, "invite", _reason(body))
            else:
                if membership == "leave" and await hs.room_events.membership(room_id, target) in (None, "leave"):
                    if await hs.room_events.room_version(room_id) is None:
                        raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
                    return {}
                await rooms.set_membership(room_id, req.user_id, target, membership, _reason(body))
            return {}
        return handler

    async def knock(req: ApiRequest):
        body = req.json(allow_empty=True)
        room_id, servers = await rooms.resolve_room(req.path_params["roomIdOrAlias"])
        servers += req.args.get("via", []) + req.args.get("server_name", [])
        await rooms.set_membership(room_id, req.user_id, req.user_id, "knock", _reason(body), servers=servers)
        return {"room_id": room_id}

    async def forget(req: ApiRequest):
        room_id = req.path_params["roomId"]
        membership = await hs.room_events.membership(room_id, req.user_id)
        if membership in ("join", "invite", "knock"):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        if membership is None:
            raise MatrixError(404, "M_NOT_FOUND", "You have never been in this room")
        await hs.event_store.forget_room(req.user_id, room_id)
        return {}

    async def joined_rooms(req: ApiRequest):
        memberships = await hs.event_store.rooms_for_user(req.user_id)
        return {"joined_rooms": sorted(r for r, (m, _, _) in memberships.items() if m == "join")}

    async def upgrade(req: ApiRequest):
        body = req.json()
        version = body.get("new_version")
        if not isinstance(version, str):
            raise MatrixError(400, "M_MISSING_PARAM", "Missing new_version")
        return {"replacement_room": await rooms.upgrade(req.user_id, req.path_params["roomId"], version)}

    # -- aliases and directory ---------------------------------------------------------------
    async def get_alias(req: ApiRequest):
        return await directory.resolve(req.path_params["roomAlias"], federation=rooms.federation)

    async def put_alias(req: ApiRequest):
        body = req.json()
        room_id = body.get("room_id")
        if not isinstance(room_id, str):
            raise MatrixError(400, "M_MISSING_PARAM", "Missing room_id")
        if await hs.room_events.membership(room_id, req.user_id) != "join":
            raise forbidden("You must be in the room to add an alias")
        await directory.create_alias(req.path_params["roomAlias"], room_id, req.user_id)
        return {}

    async def delete_alias(req: ApiRequest):
        await directory.delete_alias(req.path_params["roomAlias"], req.requester)
        return {}

    async def room_aliases(req: ApiRequest):
        return {"aliases": await directory.room_aliases(req.path_params["roomId"], req.user_id)}

    async def get_visibility(req: ApiRequest):
        return {"visibility": await directory.get_visibility(req.path_params["roomId"])}

    async def put_visibility(req: ApiRequest):
        body = req.json()
        await directory.set_visibility(req.path_params["roomId"], body.get("visibility", "public"), req.requester)
        return {}

    async def public_rooms(req: ApiRequest):
        if req.requester is None and not hs.config.allow_public_rooms_without_auth:
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        if req.method == "POST":
            limit, since, search = public_rooms_body(req.json(allow_empty=True))
        else:
            limit, since, search = req.int_arg("limit", minimum=0), req.arg("since"), None
        server = req.arg("server")
        if server is not None and not is_valid_server_name(server):
            raise MatrixError(400, "M_INVALID_PARAM", "server is not a server name")
        if server is not None and server != hs.config.server_name:
            if req.requester is None:  # as Synapse: only users make us ask other servers
                raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
            return await remote_public_rooms(server, limit, since, search, req.user_id)
        return await directory.public_rooms(limit=limit, since=since, search=search)

    async def remote_public_rooms(server: str, limit, since, search, req_user: str) -> dict:
        """Another server's directory, through federation's POST /publicRooms."""
        body: dict = {}
        if limit is not None:
            body["limit"] = limit
        if since is not None:
            body["since"] = since
        if search:
            body["filter"] = {"generic_search_term": search}
        try:
            return await hs.federation.client.post_json(server, "/_matrix/federation/v1/publicRooms", body)
        except HttpResponseError as e:  # a Matrix server answered: its refusal is no secret
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered {e.status} {e.errcode or ''}".rstrip())
        except Exception as e:  # DNS, connection, TLS, blocked address: echoed, we would be a port scanner
            logger.info("publicRooms of %s for %s failed: %s", server, req_user, e)
            raise MatrixError(502, "M_UNKNOWN", "Could not fetch that server's room directory")

    router.client("POST", "/createRoom", create_room)
    router.client("POST", "/join/{roomIdOrAlias}", join)
    router.client("POST", "/rooms/{roomId}/join", join)
    router.client("POST", "/rooms/{roomId}/invite", membership_change("invite", target_from_body=True))
    router.client("POST", "/rooms/{roomId}/leave", membership_change("leave", target_from_body=False))
    router.client("POST", "/rooms/{roomId}/kick", membership_change("kick", target_from_body=True))
    router.client("POST", "/rooms/{roomId}/ban", membership_change("ban", target_from_body=True))
    router.client("POST", "/rooms/{roomId}/unban", membership_change("unban", target_from_body=True))
    router.client("POST", "/knock/{roomIdOrAlias}", knock)
    router.client("POST", "/rooms/{roomId}/forget", forget)
    router.client("GET", "/joined_rooms", joined_rooms)
    router.client("POST", "/rooms/{roomId}/upgrade", upgrade)
    router.client("GET", "/directory/room/{roomAlias}", get_alias, auth=AUTH_NONE)
    router.client("PUT", "/directory/room/{roomAlias}", put_alias)
    router.client("DELETE", "/directory/room/{roomAlias}", delete_alias)
    router.client("GET", "/rooms/{roomId}/aliases", room_aliases)
    router.client("GET", "/directory/list/room/{roomId}", get_visibility, auth=AUTH_NONE)
    router.client("PUT", "/directory/list/room/{roomId}", put_visibility)
    router.client("GET", "/publicRooms", public_rooms, auth=AUTH_OPTIONAL)
    router.client("POST", "/publicRooms", public_rooms)

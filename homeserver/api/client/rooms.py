"""Room creation, membership, upgrades, aliases and the directory.

Spec v1.19 client-server: "Creation", "Room membership", "Room upgrades",
"Room aliases", "Listing rooms".
"""

from __future__ import annotations

from functools import partial
from typing import Awaitable, Callable

from homeserver.errors import MatrixError, bad_json
from homeserver.events.identifiers import is_valid_server_name, is_valid_user_id
from homeserver.http.router import AUTH_NONE, AUTH_OPTIONAL, ApiRequest, Endpoint
from homeserver.services.directory import public_rooms_body, public_rooms_network
from homeserver.services.rooms import RoomService


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


async def create_room(hs, req: ApiRequest):
    hs.account_moderation.check_not_suspended(req.user_id)
    body = req.json(allow_empty=True)
    hs.ratelimit.check_user(hs.ratelimit.room_creation, req.user_id)
    invites_3pid = body.get("invite_3pid") or []
    if isinstance(invites_3pid, list) and all(isinstance(i, dict) for i in invites_3pid):
        # Checked before the room exists (fields, trusted identity server); sent once it does (as Synapse).
        for entry in invites_3pid:
            hs.third_party_invites.check_request(entry)
            hs.ratelimit.check_user(hs.ratelimit.third_party_invite, req.user_id)  # rc_third_party_invite
        body = {k: v for k, v in body.items() if k != "invite_3pid"}
    room_id = await hs.rooms.create_room(req.user_id, body)
    for entry in invites_3pid:
        await hs.third_party_invites.invite(room_id, req.user_id, entry)
    result = {"room_id": room_id}
    alias = body.get("room_alias_name")
    if alias:
        result["room_alias"] = f"#{alias}:{hs.config.server_name}"
    return result


async def join(hs, req: ApiRequest):
    hs.account_moderation.check_not_suspended(req.user_id)
    body = req.json(allow_empty=True)
    target = req.path_params.get("roomIdOrAlias") or req.path_params["roomId"]
    servers = req.args.get("via", []) + req.args.get("server_name", [])
    # As Synapse: the body's other keys go into the membership event's content.
    extra = {k: v for k, v in body.items() if k not in ("reason", "third_party_signed", "membership")}
    if body.get("third_party_signed") is not None:  # the invite of a third-party identifier, proved here
        room_id, _ = await hs.rooms.resolve_room(target)
        await hs.third_party_invites.join_signed(req.user_id, room_id, body["third_party_signed"])
    room_id = await hs.rooms.join(req.user_id, target, _reason(body), extra=extra or None, servers=servers,
                                  guest=req.requester.is_guest)
    return {"room_id": room_id}


async def invite(hs, req: ApiRequest):
    """Both forms of POST /rooms/{roomId}/invite: a user ID, or a third-party identifier (``medium`` and
    ``address``, as Synapse tells them apart)."""
    hs.account_moderation.check_not_suspended(req.user_id)
    body = req.json()
    room_id = req.path_params["roomId"]
    if "medium" in body and "address" in body and "user_id" not in body:
        hs.ratelimit.check_user(hs.ratelimit.third_party_invite, req.user_id)  # rc_third_party_invite (Synapse)
        if hs.admin.shadow_banned_event_id(req.user_id) is None:
            await hs.third_party_invites.invite(room_id, req.user_id, body)
        return {}
    target = _user_id(body)
    hs.ratelimit.invite(req.user_id, room_id, target)
    if hs.admin.shadow_banned_event_id(req.user_id) is None:  # a shadow-banned user's invites go nowhere
        await hs.rooms.invite(room_id, req.user_id, target, _reason(body))
    return {}


async def leave(hs, req: ApiRequest):
    body = req.json(allow_empty=True)
    await hs.rooms.leave(req.path_params["roomId"], req.user_id, _reason(body))
    return {}


async def moderate(hs, req: ApiRequest, *, action: Callable[..., Awaitable[None]]):
    """Spec POST /rooms/{roomId}/kick, /ban and /unban: ``action`` is the rooms service's method."""
    body = req.json()
    await action(hs.rooms, req.path_params["roomId"], req.user_id, _user_id(body), _reason(body))
    return {}


async def knock(hs, req: ApiRequest):
    hs.account_moderation.check_not_suspended(req.user_id)
    body = req.json(allow_empty=True)
    room_id, servers = await hs.rooms.resolve_room(req.path_params["roomIdOrAlias"])
    servers += req.args.get("via", []) + req.args.get("server_name", [])
    await hs.rooms.set_membership(room_id, req.user_id, req.user_id, "knock", _reason(body), servers=servers)
    return {"room_id": room_id}


async def forget(hs, req: ApiRequest):
    await hs.rooms.forget(req.user_id, req.path_params["roomId"])
    return {}


async def joined_rooms(hs, req: ApiRequest):
    return {"joined_rooms": await hs.rooms.joined_rooms(req.user_id)}


async def upgrade(hs, req: ApiRequest):
    body = req.json()
    version = body.get("new_version")
    if not isinstance(version, str):
        raise MatrixError(400, "M_MISSING_PARAM", "Missing new_version")
    return {"replacement_room": await hs.rooms.upgrade(req.user_id, req.path_params["roomId"], version)}


# -- aliases and directory -------------------------------------------------------------------
async def get_alias(hs, req: ApiRequest):
    return await hs.rooms.resolve_alias(req.path_params["roomAlias"])


async def put_alias(hs, req: ApiRequest):
    body = req.json()
    room_id = body.get("room_id")
    if not isinstance(room_id, str):
        raise MatrixError(400, "M_MISSING_PARAM", "Missing room_id")
    await hs.directory.add_alias(req.path_params["roomAlias"], room_id, req.requester)
    return {}


async def delete_alias(hs, req: ApiRequest):
    alias = req.path_params["roomAlias"]
    room_id = await hs.directory.delete_alias(alias, req.requester)
    await hs.rooms.forget_alias(room_id, alias, req.user_id)
    return {}


async def room_aliases(hs, req: ApiRequest):
    return {"aliases": await hs.directory.room_aliases(req.path_params["roomId"], req.user_id)}


async def get_visibility(hs, req: ApiRequest):
    return {"visibility": await hs.directory.get_visibility(req.path_params["roomId"])}


async def put_visibility(hs, req: ApiRequest):
    """PUT /directory/list/room/{roomId}."""
    body = req.json()
    await hs.directory.set_visibility(req.path_params["roomId"], body.get("visibility", "public"), req.requester)
    return {}


async def put_appservice_visibility(hs, req: ApiRequest):
    """Spec PUT /directory/list/appservice/{networkId}/{roomId} (application service API, "Application service
    room directories"); Synapse's DELETE of the same path takes the room off the list."""
    visibility = req.json().get("visibility", "public") if req.method == "PUT" else "private"
    await hs.directory.set_appservice_visibility(req.path_params["networkId"], req.path_params["roomId"],
                                                 visibility, req.requester)
    return {}


async def public_rooms(hs, req: ApiRequest):
    if req.requester is None and not hs.config.allow_public_rooms_without_auth:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    if req.method == "POST":
        body = req.json(allow_empty=True)
        limit, since, search = public_rooms_body(body)
        network = public_rooms_network(body.get("include_all_networks"), body.get("third_party_instance_id"))
    else:  # as Synapse, GET takes the networks as query parameters too
        limit, since, search = req.int_arg("limit", minimum=0), req.arg("since"), None
        network = public_rooms_network(req.bool_arg("include_all_networks"), req.arg("third_party_instance_id"))
    server = req.arg("server")
    if server is not None and not is_valid_server_name(server):
        raise MatrixError(400, "M_INVALID_PARAM", "server is not a server name")
    if server is not None and server != hs.config.server_name:
        if req.requester is None:  # as Synapse: only users make us ask other servers
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        return await hs.rooms.remote_public_rooms(server, limit, since, search, req.user_id)
    return await hs.directory.public_rooms(limit=limit, since=since, search=search, network=network)


ROUTES = [
    Endpoint("POST", "/createRoom", create_room),
    Endpoint("POST", "/join/{roomIdOrAlias}", join),
    Endpoint("POST", "/rooms/{roomId}/join", join),
    Endpoint("POST", "/rooms/{roomId}/invite", invite),
    Endpoint("POST", "/rooms/{roomId}/leave", leave),
    Endpoint("POST", "/rooms/{roomId}/kick", partial(moderate, action=RoomService.kick)),
    Endpoint("POST", "/rooms/{roomId}/ban", partial(moderate, action=RoomService.ban)),
    Endpoint("POST", "/rooms/{roomId}/unban", partial(moderate, action=RoomService.unban)),
    Endpoint("POST", "/knock/{roomIdOrAlias}", knock),
    Endpoint("POST", "/rooms/{roomId}/forget", forget),
    Endpoint("GET", "/joined_rooms", joined_rooms),
    Endpoint("POST", "/rooms/{roomId}/upgrade", upgrade),
    Endpoint("GET", "/directory/room/{roomAlias}", get_alias, auth=AUTH_NONE),
    Endpoint("PUT", "/directory/room/{roomAlias}", put_alias),
    Endpoint("DELETE", "/directory/room/{roomAlias}", delete_alias),
    Endpoint("GET", "/rooms/{roomId}/aliases", room_aliases),
    Endpoint("GET", "/directory/list/room/{roomId}", get_visibility, auth=AUTH_NONE),
    Endpoint("PUT", "/directory/list/room/{roomId}", put_visibility),
    Endpoint("PUT", "/directory/list/appservice/{networkId}/{roomId}", put_appservice_visibility),
    Endpoint("DELETE", "/directory/list/appservice/{networkId}/{roomId}", put_appservice_visibility),
    Endpoint("GET", "/publicRooms", public_rooms, auth=AUTH_OPTIONAL),
    Endpoint("POST", "/publicRooms", public_rooms),
]

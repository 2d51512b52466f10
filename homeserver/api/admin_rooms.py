"""Synapse's room admin API (``docs/admin_api/rooms.md``), server admins only (``AUTH_ADMIN``), as synapse-admin
calls it: list and search, details, members, state, messages, block, delete (v1 at once, v2 with a delete id and
its status) with purge, make room admin, forward extremities, purge history (and its status). Every change goes to the audit trail."""

from __future__ import annotations

from functools import partial

from homeserver.api.admin import V1, V2, admin_route, audited, bool_arg, page_args
from homeserver.errors import MatrixError, invalid_param
from homeserver.http.router import ApiRequest


def _room(req: ApiRequest) -> str:
    return req.path_params["roomId"]


async def list_rooms(hs, req: ApiRequest):
    """GET /_synapse/admin/v1/rooms: from, limit, order_by, dir, search_term, public_rooms, empty_rooms."""
    offset, limit, backwards = page_args(req)
    return await hs.admin.list_rooms(search_term=req.arg("search_term"), order_by=req.arg("order_by", "name"),
                                     backwards=backwards, offset=offset, limit=limit,
                                     public=bool_arg(req, "public_rooms", None),
                                     empty=bool_arg(req, "empty_rooms", None))


async def room_info(hs, req: ApiRequest, what: str):
    """The reads about one room by id: details, members, block status, deletions."""
    return await getattr(hs.admin, what)(_room(req))


async def state(hs, req: ApiRequest):
    return await hs.admin.state(_room(req), req.arg("type"))


async def messages(hs, req: ApiRequest):
    _offset, _limit, backwards = page_args(req)
    return await hs.admin.messages(_room(req), from_token=req.arg("from"), backwards=backwards,
                                   limit=min(req.int_arg("limit", 10, minimum=0), 1000))


async def put_block(hs, req: ApiRequest):
    block = req.json().get("block")
    if not isinstance(block, bool):
        raise invalid_param("block must be a boolean")
    result = await hs.admin.block_room(_room(req), req.user_id, block)
    await audited(hs, req, "block_room" if block else "unblock_room", _room(req))
    return result


async def delete_room(hs, req: ApiRequest, version: int):
    """DELETE /_synapse/admin/v1/rooms/{roomId} answers what was done; v2 the delete id, whose status is at
    .../delete_status. Both finish before answering."""
    body = req.json(allow_empty=True)
    block, purge = body.get("block", False), body.get("purge", True)
    if not isinstance(block, bool) or not isinstance(purge, bool):
        raise invalid_param("block and purge must be booleans")
    result = await hs.admin.delete_room(req.user_id, _room(req), block=block, purge=purge)
    await audited(hs, req, "delete_room", _room(req), block=block, purge=purge, kicked=len(result["kicked_users"]))
    if version == 2:
        return {"delete_id": result["delete_id"]}
    return {k: v for k, v in result.items() if k != "delete_id"}


async def delete_status(hs, req: ApiRequest):
    (found,) = await hs.admin.delete_status(delete_id=req.path_params["deleteId"])
    return {k: v for k, v in found.items() if k != "delete_id"}


async def make_room_admin(hs, req: ApiRequest):
    room_id = (await hs.rooms.resolve_room(req.path_params["roomIdOrAlias"]))[0]
    user_id = req.json(allow_empty=True).get("user_id", req.user_id)
    if not isinstance(user_id, str):
        raise invalid_param("user_id must be a string")
    await hs.admin.make_room_admin(room_id, user_id)
    await audited(hs, req, "make_room_admin", room_id, user_id=user_id)
    return {}


async def forward_extremities(hs, req: ApiRequest):
    return await hs.admin.forward_extremities((await hs.rooms.resolve_room(req.path_params["roomIdOrAlias"]))[0])


async def purge_history(hs, req: ApiRequest):
    """POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}] (``docs/admin_api/purge_history_api.md``):
    the room's non-state events before the event, or sent before ``purge_up_to_ts``, purged in the
    background; remote users' events only unless ``delete_local_events``."""
    body = req.json(allow_empty=True)
    up_to_ts = body.get("purge_up_to_ts")
    if up_to_ts is not None and (not isinstance(up_to_ts, int) or isinstance(up_to_ts, bool)):
        raise MatrixError(400, "M_INVALID_PARAM", "purge_up_to_ts must be an int")
    event_id = req.path_params.get("eventId") or body.get("purge_up_to_event_id")
    if event_id is not None and not isinstance(event_id, str):
        raise invalid_param("purge_up_to_event_id must be a string")
    delete_local = body.get("delete_local_events", False)
    if not isinstance(delete_local, bool):
        raise invalid_param("delete_local_events must be a boolean")
    purge_id = await hs.retention.start_purge(_room(req), event_id=event_id, up_to_ts=up_to_ts,
                                              delete_local_events=delete_local)
    await audited(hs, req, "purge_history", _room(req), purge_id=purge_id, event_id=event_id,
                  purge_up_to_ts=up_to_ts, delete_local_events=delete_local)
    return {"purge_id": purge_id}


async def purge_history_status(hs, req: ApiRequest):
    return hs.retention.purge_status(req.path_params["purgeId"])


# The reads about one room by id: GET path -> the AdminService method answering it.
ROOM_READS = {V1 + "/rooms/{roomId}": "room_details", V1 + "/rooms/{roomId}/members": "members",
              V1 + "/rooms/{roomId}/block": "room_block", V2 + "/rooms/{roomId}/delete_status": "deletions_of_room"}

ROUTES = [
    *(admin_route("GET", path, partial(room_info, what=what)) for path, what in ROOM_READS.items()),
    *(admin_route("DELETE", prefix + "/rooms/{roomId}", partial(delete_room, version=version))
      for version, prefix in ((1, V1), (2, V2))),
    admin_route("GET", V1 + "/rooms", list_rooms),
    admin_route("GET", V1 + "/rooms/{roomId}/state", state),
    admin_route("GET", V1 + "/rooms/{roomId}/messages", messages),
    admin_route("PUT", V1 + "/rooms/{roomId}/block", put_block),
    admin_route("GET", V2 + "/rooms/delete_status/{deleteId}", delete_status),
    admin_route("POST", V1 + "/rooms/{roomIdOrAlias}/make_room_admin", make_room_admin),
    admin_route("GET", V1 + "/rooms/{roomIdOrAlias}/forward_extremities", forward_extremities),
    *(admin_route("POST", V1 + path, purge_history)
      for path in ("/purge_history/{roomId}", "/purge_history/{roomId}/{eventId}")),
    admin_route("GET", V1 + "/purge_history_status/{purgeId}", purge_history_status),
]

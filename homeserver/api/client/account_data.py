"""Account data and room tags (spec v1.19 client-server "Client Config", "Room Tagging")."""

from __future__ import annotations

from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.http.router import ApiRequest, Endpoint

# Spec "Client Config", server behaviour: types the server manages are refused with 405 M_BAD_JSON.
SERVER_MANAGED_TYPES = {
    "m.fully_read": "Cannot set m.fully_read through this API. Use /rooms/{roomId}/read_markers",
    "m.push_rules": "Cannot set m.push_rules through this API. Use /pushrules",
}
MAX_TAG_BYTES = 255


def _own_user(req: ApiRequest) -> str:
    if req.path_params["userId"] != req.user_id:
        raise forbidden("Cannot access account data of other users.")
    return req.user_id


def path_room_id(req: ApiRequest) -> str:
    """The ``roomId`` path parameter, 400 M_INVALID_PARAM unless it looks like a room ID."""
    room_id = req.path_params["roomId"]
    if not room_id.startswith("!") or len(room_id) < 2:
        raise invalid_param(f"{room_id} is not a valid room ID")
    return room_id


def _settable(data_type: str) -> str:
    if data_type in SERVER_MANAGED_TYPES:
        raise MatrixError(405, "M_BAD_JSON", SERVER_MANAGED_TYPES[data_type])
    return data_type


def _tag(req: ApiRequest) -> str:
    tag = req.path_params["tag"]
    if len(tag.encode("utf-8")) > MAX_TAG_BYTES:
        raise invalid_param(f"Tag names must not exceed {MAX_TAG_BYTES} bytes")
    return tag


def _tag_content(req: ApiRequest) -> dict:
    body = req.json(allow_empty=True)
    if "order" in body:
        order = body["order"]
        if not isinstance(order, (int, float)) or isinstance(order, bool) or not 0 <= order <= 1:
            raise bad_json("order must be a number between 0 and 1")
    return body


async def put_global(hs, req: ApiRequest):
    user_id = _own_user(req)
    data_type = _settable(req.path_params["type"])
    await hs.account_data.put(user_id, None, data_type, req.json())
    return {}


async def get_global(hs, req: ApiRequest):
    content = await hs.account_data.get(_own_user(req), None, req.path_params["type"])
    if content is None:
        raise not_found("Account data not found.")
    return content


async def put_room(hs, req: ApiRequest):
    user_id, room_id = _own_user(req), path_room_id(req)
    data_type = _settable(req.path_params["type"])
    await hs.account_data.put(user_id, room_id, data_type, req.json())
    return {}


async def get_room(hs, req: ApiRequest):
    user_id, room_id = _own_user(req), path_room_id(req)
    content = await hs.account_data.get(user_id, room_id, req.path_params["type"])
    if content is None:
        raise not_found("Room account data not found.")
    return content


async def get_tags(hs, req: ApiRequest):
    return {"tags": await hs.account_data.get_tags(_own_user(req), path_room_id(req))}


async def put_tag(hs, req: ApiRequest):
    user_id, room_id, tag = _own_user(req), path_room_id(req), _tag(req)
    await hs.account_data.set_tag(user_id, room_id, tag, _tag_content(req))
    return {}


async def delete_tag(hs, req: ApiRequest):
    await hs.account_data.set_tag(_own_user(req), path_room_id(req), _tag(req), None)
    return {}


ROUTES = [
    Endpoint("PUT", "/user/{userId}/account_data/{type}", put_global),
    Endpoint("GET", "/user/{userId}/account_data/{type}", get_global),
    Endpoint("PUT", "/user/{userId}/rooms/{roomId}/account_data/{type}", put_room),
    Endpoint("GET", "/user/{userId}/rooms/{roomId}/account_data/{type}", get_room),
    Endpoint("GET", "/user/{userId}/rooms/{roomId}/tags", get_tags),
    Endpoint("PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}", put_tag),
    Endpoint("DELETE", "/user/{userId}/rooms/{roomId}/tags/{tag}", delete_tag),
]

"""Receipts, read markers and typing (spec v1.19 client-server "Receipts", "Fully read markers",
"Typing Notifications")."""

from __future__ import annotations

from homeserver.api.client.account_data import path_room_id as _room_id
from homeserver.errors import bad_json, forbidden, invalid_param
from homeserver.http.router import ApiRequest, Endpoint
from homeserver.services.receipts import FULLY_READ, RECEIPT_TYPES
from homeserver.services.typing import DEFAULT_TIMEOUT_MS


def _event_id(value) -> bool:
    return isinstance(value, str) and value.startswith("$") and len(value) > 1


async def post_receipt(hs, req: ApiRequest):
    room_id = _room_id(req)
    receipt_type, event_id = req.path_params["receiptType"], req.path_params["eventId"]
    if not _event_id(event_id):
        raise invalid_param(f"{event_id} is not a valid event ID")
    if receipt_type not in RECEIPT_TYPES:
        raise invalid_param(f"Receipt type must be one of {', '.join(RECEIPT_TYPES)}")
    body = req.json(allow_empty=True)
    thread_id = body.get("thread_id")
    if "thread_id" in body:
        if not isinstance(thread_id, str) or not thread_id:
            raise invalid_param("thread_id field must be a non-empty string")
        if receipt_type == FULLY_READ:
            raise invalid_param(f"thread_id is not compatible with {FULLY_READ}")
    await hs.receipts.send_receipt(room_id, req.user_id, receipt_type, event_id, thread_id)
    return {}


async def post_read_markers(hs, req: ApiRequest):
    room_id = _room_id(req)
    body = req.json()
    markers = {}
    for receipt_type in RECEIPT_TYPES:
        event_id = body.get(receipt_type)
        if event_id is None:
            continue
        if not _event_id(event_id):
            raise bad_json(f"{receipt_type} must be an event ID")
        markers[receipt_type] = event_id
    await hs.receipts.set_read_markers(room_id, req.user_id, markers)
    return {}


async def put_typing(hs, req: ApiRequest):
    room_id = _room_id(req)
    if req.path_params["userId"] != req.user_id:
        raise forbidden("Cannot set another user's typing state")
    body = req.json()
    is_typing = body.get("typing")
    if not isinstance(is_typing, bool):
        raise bad_json("typing must be a boolean")
    timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
    if is_typing and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
        raise bad_json("timeout must be a non-negative integer")
    await hs.typing.set_typing(room_id, req.user_id, is_typing, timeout)
    return {}


ROUTES = [
    Endpoint("POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", post_receipt),
    Endpoint("POST", "/rooms/{roomId}/read_markers", post_read_markers),
    Endpoint("PUT", "/rooms/{roomId}/typing/{userId}", put_typing),
]

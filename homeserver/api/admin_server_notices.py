"""Synapse's server notices admin API (``docs/admin_api/server_notices.md``), server admins only:
``POST /_synapse/admin/v1/send_server_notice`` and, idempotent per transaction id,
``PUT /_synapse/admin/v1/send_server_notice/{txnId}``. Each notice sent goes to the audit trail."""

from __future__ import annotations

from homeserver.api.admin import V1, admin_route, audited
from homeserver.errors import MatrixError
from homeserver.http.router import ApiRequest


async def send_server_notice(hs, req: ApiRequest):
    body = req.json()
    for key in ("user_id", "content"):
        if key not in body:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing params: ['{key}']")
    user_id, content = body["user_id"], body["content"]
    event_type, state_key = body.get("type", "m.room.message"), body.get("state_key")
    if not isinstance(user_id, str) or not isinstance(content, dict) or not isinstance(event_type, str) \
            or (state_key is not None and not isinstance(state_key, str)):
        raise MatrixError(400, "M_BAD_JSON", "user_id, type and state_key must be strings, content an object")
    txn_id = req.path_params.get("txnId")
    txn = None if txn_id is None else (req.user_id, req.requester.device_id or "", "server_notice:" + txn_id)
    event_id = await hs.server_notices.send(user_id, event_type, content, state_key, txn)
    await audited(hs, req, "send_server_notice", user_id, event_id=event_id, type=event_type)
    return {"event_id": event_id}


ROUTES = [
    admin_route("POST", V1 + "/send_server_notice", send_server_notice),
    admin_route("PUT", V1 + "/send_server_notice/{txnId}", send_server_notice),
]

"""PUT /sendToDevice/{eventType}/{txnId} (spec v1.19 client-server "Send-to-Device messaging")."""

from __future__ import annotations

from homeserver.http.router import ApiRequest, Endpoint


async def send_to_device(hs, req: ApiRequest):
    body = req.json()
    hs.ratelimit.check_user(hs.ratelimit.to_device, req.user_id)
    await hs.to_device.send(req.user_id, req.requester.device_id, req.path_params["eventType"],
                            req.path_params["txnId"], body.get("messages"))
    return {}


ROUTES = [
    Endpoint("PUT", "/sendToDevice/{eventType}/{txnId}", send_to_device),
]

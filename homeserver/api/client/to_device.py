"""PUT /sendToDevice/{eventType}/{txnId} (spec v1.19 client-server "Send-to-Device messaging")."""

from __future__ import annotations

from homeserver.http.router import ApiRequest, Router


def register(router: Router, hs) -> None:
    async def send_to_device(req: ApiRequest):
        body = req.json()
        hs.ratelimit.to_device.check(req.user_id)
        await hs.to_device.send(req.user_id, req.requester.device_id, req.path_params["eventType"],
                                req.path_params["txnId"], body.get("messages"))
        return {}

    router.client("PUT", "/sendToDevice/{eventType}/{txnId}", send_to_device)

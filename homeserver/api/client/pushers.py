"""Pushers (spec v1.19 client-server "Push Notifications", "Pushers": GET /pushers, POST /pushers/set)."""

from __future__ import annotations

from homeserver.http.router import ApiRequest, Endpoint


async def get_pushers(hs, req: ApiRequest):
    return {"pushers": await hs.pushers.list(req.user_id)}


async def set_pusher(hs, req: ApiRequest):
    await hs.pushers.set(req.user_id, req.requester.device_id, req.json(), int(hs.reactor.seconds() * 1000))
    return {}


ROUTES = [
    Endpoint("GET", "/pushers", get_pushers),
    Endpoint("POST", "/pushers/set", set_pusher),
]

"""The deprecated event stream and initial syncs (spec v1.19 client-server "Syncing", deprecated forms):
GET /events, GET /events/{eventId}, GET /initialSync, GET /rooms/{roomId}/initialSync."""

from __future__ import annotations

from homeserver.api.client.sync import MAX_TIMEOUT_MS
from homeserver.http.router import ApiRequest, Endpoint
from homeserver.services.legacy_events import STREAM_LIMIT

DEFAULT_LIMIT = 10


async def events(hs, req: ApiRequest):
    """A client reading the event stream is online, as a syncing one (as Synapse)."""
    await hs.presence.user_syncing(req.user_id, "online")
    timeout = min(req.int_arg("timeout", 30_000, minimum=0), MAX_TIMEOUT_MS)
    limit = min(req.int_arg("limit", STREAM_LIMIT, minimum=0), STREAM_LIMIT)
    return await hs.legacy_events.events(req.requester, req.arg("from"), timeout, req.arg("room_id"), limit)


async def event(hs, req: ApiRequest):
    return await hs.legacy_events.event(req.requester, req.path_params["eventId"])


async def initial_sync(hs, req: ApiRequest):
    await hs.presence.user_syncing(req.user_id, "online")
    return await hs.legacy_events.initial_sync(req.requester, req.int_arg("limit", DEFAULT_LIMIT, minimum=0),
                                               req.bool_arg("archived"))


async def room_initial_sync(hs, req: ApiRequest):
    return await hs.legacy_events.room_initial_sync(req.requester, req.path_params["roomId"],
                                                    req.int_arg("limit", DEFAULT_LIMIT, minimum=0))


ROUTES = [
    Endpoint("GET", "/events", events),
    Endpoint("GET", "/events/{eventId}", event),
    Endpoint("GET", "/initialSync", initial_sync),
    Endpoint("GET", "/rooms/{roomId}/initialSync", room_initial_sync),
]

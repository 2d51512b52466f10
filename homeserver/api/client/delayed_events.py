"""Delayed events (MSC4140, unstable prefix ``org.matrix.msc4140``), with Synapse's paths and shapes.

``?org.matrix.msc4140.delay=MS`` on PUT /rooms/{roomId}/send/... and /state/... schedules the event
instead of sending it (see :func:`schedule_if_delayed`); the endpoints below list the user's
scheduled events and ``restart``, ``cancel`` or ``send`` one of them.
"""

from __future__ import annotations

from functools import partial

from homeserver.errors import invalid_param, missing_param
from homeserver.http.router import AUTH_OPTIONAL, ApiRequest, Endpoint

UNSTABLE = ("/_matrix/client/unstable/org.matrix.msc4140",)
DELAY_ARG = "org.matrix.msc4140.delay"
ACTIONS = ("restart", "cancel", "send")


async def schedule_if_delayed(hs, req: ApiRequest, event_type: str, content: dict, state_key: str | None,
                              txn: tuple | None = None) -> dict | None:
    """The ``{"delay_id"}`` answer when the request asks for a delay (the event is then scheduled, not
    sent; once per transaction ID ``txn``); None when it does not."""
    delay = req.int_arg(DELAY_ARG, minimum=0)
    if delay is None:
        return None
    hs.ratelimit.event(req.user_id)
    delay_id = await hs.delayed_events.schedule(req.user_id, req.requester.device_id, req.path_params["roomId"],
                                                event_type, content, state_key, delay, txn)
    return {"delay_id": delay_id}


async def list_delayed(hs, req: ApiRequest):
    """GET /delayed_events: the requester's scheduled events, soonest first."""
    hs.ratelimit.delayed_event_mgmt.check(req.user_id)
    return {"delayed_events": await hs.delayed_events.pending(req.user_id)}


async def update_delayed(hs, req: ApiRequest, action: str | None = None):
    """POST /delayed_events/{delay_id} with ``{"action": ...}``, or /delayed_events/{delay_id}/{action}.

    With an access token, only the requester's own delayed events are found (404 otherwise); without one,
    the delay ID itself is the capability, as on Synapse."""
    if action is None:
        action = req.json().get("action")
        if action is None:
            raise missing_param("'action' is missing")
        if action not in ACTIONS:
            raise invalid_param("'action' is not one of 'restart', 'cancel', 'send'")
    owner = req.requester.user_id if req.requester is not None else None
    hs.ratelimit.delayed_event_mgmt.check(owner or req.client_ip)
    delay_id = req.path_params["delayId"]
    if action == "restart":
        await hs.delayed_events.restart(delay_id, owner)
    elif action == "cancel":
        await hs.delayed_events.cancel(delay_id, owner)
    else:
        await hs.delayed_events.send_now(delay_id, owner)
    return {}


ROUTES = [
    Endpoint("GET", "/delayed_events", list_delayed, prefixes=UNSTABLE),
    Endpoint("POST", "/delayed_events/{delayId}", update_delayed, auth=AUTH_OPTIONAL, prefixes=UNSTABLE),
    *[Endpoint("POST", f"/delayed_events/{{delayId}}/{action}", partial(update_delayed, action=action),
               auth=AUTH_OPTIONAL, prefixes=UNSTABLE) for action in ACTIONS],
]

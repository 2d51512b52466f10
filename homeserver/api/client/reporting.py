"""Reporting content (spec v1.19 client-server "Reporting content"): events, rooms (v1.13) and users (v1.14),
to the server's admins (services/reports.py); ``rc_reports`` limits them per account (429 beyond)."""

from __future__ import annotations

from homeserver.errors import MatrixError
from homeserver.http.router import ApiRequest, Endpoint


def _reason(body: dict, required: bool) -> str | None:
    if required and "reason" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter: reason")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MatrixError(400, "M_BAD_JSON", "Param 'reason' must be a string")
    return reason


async def report_event(hs, req: ApiRequest):
    """POST /rooms/{roomId}/report/{eventId}: ``reason`` optional; ``score`` (removed in v1.18, still sent by
    older clients) kept when it is an integer, as Synapse does."""
    hs.ratelimit.check_user(hs.ratelimit.reports, req.user_id)
    body = req.json()
    reason = _reason(body, required=False)
    score = body.get("score")
    if score is not None and (not isinstance(score, int) or isinstance(score, bool) or not -2 ** 63 <= score < 2 ** 63):
        raise MatrixError(400, "M_BAD_JSON", "Param 'score' must be an integer")
    await hs.reports.report_event(req.user_id, req.client_ip, req.path_params["roomId"], req.path_params["eventId"],
                                  reason, score)
    return {}


async def report_room(hs, req: ApiRequest):
    """POST /rooms/{roomId}/report (v1.13): ``reason`` required, may be blank."""
    hs.ratelimit.check_user(hs.ratelimit.reports, req.user_id)
    await hs.reports.report_room(req.user_id, req.client_ip, req.path_params["roomId"], _reason(req.json(), True))
    return {}


async def report_user(hs, req: ApiRequest):
    """POST /users/{userId}/report (v1.14): ``reason`` required, may be blank."""
    hs.ratelimit.check_user(hs.ratelimit.reports, req.user_id)
    await hs.reports.report_user(req.user_id, req.client_ip, req.path_params["userId"], _reason(req.json(), True))
    return {}


ROUTES = [
    Endpoint("POST", "/rooms/{roomId}/report/{eventId}", report_event),
    Endpoint("POST", "/rooms/{roomId}/report", report_room),
    Endpoint("POST", "/users/{userId}/report", report_user),
]

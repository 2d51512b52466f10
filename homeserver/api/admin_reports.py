"""Reports for the server's admins (``AUTH_ADMIN``): Synapse's ``docs/admin_api/event_reports.md`` (list,
details, delete) and ``room_reports.md`` (list, details); user reports, which Synapse's admin API lacks,
at ``/_hexagone/admin/v1/user_reports`` in the event reports' shape. Deletions go to the audit trail."""

from __future__ import annotations

from functools import partial

from homeserver.api.admin import V1, admin_route, audited
from homeserver.api.hexagone_admin import PREFIX as HEXAGONE_V1
from homeserver.errors import MatrixError, invalid_param
from homeserver.http.router import ApiRequest
from homeserver.services.reports import EVENT, USER


def _report_id(req: ApiRequest) -> int:
    raw = req.path_params["reportId"]
    if not raw.isdigit() or len(raw) > 18:
        raise invalid_param("The report_id parameter must be a string representing a positive integer.")
    return int(raw)


def _listing(req: ApiRequest) -> tuple[int, int, bool]:
    """``from`` (offset), ``limit`` and ``dir`` (newest first unless ``f``), Synapse's event report paging."""
    direction = req.arg("dir", "b")
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "Unknown direction: " + direction)
    return req.int_arg("from", 0, minimum=0), req.int_arg("limit", 100, minimum=0), direction == "b"


async def event_reports(hs, req: ApiRequest):
    offset, limit, newest_first = _listing(req)
    return await hs.reports.event_reports(offset=offset, limit=limit, newest_first=newest_first,
                                          room_id=req.arg("room_id"), user_id=req.arg("user_id"),
                                          sender=req.arg("event_sender_user_id") or req.arg("sender_user_id"))


async def event_report(hs, req: ApiRequest):
    return await hs.reports.event_report(_report_id(req))


async def delete_report(hs, req: ApiRequest, kind: str):
    report_id = _report_id(req)
    await hs.reports.delete(kind, report_id)
    await audited(hs, req, f"delete_{kind}_report", str(report_id))
    return {}


async def room_reports(hs, req: ApiRequest):
    return await hs.reports.room_reports(before_id=req.int_arg("from", None, minimum=0),
                                         limit=req.int_arg("limit", 100, minimum=0),
                                         room_id=req.arg("room_id"), user_id=req.arg("user_id"))


async def room_report(hs, req: ApiRequest):
    return await hs.reports.room_report(_report_id(req))


async def user_reports(hs, req: ApiRequest):
    offset, limit, newest_first = _listing(req)
    return await hs.reports.user_reports(offset=offset, limit=limit, newest_first=newest_first,
                                         user_id=req.arg("user_id"), target=req.arg("target_user_id"))


ROUTES = [
    admin_route("GET", V1 + "/event_reports", event_reports),
    admin_route("GET", V1 + "/event_reports/{reportId}", event_report),
    admin_route("DELETE", V1 + "/event_reports/{reportId}", partial(delete_report, kind=EVENT)),
    admin_route("GET", V1 + "/room_reports", room_reports),
    admin_route("GET", V1 + "/room_reports/{reportId}", room_report),
    admin_route("GET", HEXAGONE_V1 + "/user_reports", user_reports),
    admin_route("DELETE", HEXAGONE_V1 + "/user_reports/{reportId}", partial(delete_report, kind=USER)),
]

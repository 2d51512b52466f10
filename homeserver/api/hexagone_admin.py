"""Hexagone's own admin API (server admins only: ``AUTH_ADMIN``), beside Synapse's: configuration reload and
the audit trail.

``POST /_hexagone/admin/v1/reload``: read homeserver.yaml again and apply what can change live
(``services/config_reload.py``), as SIGHUP does; a wrong file changes nothing and is answered 400 with the key
and reason. ``GET /_hexagone/admin/v1/audit``: security events, newest first, filtered by ``kind``, ``actor``,
``target``, ``origin``, ``since``/``until`` (ms), paginated by ``from`` (the ``next_token`` of the page before)
and ``limit``. ``GET /_hexagone/admin/v1/audit/export``: the same filters, as JSON lines.
``GET /_hexagone/admin/v1/traffic?since=``: traffic and federation counts per interval, for the console's charts.
"""

from __future__ import annotations

import json

from homeserver.api.admin import admin_route
from homeserver.bodies import RawBody
from homeserver.config import ConfigError
from homeserver.errors import MatrixError
from homeserver.http.router import ApiRequest
from homeserver.services.audit import AuditQuery

PREFIX = "/_hexagone/admin/v1"
MAX_PAGE = 1000
EXPORT_PAGE = 1000
MAX_EXPORT = 1_000_000


async def reload_config(hs, req: ApiRequest):
    try:
        applied = await hs.config_reload.reload(req.user_id)
    except ConfigError as e:
        raise MatrixError(400, "M_INVALID_PARAM", f"Configuration not reloaded: {e}") from None
    return {"reloaded": applied}


def _query(req: ApiRequest, limit: int) -> AuditQuery:
    return AuditQuery(kind=req.arg("kind"), actor=req.arg("actor"), target=req.arg("target"),
                      origin=req.arg("origin"), since_ts=req.int_arg("since"), until_ts=req.int_arg("until"),
                      before_id=req.int_arg("from", minimum=1), limit=limit)


async def audit(hs, req: ApiRequest):
    limit = min(req.int_arg("limit", 100, minimum=1), MAX_PAGE)
    events = await hs.audit.query(_query(req, limit + 1))  # one more: is there a next page?
    body = {"events": events[:limit]}
    if len(events) > limit:
        body["next_token"] = str(events[limit - 1]["id"])
    return body


async def audit_export(hs, req: ApiRequest):
    query, lines = _query(req, EXPORT_PAGE), []
    while len(lines) < MAX_EXPORT:
        page = await hs.audit.query(query)
        lines.extend(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n" for e in page)
        if len(page) < EXPORT_PAGE:
            break
        query = AuditQuery(**{**query.__dict__, "before_id": page[-1]["id"]})
    return RawBody("".join(lines).encode("utf-8"), b"application/x-ndjson; charset=utf-8")


async def traffic(hs, req: ApiRequest):
    """Requests, local and remote events and federation refusals per interval (``metrics.TrafficHistory``)."""
    return hs.traffic.history(req.int_arg("since", 0))


ROUTES = [
    admin_route("GET", PREFIX + "/traffic", traffic),
    admin_route("POST", PREFIX + "/reload", reload_config),
    admin_route("GET", PREFIX + "/audit", audit),
    admin_route("GET", PREFIX + "/audit/export", audit_export),
]

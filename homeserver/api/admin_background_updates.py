"""Synapse's background updates admin API (``docs/usage/administration/admin_api/background_updates.md``),
server admins only, over Hexagone's periodic jobs (``services/background.py``: message retention purges,
media retention): pause and resume them, their status, run one now. Changes go to the audit trail."""

from __future__ import annotations

from homeserver.api.admin import V1, admin_route, audited
from homeserver.errors import MatrixError
from homeserver.http.router import ApiRequest

PREFIX = V1 + "/background_updates"


def _param(body: dict, key: str, kind: type):
    if key not in body:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing params: ['{key}']")
    if not isinstance(body[key], kind):
        raise MatrixError(400, "M_INVALID_PARAM", f"{key} must be a {kind.__name__}")
    return body[key]


async def get_enabled(hs, req: ApiRequest):
    return {"enabled": hs.background_jobs.enabled}


async def set_enabled(hs, req: ApiRequest):
    enabled = _param(req.json(), "enabled", bool)
    hs.background_jobs.set_enabled(enabled)
    await audited(hs, req, "background_updates_enabled" if enabled else "background_updates_disabled", None)
    return {"enabled": enabled}


async def status(hs, req: ApiRequest):
    return hs.background_jobs.status()


async def start_job(hs, req: ApiRequest):
    name = _param(req.json(), "job_name", str)
    hs.background_jobs.start_job(name)
    await audited(hs, req, "start_background_job", None, job_name=name)
    return {}


ROUTES = [
    admin_route("GET", PREFIX + "/enabled", get_enabled),
    admin_route("POST", PREFIX + "/enabled", set_enabled),
    admin_route("GET", PREFIX + "/status", status),
    admin_route("POST", PREFIX + "/start_job", start_job),
]

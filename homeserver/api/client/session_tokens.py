"""POST /refresh and POST /login/get_token.

Spec v1.19 client-server: "Refreshing access tokens" (added in v1.3) and "Login" (``/login/get_token``,
added in v1.7 from MSC3882; Synapse's ``login_via_existing_session`` configuration).
"""

from __future__ import annotations

from homeserver.errors import MatrixError
from homeserver.http.router import AUTH_NONE, ApiRequest, Endpoint


async def refresh(hs, req: ApiRequest):
    """POST /refresh: the refresh token authenticates the request, not an access token."""
    body = req.json()
    if "refresh_token" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing refresh_token")
    return await hs.session_tokens.refresh(body["refresh_token"])


async def get_login_token(hs, req: ApiRequest):
    """POST /_matrix/client/v1/login/get_token: 404 M_UNRECOGNIZED unless ``login_via_existing_session``
    is enabled; behind user-interactive auth unless ``require_ui_auth`` is false."""
    if not hs.config.login_via_existing_session_enabled:
        raise MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
    body = req.json(allow_empty=True)
    if hs.config.login_via_existing_session_require_ui_auth:
        await hs.auth.check_uia(body, await hs.sso.uia_flows(req.user_id), fingerprint=f"get_login_token:{req.user_id}",
                                requester=req.requester)
    return await hs.session_tokens.issue_login_token(req.user_id)


ROUTES = [
    Endpoint("POST", "/refresh", refresh, auth=AUTH_NONE),
    Endpoint("POST", "/login/get_token", get_login_token, prefixes=("/_matrix/client/v1",)),
]

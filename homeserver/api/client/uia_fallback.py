"""The fallback pages of user-interactive auth (spec v1.19 client-server "Fallback" of "User-Interactive
Authentication API"), ``GET /auth/{authType}/fallback/web?session=``, for two stages:

- ``m.login.sso``: a page linking to the CAS server, which sends the user back to /login/cas/ticket?session=
  (api/client/sso.py); the pages use no script.
- ``m.login.recaptcha`` (Synapse's page and form field): Google's captcha in a form, which posts
  ``g-recaptcha-response`` and ``session`` back to the same path.

The page has no inline script: Google's own script (from the siteverify API's host, www.recaptcha.net by
default) turns the ``g-recaptcha`` element into the captcha and adds its answer to the form; the page's
Content-Security-Policy allows that script, its frames and nothing else but posting the form here.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlsplit

from homeserver.api.client.threepids import page
from homeserver.bodies import RawBody
from homeserver.errors import MatrixError
from homeserver.http.router import AUTH_NONE, ApiRequest, Endpoint
from homeserver.services.recaptcha import RECAPTCHA_STAGE

_GSTATIC = "https://www.gstatic.com"   # where the captcha script loads its parts from


def _widget_origin(hs) -> str:
    """Google's script comes from the host of recaptcha_siteverify_api (www.recaptcha.net or www.google.com)."""
    parts = urlsplit(hs.config.recaptcha_siteverify_api)
    return f"{parts.scheme}://{parts.netloc}"


def _headers(origin: str) -> dict[bytes, bytes]:
    policy = (f"default-src 'none'; script-src {origin}/recaptcha/ {_GSTATIC}/recaptcha/; "
              f"frame-src {origin}/recaptcha/; style-src 'unsafe-inline'; form-action 'self'; "
              "frame-ancestors 'none'")
    return {b"Content-Security-Policy": policy.encode("ascii"), b"Referrer-Policy": b"no-referrer",
            b"Cache-Control": b"no-store"}


def _page(hs, title: str, body_html: str, status: int = 200, head: str = "") -> tuple[int, RawBody]:
    document = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>{head}"
                f"</head><body><h1>{html.escape(title)}</h1>{body_html}</body></html>")
    return status, RawBody(document.encode("utf-8"), b"text/html; charset=utf-8", _headers(_widget_origin(hs)))


def recaptcha_page(hs, req: ApiRequest, error: str | None = None):
    """The captcha form for UIA session ``session``; 400 M_MISSING_PARAM without one."""
    session_id = req.arg("session")
    if not session_id:
        raise MatrixError(400, "M_MISSING_PARAM", "No session supplied")
    origin = _widget_origin(hs)
    public_key = hs.config.recaptcha_public_key or ""
    notice = f"<p><strong>{html.escape(error)}</strong></p>" if error else ""
    return _page(hs, "Authentication", f"{notice}<p>Please verify that you're not a robot.</p>"
                 '<form method="post">'
                 f'<input type="hidden" name="session" value="{html.escape(session_id, quote=True)}">'
                 f'<div class="g-recaptcha" data-sitekey="{html.escape(public_key, quote=True)}"></div>'
                 '<input type="submit" value="Continue"></form>',
                 head=f'<script src="{html.escape(origin, quote=True)}/recaptcha/api.js" async defer></script>')


async def recaptcha_submit(hs, req: ApiRequest):
    """The posted form: the stage is done once the siteverify API accepts the answer; a refused answer shows
    the captcha again; an unknown session is a 400 page."""
    form = {k: v[-1] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
    session_id = form.get("session") or req.arg("session")
    if not session_id:
        raise MatrixError(400, "M_MISSING_PARAM", "No session supplied")
    try:
        known = await hs.auth.complete_recaptcha_stage(session_id, form.get("g-recaptcha-response"),
                                                       req.client_ip)
    except MatrixError as e:
        req.args["session"] = [session_id]
        status, body = recaptcha_page(hs, req, e.error)
        return 401, body
    if not known:
        return page("Authentication failed", "<p>This authentication session is unknown or has expired.</p>", 400)
    return page("Authentication successful",
                "<p>Thank you. You may now close this window and return to your application.</p>")


async def auth_fallback(hs, req: ApiRequest):
    """GET /auth/{authType}/fallback/web?session=: for m.login.sso, a page linking to the CAS server (which
    sends the user back to /login/cas/ticket?session=); for m.login.recaptcha, the captcha in a form posted
    back here; no other stage has a fallback page here."""
    if req.path_params["authType"] == RECAPTCHA_STAGE and hs.auth.recaptcha_enabled:
        return recaptcha_page(hs, req)
    if req.path_params["authType"] != "m.login.sso" or not hs.sso.enabled:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown auth stage type")
    session_id = req.arg("session")
    if not session_id:
        raise MatrixError(400, "M_MISSING_PARAM", "No session supplied")
    url = hs.sso.uia_redirect(session_id)
    if url is None:
        return page("Authentication failed", "<p>This authentication session is unknown or has expired.</p>", 400)
    return page("Confirm your identity", "<p>To continue, sign on again with your identity provider.</p>"
                f"<p><a href=\"{html.escape(url, quote=True)}\">Continue with {html.escape(hs.sso.provider_name)}"
                "</a></p>")


async def auth_fallback_submit(hs, req: ApiRequest):
    """POST /auth/m.login.recaptcha/fallback/web (Synapse): the form of the captcha page, whose
    ``g-recaptcha-response`` field (put there by Google's script) is checked; the stage is then done."""
    if req.path_params["authType"] != RECAPTCHA_STAGE or not hs.auth.recaptcha_enabled:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown auth stage type")
    return await recaptcha_submit(hs, req)


ROUTES = [
    Endpoint("GET", "/auth/{authType}/fallback/web", auth_fallback, auth=AUTH_NONE),
    Endpoint("POST", "/auth/{authType}/fallback/web", auth_fallback_submit, auth=AUTH_NONE),
]

"""Single sign-on through CAS (``services/sso.py``): the redirects to the identity provider and the page its
users come back to (the UIA stage's fallback page is in api/client/uia_fallback.py).

Spec v1.19 client-server "Login": ``GET /login/sso/redirect`` and ``GET /login/sso/redirect/{idpId}`` (302 to
the identity provider; ``redirectUrl`` required); "Fallback" of "User-Interactive Authentication API":
``GET /auth/m.login.sso/fallback/web?session=`` (api/client/uia_fallback.py). Synapse's paths: ``/login/cas/redirect`` (the name before
MSC1721) and ``/login/cas/ticket``, the CAS service URL (``?redirectUrl=`` or ``?session=``, and ``ticket``).
The pages use no script: a confirmation is a link the user follows.
"""

from __future__ import annotations

import html

from homeserver.api.client.threepids import page
from homeserver.bodies import RawBody
from homeserver.errors import MatrixError
from homeserver.http.router import AUTH_NONE, ApiRequest, Endpoint
from homeserver.services.sso import SsoPage

_REDIRECT_HEADERS = {b"Cache-Control": b"no-store", b"Referrer-Policy": b"no-referrer"}


def _redirect(url: str) -> tuple[int, RawBody]:
    return 302, RawBody(b"", b"text/plain", {b"Location": url.encode("utf-8"), **_REDIRECT_HEADERS})


async def sso_redirect(hs, req: ApiRequest):
    """GET /login/sso/redirect[/{idpId}] (and Synapse's /login/cas/redirect): 302 to the CAS server's login
    page; 400 M_MISSING_PARAM without redirectUrl, 404 M_NOT_FOUND for an unknown idpId, 400 M_UNRECOGNIZED
    when no identity provider is configured."""
    return _redirect(hs.sso.login_redirect(req.arg("redirectUrl"), req.path_params.get("idpId")))


async def cas_ticket(hs, req: ApiRequest):
    """GET /login/cas/ticket?ticket=&(redirectUrl=|session=): where the CAS server sends its users back."""
    ticket = req.arg("ticket")
    if not ticket:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing string query parameter ticket")
    outcome = await hs.sso.cas_ticket(ticket, req.arg("redirectUrl"), req.arg("session"), req.client_ip)
    if outcome.new_user:
        await hs.audit.record("registration", outcome.user_id, outcome.user_id, req.client_ip, {"sso": "cas"})
    return _render(hs, outcome)


def _render(hs, outcome: SsoPage):
    if outcome.kind == "redirect":
        return _redirect(outcome.url)
    if outcome.kind == "confirm":
        greeting = "Your account is ready" if outcome.new_user else "Continue to your account"
        return page(greeting, f"<p>You are signed in to {html.escape(hs.config.server_name)} as "
                    f"{html.escape(outcome.user_id)}.</p><p>Continue only if you trust "
                    f"<strong>{html.escape(outcome.display_url)}</strong>: it will have access to your account.</p>"
                    f"<p><a href=\"{html.escape(outcome.url, quote=True)}\">Continue</a></p>")
    if outcome.kind == "uia_done":
        return page("Authentication successful",
                    "<p>Thank you. You may now close this window and return to your application.</p>")
    if outcome.kind == "uia_bad_user":
        return page("Authentication failed",
                    f"<p>You signed on as another user than {html.escape(outcome.user_id)}: the operation will "
                    "not go ahead. You may close this window.</p>")
    return page("Sign-on failed", f"<p>{html.escape(outcome.description or '')}</p>"
                f"<p>({html.escape(outcome.error or '')})</p>", outcome.status)


ROUTES = [
    Endpoint("GET", "/login/sso/redirect", sso_redirect, auth=AUTH_NONE),
    Endpoint("GET", "/login/sso/redirect/{idpId}", sso_redirect, auth=AUTH_NONE),
    Endpoint("GET", "/login/cas/redirect", sso_redirect, auth=AUTH_NONE),
    Endpoint("GET", "/login/cas/ticket", cas_ticket, auth=AUTH_NONE),
]

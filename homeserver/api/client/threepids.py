"""Third-party identifiers and e-mail (spec v1.19 client-server "Adding Account Administrative Contact
Information", the ``requestToken`` endpoints of "Account registration and management" and "Password
management"), the pages of the links this server mails (Synapse's paths), and the unsubscribe link of
notification mails (Synapse's ``/_synapse/client/unsubscribe``)."""

from __future__ import annotations

import html
from functools import partial
from urllib.parse import parse_qs

from homeserver.bodies import RawBody
from homeserver.errors import MatrixError
from homeserver.http.router import AUTH_NONE, CLIENT_PREFIXES, NO_PREFIX, ApiRequest, Endpoint
from homeserver.requester import Requester
from homeserver.services.threepids import ADD_THREEPID, EMAIL_STAGE, LINK_PATHS, PASSWORD_RESET, REGISTRATION

# Synapse serves every client path under /unstable too; clients of the older 3PID API (and SyTest) use it.
WITH_UNSTABLE = CLIENT_PREFIXES + ("/_matrix/client/unstable",)
PAGE_HEADERS = {b"Content-Security-Policy": b"default-src 'none'; form-action 'self'; frame-ancestors 'none'",
                b"X-Frame-Options": b"DENY", b"X-Content-Type-Options": b"nosniff", b"Referrer-Policy": b"no-referrer",
                b"Cache-Control": b"no-store"}


def page(title: str, body_html: str, status: int = 200) -> tuple[int, RawBody]:
    document = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
                f"<body><h1>{html.escape(title)}</h1>{body_html}</body></html>")
    return status, RawBody(document.encode("utf-8"), b"text/html; charset=utf-8", PAGE_HEADERS)


# -- /account/3pid ---------------------------------------------------------------------------
async def get_threepids(hs, req: ApiRequest):
    return {"threepids": [{k: t[k] for k in ("medium", "address", "validated_at", "added_at")}
                          for t in await hs.threepids.list(req.user_id)]}


async def add_threepid(hs, req: ApiRequest):
    """POST /account/3pid/add, behind user-interactive auth."""
    body = req.json()
    creds = {"sid": body.get("sid"), "client_secret": body.get("client_secret")}
    await hs.auth.check_uia(body, await hs.sso.uia_flows(req.user_id),
                            fingerprint=f"3pid_add:{req.user_id}:{creds['sid']}", requester=req.requester)
    await hs.threepids.add(req.user_id, creds)
    return {}


async def add_threepid_deprecated(hs, req: ApiRequest):
    """POST /account/3pid (deprecated): ``three_pid_creds`` of a validated session; no identity server binds it."""
    body = req.json()
    await hs.threepids.add(req.user_id, body.get("three_pid_creds", body.get("threePidCreds")))
    return {}


async def bind_threepid(hs, req: ApiRequest):
    """POST /account/3pid/bind: through a trusted identity server, the bind remembered (spec, as Synapse)."""
    body = req.json()
    fields = ("id_server", "id_access_token", "sid", "client_secret")
    missing = [f for f in fields if f not in body]
    if missing:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing {', '.join(missing)}")
    if not all(isinstance(body[f], str) for f in fields):
        raise MatrixError(400, "M_BAD_JSON", f"{', '.join(fields)} must be strings")
    await hs.identity.bind(req.user_id, body["id_server"], body["id_access_token"], body["sid"],
                           body["client_secret"])
    return {}


def _unbind_args(body: dict) -> tuple[str, str, str | None]:
    medium, address, id_server = body.get("medium"), body.get("address"), body.get("id_server")
    if not isinstance(medium, str) or not isinstance(address, str):
        raise MatrixError(400, "M_MISSING_PARAM", "medium and address must be strings")
    if id_server is not None and not isinstance(id_server, str):
        raise MatrixError(400, "M_BAD_JSON", "id_server must be a string")
    return medium, address, id_server


async def unbind_threepid(hs, req: ApiRequest):
    """POST /account/3pid/unbind: from ``id_server``, else from every identity server it was bound on here."""
    medium, address, id_server = _unbind_args(req.json())
    done = await hs.identity.unbind(req.user_id, medium, address, id_server)
    return {"id_server_unbind_result": "success" if done else "no-support"}


async def delete_threepid(hs, req: ApiRequest):
    """POST /account/3pid/delete: unbound first (as Synapse), then removed from the account."""
    body = req.json()
    medium, address, id_server = _unbind_args(body)
    done = await hs.identity.unbind(req.user_id, medium, address, id_server)
    await hs.threepids.delete(req.user_id, medium, address)
    return {"id_server_unbind_result": "success" if done else "no-support"}


async def request_token(hs, req: ApiRequest, purpose: str):
    hs.ratelimit.threepid_validation.check(req.client_ip)  # each may send a mail (Synapse's rc_3pid_validation)
    return await hs.threepids.request_token(purpose, req.json())


async def msisdn_request_token(hs, req: ApiRequest):
    req.json()
    raise MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "Phone numbers are not supported on this server")


# -- the mailed links --------------------------------------------------------------------------
async def submit_token(hs, req: ApiRequest, purpose: str):
    """GET of a registration or add-threepid link: validates at once (as Synapse), then ``next_link``."""
    return await _validated_page(hs, purpose, req.arg("sid"), req.arg("client_secret"), req.arg("token"),
                                 "Your email has now been validated, please return to your client.")


async def _validated_page(hs, purpose: str, sid, client_secret, token, done: str):
    """Validate the session; the client's ``next_link`` (a redirect), else a page saying ``done``."""
    try:
        next_link = await hs.threepids.submit_token(purpose, sid, client_secret, token)
    except MatrixError as e:
        return page("Validation failed", f"<p>{html.escape(e.error)}</p>", 400)
    if next_link:
        return 302, RawBody(b"", b"text/plain", {b"Location": next_link.encode("utf-8")})
    return page("Email validated", f"<p>{html.escape(done)}</p>")


async def password_reset_confirm(hs, req: ApiRequest):
    """GET of a password reset link: a form that must be submitted (a link scanner resets nothing)."""
    fields = "".join(f'<input type="hidden" name="{n}" value="{html.escape(req.arg(n) or "")}">'
                     for n in ("token", "client_secret", "sid"))
    return page("Password reset", "<p>You have asked to reset your password. If this was you, confirm:</p>"
                f'<form method="post">{fields}<input type="submit" value="Reset my password"></form>')


async def password_reset_submit(hs, req: ApiRequest):
    form = {k: v[-1] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
    return await _validated_page(hs, PASSWORD_RESET, form.get("sid"), form.get("client_secret"), form.get("token"),
                                 "Your email has now been validated, please return to your client to reset your "
                                 "password. You may now close this window.")


async def forgotten_password(hs, req: ApiRequest, body: dict, new_password: str, logout_devices: bool) -> str:
    """POST /account/password without an access token: the m.login.email.identity stage proves an address,
    whose account gets the new password (every device logged out unless ``logout_devices`` is false)."""
    session = await hs.auth.check_uia(body, [[EMAIL_STAGE]], fingerprint="password_reset", requester=None,
                                      client_ip=req.client_ip,
                                      stage_checker=hs.threepids.stage_checker(PASSWORD_RESET))
    user_id = await hs.threepids.owner(session.threepid["address"])
    if user_id is None:
        raise MatrixError(400, "M_THREEPID_NOT_FOUND", "Email not found")
    await hs.auth.set_password(Requester(user_id, None, ""), new_password, logout_devices)
    return user_id


# -- notification mails -----------------------------------------------------------------------
async def unsubscribe(hs, req: ApiRequest):
    """The link of notification mails: removes that e-mail pusher (GET, as Synapse; POST for one-click)."""
    user_id, app_id, pushkey, token = (req.arg(n) for n in ("user_id", "app_id", "pushkey", "access_token"))
    if hs.email_notifs is None or not hs.email_notifs.unsubscribe_valid(user_id, app_id, pushkey, token):
        return page("Unsubscribe failed", "<p>This link is not valid.</p>", 400)
    await hs.pushers.remove((app_id, pushkey, user_id))
    return page("Unsubscribed", "<p>You have been unsubscribed from these notification mails.</p>")


ROUTES = [
    Endpoint("GET", "/account/3pid", get_threepids),
    Endpoint("POST", "/account/3pid", add_threepid_deprecated),
    Endpoint("POST", "/account/3pid/add", add_threepid),
    Endpoint("POST", "/account/3pid/bind", bind_threepid, prefixes=WITH_UNSTABLE),
    Endpoint("POST", "/account/3pid/unbind", unbind_threepid, prefixes=WITH_UNSTABLE),
    Endpoint("POST", "/account/3pid/delete", delete_threepid),
    Endpoint("POST", "/account/3pid/email/requestToken", partial(request_token, purpose=ADD_THREEPID), auth=AUTH_NONE),
    Endpoint("POST", "/account/3pid/msisdn/requestToken", msisdn_request_token, auth=AUTH_NONE),
    Endpoint("POST", "/register/email/requestToken", partial(request_token, purpose=REGISTRATION), auth=AUTH_NONE),
    Endpoint("POST", "/register/msisdn/requestToken", msisdn_request_token, auth=AUTH_NONE),
    Endpoint("POST", "/account/password/email/requestToken", partial(request_token, purpose=PASSWORD_RESET),
             auth=AUTH_NONE),
    Endpoint("POST", "/account/password/msisdn/requestToken", msisdn_request_token, auth=AUTH_NONE),
    Endpoint("GET", "/" + LINK_PATHS[REGISTRATION], partial(submit_token, purpose=REGISTRATION), auth=AUTH_NONE,
             prefixes=NO_PREFIX),
    Endpoint("GET", "/" + LINK_PATHS[ADD_THREEPID], partial(submit_token, purpose=ADD_THREEPID), auth=AUTH_NONE,
             prefixes=NO_PREFIX),
    Endpoint("GET", "/" + LINK_PATHS[PASSWORD_RESET], password_reset_confirm, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("POST", "/" + LINK_PATHS[PASSWORD_RESET], password_reset_submit, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/_synapse/client/unsubscribe", unsubscribe, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("POST", "/_synapse/client/unsubscribe", unsubscribe, auth=AUTH_NONE, prefixes=NO_PREFIX),
]

"""Registration, login, logout, whoami, password, deactivation, devices.

Spec v1.19 client-server: "Account registration and management", "Login",
"Device management".
"""

from __future__ import annotations

from homeserver.api.client.threepids import forgotten_password
from homeserver.errors import MatrixError, bad_json, forbidden, not_found, unknown_token
from homeserver.http.router import AUTH_NONE, AUTH_OPTIONAL, ApiRequest, Endpoint
from homeserver.http.site import access_token_of
from homeserver.services.threepids import REGISTRATION

APPSERVICE_LOGIN = "m.login.application_service"


def _opt_str(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"{key} must be a string")
    return value


async def _appservice(hs, req: ApiRequest):
    """The appservice whose as_token the request carries (application service API "Server admin
    style permissions"), else 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN."""
    token = access_token_of(req)
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    requester = await hs.appservices.authenticate(token, req.client_ip)
    if requester is None:
        raise unknown_token()
    return hs.appservices.by_id(requester.appservice_id)


async def _register_appservice_user(hs, req: ApiRequest, body: dict):
    """Application service API "Registration": a user of the appservice's namespace, no UIA, no limits;
    no access token with ``inhibit_login`` or for an MSC4190 appservice."""
    registration = await _appservice(hs, req)
    username = _opt_str(body, "username")
    if username is None:
        raise MatrixError(400, "M_MISSING_PARAM", "username is required")
    user_id = await hs.registration.register(username, None, appservice_id=registration.id)
    result = {"user_id": user_id, "home_server": hs.config.server_name}
    if not body.get("inhibit_login") and not registration.msc4190:
        device_id, token = await hs.auth.login_device(user_id, _opt_str(body, "device_id"),
                                                      _opt_str(body, "initial_device_display_name"), req.client_ip)
        result.update(access_token=token, device_id=device_id)
    return result


async def post_register(hs, req: ApiRequest):
    """POST /register: the m.login.dummy or m.login.registration_token flow, or an appservice's
    m.login.application_service."""
    body = req.json(allow_empty=True)
    if body.get("type") == APPSERVICE_LOGIN:
        return await _register_appservice_user(hs, req, body)
    kind = req.arg("kind", "user")
    if kind == "guest":
        return await _register_guest(hs, req, body)
    if kind != "user":
        raise MatrixError(400, "M_INVALID_PARAM", "kind must be user or guest")
    if not hs.config.enable_registration:
        raise forbidden("Registration has been disabled")
    hs.ratelimit.registration.check(req.client_ip)
    # Synapse: a retry within the UIA session may carry ``auth`` alone, the first request's parameters apply.
    session = hs.auth.uia_session(body, None, req.client_ip)
    params = {k: v for k, v in body.items() if k != "auth"} or (session and session.params) or {}
    username = _opt_str(params, "username")
    password = params.get("password")
    if password is not None:
        hs.auth.check_new_password(password)
    device_id = _opt_str(params, "device_id")
    display_name = _opt_str(params, "initial_device_display_name")
    refresh = _refresh_asked(params)
    guest_token = body.get("guest_access_token")
    if guest_token is not None:   # spec "Guest Access": a guest upgrades, keeping its user id
        upgraded = await hs.registration.guest_to_upgrade(guest_token, username)
    elif username is not None and (session is None or session.result is None):
        await hs.registration.check_available(username)
    session = await hs.auth.check_uia(body, hs.threepids.registration_flows(hs.registration.flows()),
                                      fingerprint=f"register:{username}", requester=None, client_ip=req.client_ip,
                                      stage_checker=hs.threepids.stage_checker(REGISTRATION,
                                                                               hs.registration.token_stage),
                                      params=params, keep_completed=True)
    user_id = session.result
    if user_id is None:   # a retry of a completed registration logs the same user in again
        if guest_token is not None:
            user_id = await hs.registration.upgrade_guest(upgraded, password)
        else:
            user_id = await hs.registration.register(username, password,
                                                     registration_token=session.registration_token)
        session.result = user_id
        if session.params:   # a retry needs no password: it is not kept in memory any longer than needed
            session.params = {k: v for k, v in session.params.items() if k != "password"}
        await hs.threepids.on_registered(user_id, session.threepid)  # m.login.email.identity: the user's address
        await hs.audit.record("registration", user_id, user_id, req.client_ip,
                              {"with_registration_token": session.registration_token is not None})
    result = {"user_id": user_id, "home_server": hs.config.server_name}
    if not params.get("inhibit_login"):
        result.update(await hs.session_tokens.login(user_id, device_id, display_name, req.client_ip,
                                                    refresh=refresh))
    return result


async def _register_guest(hs, req: ApiRequest, body: dict):
    """POST /register?kind=guest (spec "Guest Access"): no UIA, an access token right away."""
    hs.ratelimit.registration.check(req.client_ip)
    device_id = _opt_str(body, "device_id")
    display_name = _opt_str(body, "initial_device_display_name")
    user_id = await hs.registration.register_guest()
    await hs.audit.record("registration", user_id, user_id, req.client_ip, {"guest": True})
    device_id, token = await hs.auth.login_device(user_id, device_id, display_name, req.client_ip)
    return {"user_id": user_id, "home_server": hs.config.server_name, "access_token": token,
            "device_id": device_id}


async def available(hs, req: ApiRequest):
    username = req.arg("username")
    if username is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing username")
    await hs.registration.check_available(username)
    return {"available": True}


async def token_validity(hs, req: ApiRequest):
    token = req.arg("token")
    if token is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing token")
    if not hs.config.registration_requires_token:
        raise forbidden("Registration tokens are not enabled")
    hs.ratelimit.registration_token_validity.check(req.client_ip)
    return {"valid": await hs.registration.token_valid(token)}


def _refresh_asked(body: dict) -> bool:
    """Spec "Refreshing access tokens": ``refresh_token: true`` on /login and /register."""
    value = body.get("refresh_token", False)
    if not isinstance(value, bool):
        raise bad_json("refresh_token must be a boolean")
    return value


async def get_login(hs, req: ApiRequest):
    """GET /login. With single sign-on (as Synapse): m.login.cas (its name before MSC1721, which SyTest still
    looks for), m.login.sso with the identity providers, and m.login.token (how SSO logins end)."""
    flows = [{"type": "m.login.password"}]
    if hs.sso.enabled:
        flows.append({"type": "m.login.cas"})
        flows.append({"type": "m.login.sso", "identity_providers": hs.sso.identity_providers()})
    if hs.config.login_via_existing_session_enabled:
        flows.append({"type": "m.login.token", "get_login_token": True})
    elif hs.sso.enabled:
        flows.append({"type": "m.login.token"})
    if hs.appservices.registrations:
        flows.append({"type": APPSERVICE_LOGIN})
    return {"flows": flows}


async def post_login(hs, req: ApiRequest):
    """POST /login with m.login.password, or m.login.application_service with an as_token for a user of
    its namespace; a client-chosen device_id is honoured."""
    body = req.json()
    if body.get("type") == APPSERVICE_LOGIN:
        registration = await _appservice(hs, req)
        user_id = await hs.auth.user_from_identifier(body)
        if not registration.is_user_in_namespace(user_id):
            raise forbidden("The user is not in the application service's namespace")
        if not await hs.registration.exists(user_id):
            raise forbidden("The application service has not registered this user")
    elif body.get("type") == "m.login.password":
        hs.ratelimit.login_address.check(req.client_ip)
        body = await hs.threepids.login_identifier(body)  # an e-mail address: its account
        user_id = await hs.auth.user_from_identifier(body)
        hs.ratelimit.login_account.check(user_id)
        try:
            await hs.auth.validate_password(user_id, body.get("password"))
        except MatrixError as e:
            await hs.audit.record("login_failed", user_id, user_id, req.client_ip, {"errcode": e.errcode})
            raise
    elif body.get("type") == "m.login.token":
        hs.ratelimit.login_address.check(req.client_ip)
        user_id = await hs.session_tokens.user_of_login_token(body.get("token"))
    else:
        raise MatrixError(400, "M_UNKNOWN", "Unknown login type")
    hs.account_moderation.check_not_locked(user_id)
    tokens = await hs.session_tokens.login(user_id, _opt_str(body, "device_id"),
                                           _opt_str(body, "initial_device_display_name"), req.client_ip,
                                           refresh=_refresh_asked(body))
    await hs.audit.record("login", user_id, tokens["device_id"], req.client_ip, {"type": body["type"]})
    return {"user_id": user_id, "home_server": hs.config.server_name, **tokens}


async def logout(hs, req: ApiRequest):
    await hs.auth.logout(req.requester)
    await hs.audit.record("logout", req.user_id, req.requester.device_id, req.client_ip)
    return {}


async def logout_all(hs, req: ApiRequest):
    await hs.auth.delete_devices(req.user_id, None)
    await hs.audit.record("logout", req.user_id, None, req.client_ip, {"all_devices": True})
    return {}


async def whoami(hs, req: ApiRequest):
    result = {"user_id": req.user_id, "is_guest": False}
    if req.requester.device_id:
        result["device_id"] = req.requester.device_id
    return result


async def password(hs, req: ApiRequest):
    """POST /account/password, behind user-interactive hs.auth; without an access token, a forgotten password
    reset through a validated e-mail address (threepids.forgotten_password)."""
    body = req.json()
    new_password = body.get("new_password")
    if not isinstance(new_password, str) or not new_password:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing new_password")
    hs.auth.check_new_password(new_password)
    if req.requester is None:
        user_id = await forgotten_password(hs, req, body, new_password, bool(body.get("logout_devices", True)))
        await hs.audit.record("password_change", user_id, user_id, req.client_ip, {"reset_by_email": True})
        return {}
    await hs.auth.check_uia(body, await hs.sso.uia_flows(req.user_id), fingerprint=f"password:{req.user_id}",
                            requester=req.requester)
    await hs.auth.set_password(req.requester, new_password, bool(body.get("logout_devices", True)))
    await hs.audit.record("password_change", req.user_id, req.user_id, req.client_ip,
                          {"logout_devices": bool(body.get("logout_devices", True))})
    return {}


async def deactivate(hs, req: ApiRequest):
    """POST /account/deactivate, behind user-interactive auth; as Synapse, an application service deactivates
    its users (``?user_id=``) without it."""
    body = req.json(allow_empty=True)
    erase = body.get("erase", False)  # Synapse's extension: erase the user's messages too
    if not isinstance(erase, bool):
        raise bad_json("erase must be a boolean")
    id_server = body.get("id_server")
    if id_server is not None and not isinstance(id_server, str):
        raise bad_json("id_server must be a string")
    if req.requester.appservice_id is None:
        await hs.auth.check_uia(body, await hs.sso.uia_flows(req.user_id),
                                fingerprint=f"deactivate:{req.user_id}", requester=req.requester)
    # The 3PIDs are unbound first (as Synapse): an identity server that fails stops the deactivation here.
    threepids = [(t["medium"], t["address"]) for t in await hs.threepids.list(req.user_id)]
    unbound = await hs.identity.unbind_all(req.user_id, threepids, id_server)
    if erase:
        await hs.admin.mark_erased(req.user_id)
    await hs.rooms.leave_all_rooms(req.user_id)
    await hs.auth.deactivate(req.user_id)
    await hs.threepids.on_deactivated(req.user_id)
    await hs.sso.on_deactivated(req.user_id)
    await hs.audit.record("deactivate", req.user_id, req.user_id, req.client_ip)
    return {"id_server_unbind_result": "success" if unbound else "no-support"}


async def list_devices(hs, req: ApiRequest):
    return {"devices": await hs.auth.list_devices(req.user_id)}


async def get_device(hs, req: ApiRequest):
    device = await hs.auth.get_device(req.user_id, req.path_params["deviceId"])
    if device is None:
        raise not_found("Device not found")
    return device


def _manages_devices(hs, req: ApiRequest) -> bool:
    """MSC4190: an appservice registered with ``io.element.msc4190`` creates and deletes its users'
    devices, without user-interactive auth."""
    registration = hs.appservices.by_id(req.requester.appservice_id)
    return registration is not None and registration.msc4190


async def put_device(hs, req: ApiRequest):
    body = req.json()
    name = body.get("display_name")
    if name is not None and not isinstance(name, str):
        raise bad_json("display_name must be a string")
    device_id = req.path_params["deviceId"]
    if _manages_devices(hs, req) and await hs.auth.create_device(req.user_id, device_id, name):
        return 201, {}
    if name is None:
        return {}
    if not await hs.auth.rename_device(req.user_id, device_id, name):
        raise not_found("Device not found")
    return {}


async def delete_device(hs, req: ApiRequest):
    body = req.json(allow_empty=True)
    device_id = req.path_params["deviceId"]
    if await hs.auth.get_device(req.user_id, device_id) is None:
        raise not_found("Device not found")
    if not _manages_devices(hs, req):
        await hs.auth.check_uia(body, await hs.sso.uia_flows(req.user_id), fingerprint=f"delete_device:{device_id}",
                                requester=req.requester)
    await hs.auth.delete_devices(req.user_id, [device_id])
    await hs.audit.record("device_delete", req.user_id, device_id, req.client_ip)
    return {}


async def delete_devices(hs, req: ApiRequest):
    body = req.json()
    devices = body.get("devices")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise MatrixError(400, "M_MISSING_PARAM", "devices must be a list of device ids")
    if not _manages_devices(hs, req):
        await hs.auth.check_uia(body, await hs.sso.uia_flows(req.user_id),
                                fingerprint="delete_devices:" + ",".join(sorted(devices)), requester=req.requester)
    await hs.auth.delete_devices(req.user_id, devices)
    await hs.audit.record("device_delete", req.user_id, ",".join(devices)[:500], req.client_ip)
    return {}


async def openid_token(hs, req: ApiRequest):
    """POST /user/{userId}/openid/request_token (spec "OpenID")."""
    if req.path_params["userId"] != req.user_id:
        raise forbidden("You may only request tokens for yourself")
    token, expires_in = await hs.openid.issue(req.user_id)
    return {"access_token": token, "token_type": "Bearer", "matrix_server_name": hs.config.server_name,
            "expires_in": expires_in}


ROUTES = [
    Endpoint("POST", "/user/{userId}/openid/request_token", openid_token),
    Endpoint("POST", "/register", post_register, auth=AUTH_NONE),
    Endpoint("GET", "/register/available", available, auth=AUTH_NONE),
    Endpoint("GET", "/register/m.login.registration_token/validity", token_validity, auth=AUTH_NONE,
             prefixes=("/_matrix/client/v1",)),
    Endpoint("GET", "/login", get_login, auth=AUTH_NONE),
    Endpoint("POST", "/login", post_login, auth=AUTH_NONE),
    Endpoint("POST", "/logout", logout, locked_ok=True),
    Endpoint("POST", "/logout/all", logout_all, locked_ok=True),
    Endpoint("GET", "/account/whoami", whoami),
    Endpoint("POST", "/account/password", password, auth=AUTH_OPTIONAL),
    Endpoint("POST", "/account/deactivate", deactivate),
    Endpoint("GET", "/devices", list_devices),
    Endpoint("GET", "/devices/{deviceId}", get_device),
    Endpoint("PUT", "/devices/{deviceId}", put_device),
    Endpoint("DELETE", "/devices/{deviceId}", delete_device),
    Endpoint("POST", "/delete_devices", delete_devices),
]

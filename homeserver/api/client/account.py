"""Registration, login, logout, whoami, password, deactivation, devices.

Spec v1.19 client-server: "Account registration and management", "Login",
"Device management".
"""

from __future__ import annotations

from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.http.router import AUTH_NONE, ApiRequest, Router


def _opt_str(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"{key} must be a string")
    return value


def register(router: Router, hs) -> None:
    auth, registration, config = hs.auth, hs.registration, hs.config

    async def post_register(req: ApiRequest):
        """POST /register: the m.login.dummy or m.login.registration_token flow."""
        body = req.json(allow_empty=True)
        kind = req.arg("kind", "user")
        if kind == "guest":
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
        if kind != "user":
            raise MatrixError(400, "M_INVALID_PARAM", "kind must be user or guest")
        if not config.enable_registration:
            raise forbidden("Registration has been disabled")
        hs.ratelimit.registration.check(req.client_ip)
        username = _opt_str(body, "username")
        password = body.get("password")
        if password is not None:
            auth.check_new_password(password)
        device_id = _opt_str(body, "device_id")
        display_name = _opt_str(body, "initial_device_display_name")
        if username is not None:
            await registration.check_available(username)
        fingerprint = f"register:{username}"
        session = await auth.check_uia(body, registration.flows(), fingerprint=fingerprint, requester=None,
                                       client_ip=req.client_ip, stage_checker=registration.token_stage)
        user_id = await registration.register(username, password, registration_token=session.registration_token)
        result = {"user_id": user_id, "home_server": config.server_name}
        if not body.get("inhibit_login"):
            device_id, token = await auth.login_device(user_id, device_id, display_name, req.client_ip)
            result.update(access_token=token, device_id=device_id)
        return result

    async def available(req: ApiRequest):
        username = req.arg("username")
        if username is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing username")
        await registration.check_available(username)
        return {"available": True}

    async def token_validity(req: ApiRequest):
        token = req.arg("token")
        if token is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing token")
        if not config.registration_requires_token:
            raise forbidden("Registration tokens are not enabled")
        hs.ratelimit.registration_token_validity.check(req.client_ip)
        return {"valid": await hs.accounts_store.registration_token_valid(token, auth.now_ms())}

    async def get_login(req: ApiRequest):
        return {"flows": [{"type": "m.login.password"}]}

    async def post_login(req: ApiRequest):
        """POST /login with m.login.password; a client-chosen device_id is honoured."""
        body = req.json()
        if body.get("type") != "m.login.password":
            raise MatrixError(400, "M_UNKNOWN", "Unknown login type")
        hs.ratelimit.login_address.check(req.client_ip)
        user_id = await auth.user_from_identifier(body)
        hs.ratelimit.login_account.check(user_id)
        await auth.validate_password(user_id, body.get("password"))
        device_id, token = await auth.login_device(user_id, _opt_str(body, "device_id"),
                                                   _opt_str(body, "initial_device_display_name"), req.client_ip)
        return {"user_id": user_id, "access_token": token, "device_id": device_id,
                "home_server": config.server_name}

    async def logout(req: ApiRequest):
        await auth.logout(req.requester)
        return {}

    async def logout_all(req: ApiRequest):
        await auth.delete_devices(req.user_id, None)
        return {}

    async def whoami(req: ApiRequest):
        result = {"user_id": req.user_id, "is_guest": False}
        if req.requester.device_id:
            result["device_id"] = req.requester.device_id
        return result

    async def password(req: ApiRequest):
        """POST /account/password, behind user-interactive auth."""
        body = req.json()
        new_password = body.get("new_password")
        if not isinstance(new_password, str) or not new_password:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing new_password")
        auth.check_new_password(new_password)
        await auth.check_uia(body, [["m.login.password"]], fingerprint=f"password:{req.user_id}",
                             requester=req.requester)
        await auth.set_password(req.requester, new_password, bool(body.get("logout_devices", True)))
        return {}

    async def deactivate(req: ApiRequest):
        body = req.json(allow_empty=True)
        await auth.check_uia(body, [["m.login.password"]], fingerprint=f"deactivate:{req.user_id}",
                             requester=req.requester)
        await hs.rooms.leave_all_rooms(req.user_id)
        await auth.deactivate(req.user_id)
        return {"id_server_unbind_result": "no-support"}

    async def list_devices(req: ApiRequest):
        return {"devices": await hs.accounts_store.list_devices(req.user_id)}

    async def get_device(req: ApiRequest):
        device = await hs.accounts_store.get_device(req.user_id, req.path_params["deviceId"])
        if device is None:
            raise not_found("Device not found")
        return device

    async def put_device(req: ApiRequest):
        body = req.json()
        name = body.get("display_name")
        if name is None:
            return {}
        if not isinstance(name, str):
            raise bad_json("display_name must be a string")
        if not await hs.accounts_store.rename_device(req.user_id, req.path_params["deviceId"], name):
            raise not_found("Device not found")
        return {}

    async def delete_device(req: ApiRequest):
        body = req.json(allow_empty=True)
        device_id = req.path_params["deviceId"]
        if await hs.accounts_store.get_device(req.user_id, device_id) is None:
            raise not_found("Device not found")
        await auth.check_uia(body, [["m.login.password"]], fingerprint=f"delete_device:{device_id}",
                             requester=req.requester)
        await auth.delete_devices(req.user_id, [device_id])
        return {}

    async def delete_devices(req: ApiRequest):
        body = req.json()
        devices = body.get("devices")
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise MatrixError(400, "M_MISSING_PARAM", "devices must be a list of device ids")
        await auth.check_uia(body, [["m.login.password"]], fingerprint="delete_devices:" + ",".join(sorted(devices)),
                             requester=req.requester)
        await auth.delete_devices(req.user_id, devices)
        return {}

    async def shared_secret_nonce(req: ApiRequest):
        if not config.registration_shared_secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        return {"nonce": registration.new_nonce()}

    async def shared_secret_register(req: ApiRequest):
        """Synapse's /_synapse/admin/v1/register, which admin tooling uses."""
        body = req.json()
        user_id = await registration.register_with_shared_secret(body)
        device_id, token = await auth.login_device(user_id, None, None, req.client_ip)
        return {"user_id": user_id, "access_token": token, "device_id": device_id,
                "home_server": config.server_name}

    async def openid_token(req: ApiRequest):
        """POST /user/{userId}/openid/request_token (spec "OpenID")."""
        if req.path_params["userId"] != req.user_id:
            raise forbidden("You may only request tokens for yourself")
        token, expires_in = hs.openid.issue(req.user_id)
        return {"access_token": token, "token_type": "Bearer", "matrix_server_name": config.server_name,
                "expires_in": expires_in}

    router.client("POST", "/user/{userId}/openid/request_token", openid_token)
    router.client("POST", "/register", post_register, auth=AUTH_NONE)
    router.client("GET", "/register/available", available, auth=AUTH_NONE)
    router.client("GET", "/register/m.login.registration_token/validity", token_validity, auth=AUTH_NONE,
                  versions=("/_matrix/client/v1",))
    router.client("GET", "/login", get_login, auth=AUTH_NONE)
    router.client("POST", "/login", post_login, auth=AUTH_NONE)
    router.client("POST", "/logout", logout)
    router.client("POST", "/logout/all", logout_all)
    router.client("GET", "/account/whoami", whoami)
    router.client("POST", "/account/password", password)
    router.client("POST", "/account/deactivate", deactivate)
    router.client("GET", "/devices", list_devices)
    router.client("GET", "/devices/{deviceId}", get_device)
    router.client("PUT", "/devices/{deviceId}", put_device)
    router.client("DELETE", "/devices/{deviceId}", delete_device)
    router.client("POST", "/delete_devices", delete_devices)
    router.add("GET", "/_synapse/admin/v1/register", shared_secret_nonce, auth=AUTH_NONE)
    router.add("POST", "/_synapse/admin/v1/register", shared_secret_register, auth=AUTH_NONE)

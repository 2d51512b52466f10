"""Synapse's user admin API (``docs/admin_api/user_admin_api.md``), server admins only (``AUTH_ADMIN``), as
synapse-admin calls it: list, query, create and modify, deactivate (and erase), reset password, devices (list,
show, rename, delete), joined rooms and memberships, admin flag, username availability, whois, login as a user,
shadow ban, rate-limit overrides. Every change goes to the audit trail."""

from __future__ import annotations

from functools import partial

from homeserver.api.admin import V1, V2, admin_route, audited, bool_arg, page_args
from homeserver.errors import forbidden, invalid_param
from homeserver.http.router import ApiRequest, Endpoint


from homeserver.services.admin import UserFilter

def _user(req: ApiRequest) -> str:
    return req.path_params["userId"]


async def list_users(hs, req: ApiRequest):
    """GET /_synapse/admin/v2/users: from, limit, user_id, name, guests, admins, deactivated, order_by, dir."""
    offset, limit, backwards = page_args(req)
    f = UserFilter(user_id=req.arg("user_id"), name=req.arg("name"), guests=bool_arg(req, "guests", True),
                   admins=bool_arg(req, "admins", None), deactivated=bool_arg(req, "deactivated", False),
                   order_by=req.arg("order_by", "name"), backwards=backwards)
    return await hs.admin.list_users(f, offset, limit)


async def user_info(hs, req: ApiRequest, what: str):
    """The reads about one user: the account, its devices, whois, its rate-limit override."""
    return await getattr(hs.admin, what)(_user(req))


async def device(hs, req: ApiRequest):
    return await hs.admin.device(_user(req), req.path_params["deviceId"])


async def change_devices(hs, req: ApiRequest):
    """PUT .../devices/{deviceId} renames it, DELETE deletes it, POST .../delete_devices deletes the listed."""
    device_id = req.path_params.get("deviceId")
    body = req.json(allow_empty=True)
    if req.method == "PUT":
        await hs.admin.rename_device(_user(req), device_id, body.get("display_name"))
        return {}
    devices = [device_id] if device_id is not None else body.get("devices")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise invalid_param("devices must be a list of device ids")
    await hs.admin.delete_devices(_user(req), devices)
    await audited(hs, req, "delete_devices", _user(req), devices=devices)
    return {}


async def put_admin(hs, req: ApiRequest):
    admin = req.json().get("admin")
    await hs.admin.set_admin(req.user_id, _user(req), admin)
    await audited(hs, req, "set_admin", _user(req), admin=admin)
    return {}


async def username_available(hs, req: ApiRequest):
    """GET /_synapse/admin/v1/username_available: as the client-server check, with registration closed too."""
    username = req.arg("username")
    if username is None:
        raise invalid_param("Missing username")
    await hs.registration.check_available(username)
    return {"available": True}


async def put_user(hs, req: ApiRequest):
    """PUT /_synapse/admin/v2/users/{userId}: 201 created, 200 modified."""
    body = req.json()
    status, user = await hs.admin.upsert_user(_user(req), body)
    await audited(hs, req, "create_user" if status == 201 else "modify_user", _user(req),
                  fields=sorted(k for k in body if k != "password"), password_set="password" in body)
    return status, user


async def deactivate(hs, req: ApiRequest):
    erase = req.json(allow_empty=True).get("erase", False)
    if not isinstance(erase, bool):
        raise invalid_param("erase must be a boolean")
    result = await hs.admin.deactivate(_user(req), erase=erase)
    await audited(hs, req, "deactivate", _user(req), erase=erase)
    return result


async def reset_password(hs, req: ApiRequest):
    body = req.json()
    logout = body.get("logout_devices", True)
    await hs.admin.reset_password(_user(req), body.get("new_password"), logout)
    await audited(hs, req, "reset_password", _user(req), logout_devices=bool(logout))
    return {}


async def login_as(hs, req: ApiRequest):
    valid_until = req.json(allow_empty=True).get("valid_until_ms")
    if valid_until is not None and (not isinstance(valid_until, int) or isinstance(valid_until, bool)):
        raise invalid_param("valid_until_ms must be an integer")
    result = await hs.admin.login_as(req.user_id, _user(req), valid_until)
    await audited(hs, req, "login_as_user", _user(req))
    return result


async def shadow_ban(hs, req: ApiRequest):
    """POST bans, DELETE lifts the ban."""
    on = req.method == "POST"
    await hs.admin.shadow_ban(_user(req), on)
    await audited(hs, req, "shadow_ban" if on else "unshadow_ban", _user(req))
    return {}


async def set_override(hs, req: ApiRequest):
    """POST sets the override, DELETE removes it."""
    body = req.json(allow_empty=True) if req.method == "POST" else None
    result = await hs.admin.set_ratelimit_override(_user(req), body)
    await audited(hs, req, "override_ratelimit" if body is not None else "delete_ratelimit_override", _user(req),
                  **result)
    return result


async def client_whois(hs, req: ApiRequest):
    """Spec v1.19 client-server "Server administration", GET /admin/whois/{userId}: a server admin, or the user
    themselves (as Synapse allows), sees each device's last connection."""
    if not req.requester.is_admin and _user(req) != req.user_id:
        raise forbidden("You are not a server admin")
    return await hs.admin.whois(_user(req))


# The reads about one user: GET path -> the AdminService method answering it.
USER_READS = {
    V2 + "/users/{userId}": "query_user",
    V2 + "/users/{userId}/devices": "devices",
    V1 + "/users/{userId}/joined_rooms": "joined_rooms",
    V1 + "/users/{userId}/memberships": "memberships",
    V1 + "/users/{userId}/admin": "is_admin",
    V1 + "/users/{userId}/override_ratelimit": "ratelimit_override",
    V1 + "/whois/{userId}": "whois",
}

ROUTES = [
    Endpoint("GET", "/admin/whois/{userId}", client_whois),
    *(admin_route("GET", path, partial(user_info, what=what)) for path, what in USER_READS.items()),
    admin_route("GET", V2 + "/users", list_users),
    admin_route("PUT", V2 + "/users/{userId}", put_user),
    admin_route("GET", V2 + "/users/{userId}/devices/{deviceId}", device),
    *(admin_route(method, V2 + path, change_devices) for method, path in (
        ("PUT", "/users/{userId}/devices/{deviceId}"), ("DELETE", "/users/{userId}/devices/{deviceId}"),
        ("POST", "/users/{userId}/delete_devices"))),
    admin_route("PUT", V1 + "/users/{userId}/admin", put_admin),
    admin_route("GET", V1 + "/username_available", username_available),
    admin_route("POST", V1 + "/deactivate/{userId}", deactivate),
    admin_route("POST", V1 + "/reset_password/{userId}", reset_password),
    admin_route("POST", V1 + "/users/{userId}/login", login_as),
    *(admin_route(method, V1 + "/users/{userId}/shadow_ban", shadow_ban) for method in ("POST", "DELETE")),
    *(admin_route(method, V1 + "/users/{userId}/override_ratelimit", set_override) for method in ("POST", "DELETE")),
]

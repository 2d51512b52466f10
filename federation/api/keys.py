"""Server-server endpoints for other servers' clients' end-to-end encryption.

Spec v1.19 server-server "Device Management" (``GET /user/devices/{userId}``)
and "End-to-End Encryption" (``POST /user/keys/query``, ``POST /user/keys/claim``),
behind X-Matrix auth, about local users only.
"""

from __future__ import annotations

from homeserver.errors import MatrixError, bad_json, too_large
from homeserver.events.identifiers import domain_of
from homeserver.http.router import AUTH_SERVER, NO_PREFIX, ApiRequest, Endpoint

PREFIX = "/_matrix/federation/v1"
# Users (query) and devices (claim) one request may name; more: 413 M_TOO_LARGE, not a partial answer.
MAX_KEYS_USERS = 1000
MAX_KEYS_DEVICES = 10000


def _not_local(user_id: str) -> MatrixError:
    return MatrixError(400, "M_UNKNOWN", f"{user_id} is not a user of this server")  # as Synapse


def _is_local(hs, user_id: str) -> bool:
    return domain_of(user_id) == hs.server_name


async def user_devices(hs, req: ApiRequest):
    user_id = req.path_params["userId"]
    if not _is_local(hs, user_id):
        raise _not_local(user_id)
    return await hs.e2e_keys.federation_device_list(user_id)


async def keys_query(hs, req: ApiRequest):
    wanted = req.json().get("device_keys")
    if not isinstance(wanted, dict) or not all(
            v is None or isinstance(v, list) and all(isinstance(d, str) for d in v) for v in wanted.values()):
        raise bad_json("device_keys must map user ids to lists of device ids")
    if len(wanted) > MAX_KEYS_USERS or sum(len(v or ()) for v in wanted.values()) > MAX_KEYS_DEVICES:
        raise too_large(f"at most {MAX_KEYS_USERS} users and {MAX_KEYS_DEVICES} devices per query")
    for user_id in wanted:
        if not _is_local(hs, user_id):
            raise _not_local(user_id)
    keys = await hs.e2e_keys.local_keys(wanted, None)
    return {field: keys[field] for field in ("device_keys", "master_keys", "self_signing_keys")}


async def keys_claim(hs, req: ApiRequest):
    wanted = req.json().get("one_time_keys")
    if not isinstance(wanted, dict) or not all(
            isinstance(v, dict) and all(isinstance(a, str) for a in v.values()) for v in wanted.values()):
        raise bad_json("one_time_keys must map user ids to device ids to algorithms")
    if len(wanted) > MAX_KEYS_USERS or sum(len(v) for v in wanted.values()) > MAX_KEYS_DEVICES:
        raise too_large(f"at most {MAX_KEYS_USERS} users and {MAX_KEYS_DEVICES} devices per claim")
    return {"one_time_keys": await hs.e2e_keys.claim_local({u: d for u, d in wanted.items() if _is_local(hs, u)})}


ROUTES = [
    Endpoint("GET", PREFIX + "/user/devices/{userId}", user_devices, auth=AUTH_SERVER, prefixes=NO_PREFIX),
    Endpoint("POST", PREFIX + "/user/keys/query", keys_query, auth=AUTH_SERVER, prefixes=NO_PREFIX),
    Endpoint("POST", PREFIX + "/user/keys/claim", keys_claim, auth=AUTH_SERVER, prefixes=NO_PREFIX),
]

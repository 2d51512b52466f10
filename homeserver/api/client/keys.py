"""/keys/*: device keys, one-time keys, key changes and cross-signing.

Spec v1.19 client-server "End-to-End Encryption" (key management API,
cross-signing).
"""

from __future__ import annotations

from homeserver.errors import missing_param
from homeserver.http.router import CLIENT_PREFIXES, ApiRequest, Endpoint
from homeserver.services.e2e_keys import request_fingerprint

UNSTABLE = ("/_matrix/client/unstable",)


async def upload(hs, req: ApiRequest):
    hs.ratelimit.check_user(hs.ratelimit.key_upload, req.user_id)
    return await hs.e2e_keys.upload(req.user_id, req.requester.device_id, req.json())


async def query(hs, req: ApiRequest):
    return await hs.e2e_keys.query(req.user_id, req.json())


async def claim(hs, req: ApiRequest):
    return await hs.e2e_keys.claim(req.json())


async def changes(hs, req: ApiRequest):
    """GET /keys/changes: ``to`` defaults to now (Synapse only uses it as a hint)."""
    since = req.arg("from")
    if since is None:
        raise missing_param("Missing from")
    from_pos = hs.sync.parse_token(since)["device_lists"]
    to = req.arg("to")
    to_pos = hs.sync.parse_token(to)["device_lists"] if to else hs.device_lists.stream.current()
    changed, left = await hs.device_lists.changes(req.user_id, from_pos, to_pos)
    return {"changed": changed, "left": left}


async def device_signing_upload(hs, req: ApiRequest):
    """POST /keys/device_signing/upload, behind user-interactive auth once a master key exists."""
    body = req.json()
    keys, needs_auth = await hs.e2e_keys.check_signing_keys(req.user_id, body)
    if needs_auth:
        await hs.auth.check_uia(body, await hs.sso.uia_flows(req.user_id),
                                fingerprint=request_fingerprint(req.user_id, keys), requester=req.requester)
    await hs.e2e_keys.store_signing_keys(req.user_id, keys)
    return {}


async def signatures_upload(hs, req: ApiRequest):
    return await hs.e2e_keys.upload_signatures(req.user_id, req.json())


ROUTES = [
    Endpoint("POST", "/keys/upload", upload),
    Endpoint("POST", "/keys/query", query),
    Endpoint("POST", "/keys/claim", claim),
    Endpoint("GET", "/keys/changes", changes),
    Endpoint("POST", "/keys/device_signing/upload", device_signing_upload, prefixes=CLIENT_PREFIXES + UNSTABLE),
    Endpoint("POST", "/keys/signatures/upload", signatures_upload, prefixes=CLIENT_PREFIXES + UNSTABLE),
]

"""/keys/*: device keys, one-time keys, key changes and cross-signing.

Spec v1.19 client-server "End-to-End Encryption" (key management API,
cross-signing).
"""

from __future__ import annotations

from homeserver.errors import missing_param
from homeserver.http.router import ApiRequest, Router
from homeserver.services.e2e_keys import request_fingerprint

UNSTABLE = ("/_matrix/client/unstable",)


def register(router: Router, hs) -> None:
    e2e = hs.e2e_keys

    async def upload(req: ApiRequest):
        hs.ratelimit.key_upload.check(req.user_id)
        return await e2e.upload(req.user_id, req.requester.device_id, req.json())

    async def query(req: ApiRequest):
        return await e2e.query(req.user_id, req.json())

    async def claim(req: ApiRequest):
        return await e2e.claim(req.json())

    async def changes(req: ApiRequest):
        """GET /keys/changes: ``to`` defaults to now (Synapse only uses it as a hint)."""
        since = req.arg("from")
        if since is None:
            raise missing_param("Missing from")
        from_pos = hs.sync.parse_token(since)["device_lists"]
        to = req.arg("to")
        to_pos = hs.sync.parse_token(to)["device_lists"] if to else hs.device_lists.stream.current()
        changed, left = await hs.device_lists.changes(req.user_id, from_pos, to_pos)
        return {"changed": changed, "left": left}

    async def device_signing_upload(req: ApiRequest):
        """POST /keys/device_signing/upload, behind user-interactive auth once a master key exists."""
        body = req.json()
        keys, needs_auth = await e2e.check_signing_keys(req.user_id, body)
        if needs_auth:
            await hs.auth.check_uia(body, [["m.login.password"]], fingerprint=request_fingerprint(req.user_id, keys),
                                    requester=req.requester)
        await e2e.store_signing_keys(req.user_id, keys)
        return {}

    async def signatures_upload(req: ApiRequest):
        return await e2e.upload_signatures(req.user_id, req.json())

    router.client("POST", "/keys/upload", upload)
    router.client("POST", "/keys/query", query)
    router.client("POST", "/keys/claim", claim)
    router.client("GET", "/keys/changes", changes)
    for versions in (Router.CLIENT_PREFIXES, UNSTABLE):
        router.client("POST", "/keys/device_signing/upload", device_signing_upload, versions=versions)
        router.client("POST", "/keys/signatures/upload", signatures_upload, versions=versions)

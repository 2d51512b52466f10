"""The Policy Server endpoint (spec v1.19 server-server "Policy Servers", ``POST /_matrix/policy/v1/sign``),
behind X-Matrix auth. Bound always: when ``policy_server.enabled`` is false it answers 404 ``M_UNRECOGNIZED``
(server-server "Unsupported endpoints"), as the spec asks of a server that is not a policy server.
"""

from __future__ import annotations

from homeserver.errors import MatrixError
from homeserver.http.router import AUTH_SERVER, NO_PREFIX, ApiRequest, Endpoint


async def sign(hs, req: ApiRequest):
    """POST /_matrix/policy/v1/sign: the body is the PDU; 200 with our ``ed25519:policy_server`` signature,
    400 M_BAD_JSON / M_FORBIDDEN, 404 M_NOT_FOUND (room unknown or not protected) or M_UNRECOGNIZED."""
    if hs.policy_server is None:
        raise MatrixError(404, "M_UNRECOGNIZED", "This server is not a policy server")
    return await hs.policy_server.sign(req.origin, req.json())


ROUTES = [
    Endpoint("POST", "/_matrix/policy/v1/sign", sign, auth=AUTH_SERVER, prefixes=NO_PREFIX),
]

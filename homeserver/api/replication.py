"""Main's replication listener (Synapse's ``replication`` resource): what its workers hand it to write
(``homeserver/replication/http.py``, docs/workers.md). Served only on a listener naming ``replication``,
only when ``worker_replication_secret`` is set, and only to a request bearing that secret."""

from __future__ import annotations

import hmac

from homeserver.errors import MatrixError
from homeserver.http.router import AUTH_NONE, NO_PREFIX, ApiRequest, Endpoint
from homeserver.replication.http import PATH_PREFIX, apply_call

MAX_BODY = 64 * 1024 * 1024  # a join's whole state, checked by the worker, in one call


async def replicate(hs, req: ApiRequest):
    """POST /_synapse/replication/hexagone/{op}: persist events, apply an EDU, or queue a PDU for other
    servers, answering once done."""
    secret = hs.config.worker_replication_secret
    given = req.headers.get("authorization", "")
    if not secret or not hmac.compare_digest(given.encode("utf-8"), b"Bearer " + secret.encode("utf-8")):
        raise MatrixError(403, "M_FORBIDDEN", "Not a worker of this server (worker_replication_secret)")
    try:
        return await apply_call(req.path_params["op"], req.json(), remote=hs.remote_events,
                                edu_handlers=hs.federation_handler.receiver.edu_handlers,
                                sender=hs.federation.sender)
    except (KeyError, TypeError, ValueError) as e:
        raise MatrixError(400, "M_BAD_JSON", f"Bad replication call: {e}")


ROUTES = [Endpoint("POST", PATH_PREFIX + "{op}", replicate, auth=AUTH_NONE, prefixes=NO_PREFIX, max_body=MAX_BODY)]

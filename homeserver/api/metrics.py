"""Prometheus metrics (Synapse's ``GET /_synapse/metrics``), served only on a listener naming the ``metrics``
resource and only when ``enable_metrics`` is on, as in Synapse; no authentication, so that listener belongs on
an address only the monitoring can reach."""

from __future__ import annotations

from homeserver.bodies import RawBody
from homeserver.errors import MatrixError
from homeserver.http.router import AUTH_NONE, NO_PREFIX, ApiRequest, Endpoint

PATH = "/_synapse/metrics"


async def metrics(hs, req: ApiRequest):
    if not hs.config.enable_metrics:
        raise MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
    hs.metrics.set_destinations(await hs.admin.federation_queues())
    text, content_type = hs.metrics.exposition()
    return RawBody(text, content_type.encode("ascii"))


ROUTES = [Endpoint("GET", PATH, metrics, auth=AUTH_NONE, prefixes=NO_PREFIX)]

"""URL previews (spec v1.19 client-server "Content repository": ``GET /_matrix/client/v1/media/preview_url``, and
the deprecated ``GET /_matrix/media/v3/preview_url``, both with an access token).

Bound only when ``url_preview_enabled`` is true: otherwise the paths are unknown (404 ``M_UNRECOGNIZED``), as
in Synapse, which does not register them either.
"""

from __future__ import annotations

from homeserver.errors import missing_param
from homeserver.http.router import NO_PREFIX, ApiRequest, Endpoint
from media_repo.api.client import AUTHED, LEGACY


async def preview_url(hs, req: ApiRequest):
    """GET .../preview_url?url=...[&ts=...]: the page's Open Graph data (og:image as an mxc:// URI)."""
    url = req.arg("url")
    if not url:
        raise missing_param("url is required")
    return await hs.url_previewer.preview(url, req.int_arg("ts"), req.user_id)


ROUTES = [
    Endpoint("GET", f"{AUTHED}/preview_url", preview_url, prefixes=NO_PREFIX),
    Endpoint("GET", f"{LEGACY}/preview_url", preview_url, prefixes=NO_PREFIX),
]

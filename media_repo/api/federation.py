"""Server-server content repository endpoints (spec v1.19 server-server "Content repository"), X-Matrix
authenticated: our local media, and thumbnails of it, as ``multipart/mixed`` (metadata ``{}``, then the file
streamed from disk)."""

from __future__ import annotations

import os

from homeserver.bodies import FileBody
from homeserver.http.router import AUTH_SERVER, NO_PREFIX, ApiRequest, Endpoint
from media_repo import multipart, rules
from media_repo.api.client import DEFAULT_TIMEOUT_MS, thumbnail_args
from media_repo.service import Media

PREFIX = "/_matrix/federation/v1/media"


def _multipart_answer(media: Media) -> FileBody:
    content_type, prefix, suffix = multipart.envelope(
        media.media_type, rules.content_disposition(media.media_type, media.upload_name))
    f = open(media.path, "rb")
    return FileBody(f, os.fstat(f.fileno()).st_size, content_type, prefix=prefix, suffix=suffix)


async def download(hs, req: ApiRequest):
    """GET /_matrix/federation/v1/media/download/{mediaId}."""
    return _multipart_answer(await hs.media.local_for_federation(
        req.path_params["mediaId"], req.int_arg("timeout_ms", DEFAULT_TIMEOUT_MS, minimum=0)))


async def thumbnail(hs, req: ApiRequest):
    """GET /_matrix/federation/v1/media/thumbnail/{mediaId}?width&height[&method][&animated]."""
    media = await hs.media.thumbnail(hs.config.server_name, req.path_params["mediaId"], *thumbnail_args(req),
                                     legacy=False, for_federation=True,
                                     timeout_ms=req.int_arg("timeout_ms", DEFAULT_TIMEOUT_MS, minimum=0))
    return _multipart_answer(media)


ROUTES = [
    Endpoint("GET", f"{PREFIX}/download/{{mediaId}}", download, auth=AUTH_SERVER, prefixes=NO_PREFIX),
    Endpoint("GET", f"{PREFIX}/thumbnail/{{mediaId}}", thumbnail, auth=AUTH_SERVER, prefixes=NO_PREFIX),
]

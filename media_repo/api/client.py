"""Client-server content repository endpoints (spec v1.19 "Content repository").

Authenticated: ``/_matrix/client/v1/media/{config,download,thumbnail}``. Legacy, frozen in v1.11:
``/_matrix/media/v3/{download,thumbnail,config}`` (no access token; media uploaded while
``enable_authenticated_media`` is on is not served there). Uploads: ``POST /_matrix/media/v3/upload``,
``POST /_matrix/media/v1/create`` and ``PUT /_matrix/media/v3/upload/{serverName}/{mediaId}``; their body is
spooled to disk by the HTTP layer as it arrives (``Endpoint.spool``), refused past ``max_upload_size``.
"""

from __future__ import annotations

import os
from functools import partial

from homeserver.bodies import FileBody
from homeserver.errors import missing_param
from homeserver.http.router import AUTH_NONE, AUTH_USER, NO_PREFIX, ApiRequest, Endpoint
from media_repo import rules
from media_repo.service import Media

AUTHED = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"
DEFAULT_TIMEOUT_MS = 20_000


def file_answer(req: ApiRequest, media: Media, file_name: str | None = None) -> tuple[int, FileBody]:
    """The file, whole or the one range asked (206; 416 past its end), with the spec's media headers."""
    headers = rules.download_headers(media.media_type, file_name or media.upload_name)
    f = open(media.path, "rb")
    size = os.fstat(f.fileno()).st_size
    try:
        wanted = rules.parse_range(req.headers.get("range"), size)
    except rules.Unsatisfiable:
        return 416, FileBody(f, 0, b"text/plain", headers={**headers, b"Content-Range": b"bytes */%d" % size})
    if wanted is None:
        return 200, FileBody(f, size, media.media_type.encode("latin-1"), headers=headers)
    offset, length = wanted
    headers[b"Content-Range"] = b"bytes %d-%d/%d" % (offset, offset + length - 1, size)
    return 206, FileBody(f, length, media.media_type.encode("latin-1"), offset=offset, headers=headers)


async def upload(hs, req: ApiRequest):
    """POST /_matrix/media/v3/upload: the body is the file (``filename`` query parameter, ``Content-Type``)."""
    uri = await hs.media.upload(req.user_id, req.body_file, req.headers.get("content-type"), req.arg("filename"))
    return {"content_uri": uri}


async def create(hs, req: ApiRequest):
    """POST /_matrix/media/v1/create: an ``mxc://`` URI to upload to later (``rc_media_create``)."""
    hs.ratelimit.check_user(hs.ratelimit.media_create, req.user_id)
    return await hs.media.create(req.user_id)


async def upload_to(hs, req: ApiRequest):
    """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}: the content of a URI from /create."""
    await hs.media.upload_to(req.user_id, req.path_params["serverName"], req.path_params["mediaId"],
                             req.body_file, req.headers.get("content-type"), req.arg("filename"))
    return {}


async def config(hs, req: ApiRequest):
    """GET .../media/config."""
    return {"m.upload.size": hs.media.max_upload_size}


async def download(hs, req: ApiRequest, legacy: bool):
    """GET .../download/{serverName}/{mediaId}[/{fileName}]."""
    media = await hs.media.media(req.path_params["serverName"], req.path_params["mediaId"], legacy=legacy,
                                 allow_remote=req.bool_arg("allow_remote", True),
                                 timeout_ms=req.int_arg("timeout_ms", DEFAULT_TIMEOUT_MS, minimum=0),
                                 client_ip=req.client_ip)
    return file_answer(req, media, req.path_params.get("fileName"))


async def thumbnail(hs, req: ApiRequest, legacy: bool):
    """GET .../thumbnail/{serverName}/{mediaId}?width&height[&method][&animated]."""
    media = await hs.media.thumbnail(
        req.path_params["serverName"], req.path_params["mediaId"], *thumbnail_args(req), legacy=legacy,
        allow_remote=req.bool_arg("allow_remote", True),
        timeout_ms=req.int_arg("timeout_ms", DEFAULT_TIMEOUT_MS, minimum=0), client_ip=req.client_ip)
    return file_answer(req, media)


def thumbnail_args(req: ApiRequest) -> tuple[int, int, str, bool]:
    """width, height (required), method (default scale) and animated (default false, spec v1.11+) of a
    thumbnail request."""
    width, height = req.int_arg("width"), req.int_arg("height")
    if width is None or height is None:
        raise missing_param("width and height are required")
    return width, height, req.arg("method", "scale"), req.bool_arg("animated")


def _max_upload(hs) -> int:
    return hs.media.max_upload_size


def _spool(hs):
    return hs.media.new_spool


def _route(method: str, path: str, handler, auth: str = AUTH_USER, **kw) -> Endpoint:
    return Endpoint(method, path, handler, auth=auth, prefixes=NO_PREFIX, **kw)


ROUTES = [
    _route("POST", f"{LEGACY}/upload", upload, max_body=_max_upload, spool=_spool),
    _route("PUT", f"{LEGACY}/upload/{{serverName}}/{{mediaId}}", upload_to, max_body=_max_upload, spool=_spool),
    _route("POST", "/_matrix/media/v1/create", create),
    _route("GET", f"{AUTHED}/config", config),
    _route("GET", f"{LEGACY}/config", config),
    _route("GET", f"{AUTHED}/download/{{serverName}}/{{mediaId}}", partial(download, legacy=False)),
    _route("GET", f"{AUTHED}/download/{{serverName}}/{{mediaId}}/{{fileName}}", partial(download, legacy=False)),
    _route("GET", f"{AUTHED}/thumbnail/{{serverName}}/{{mediaId}}", partial(thumbnail, legacy=False)),
    _route("GET", f"{LEGACY}/download/{{serverName}}/{{mediaId}}", partial(download, legacy=True), AUTH_NONE),
    _route("GET", f"{LEGACY}/download/{{serverName}}/{{mediaId}}/{{fileName}}", partial(download, legacy=True),
           AUTH_NONE),
    _route("GET", f"{LEGACY}/thumbnail/{{serverName}}/{{mediaId}}", partial(thumbnail, legacy=True), AUTH_NONE),
]

"""The web console's static files (``/_hexagone/console/``): a small front end over the admin API, read from
the package's ``console`` folder. The files are public; every figure they show comes from the admin API, which
answers server admins only."""

from __future__ import annotations

import os

from homeserver.bodies import RawBody
from homeserver.errors import MatrixError
from homeserver.http.router import AUTH_NONE, NO_PREFIX, ApiRequest, Endpoint

PREFIX = "/_hexagone/console"
FOLDER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "console")
# The page runs only its own files, talks only to this server, and cannot be framed (clickjacking).
HEADERS = {b"Content-Security-Policy": b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                                      b"base-uri 'none'; form-action 'self'",
           b"X-Frame-Options": b"DENY", b"X-Content-Type-Options": b"nosniff", b"Referrer-Policy": b"no-referrer",
           b"Cache-Control": b"no-cache"}
TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
         ".css": b"text/css; charset=utf-8", ".svg": b"image/svg+xml"}


def console_file(name: str) -> RawBody:
    """The file ``name`` of the console folder (no sub-folders: a name with a slash or dot-dot is not one)."""
    base, ext = os.path.splitext(name)
    if not base or "/" in name or "\\" in name or name.startswith(".") or ext not in TYPES:
        raise MatrixError(404, "M_NOT_FOUND", "No such file")
    try:
        with open(os.path.join(FOLDER, name), "rb") as f:
            return RawBody(f.read(), TYPES[ext], HEADERS)
    except FileNotFoundError:
        raise MatrixError(404, "M_NOT_FOUND", "No such file") from None


async def index(hs, req: ApiRequest):
    return console_file("index.html")


async def asset(hs, req: ApiRequest):
    return console_file(req.path_params["name"])


ROUTES = [
    Endpoint("GET", PREFIX + "/", index, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", PREFIX + "/{name}", asset, auth=AUTH_NONE, prefixes=NO_PREFIX),
]

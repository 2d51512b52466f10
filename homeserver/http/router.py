"""Route table and the request model handed to endpoint handlers.

Handlers are plain ``async def handler(request: ApiRequest) -> (status, body)``
functions (or return just a body for 200). Each route declares its auth scheme;
the site enforces it once, so handlers never parse tokens.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from homeserver.errors import MatrixError, bad_json

# Auth schemes an endpoint can declare.
AUTH_NONE = "none"          # public endpoint
AUTH_USER = "user"          # access token required
AUTH_OPTIONAL = "optional"  # access token used when present
AUTH_SERVER = "server"      # X-Matrix signed federation request


@dataclass(frozen=True)
class Requester:
    """Who is making a client request."""

    user_id: str
    device_id: str | None
    access_token: str
    is_admin: bool = False
    appservice_id: str | None = None


@dataclass
class ApiRequest:
    """What a handler sees of an HTTP request: no Twisted objects."""

    method: str
    path: str
    path_params: dict[str, str]
    args: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client_ip: str
    requester: Requester | None = None
    origin: str | None = None  # authenticated federation origin
    uri: str = ""  # the request target as sent (path and query), signed by X-Matrix
    _json: Any = field(default=None, repr=False)
    on_disconnect: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for value in self.path_params.values():
            _no_nul(value, "Path parameter")

    def json(self, *, allow_empty: bool = False) -> dict:
        """Parse the body as a JSON object (``M_NOT_JSON`` / ``M_BAD_JSON`` otherwise)."""
        if self._json is not None:
            return self._json
        if not self.body.strip():
            if allow_empty:
                self._json = {}
                return self._json
            raise MatrixError(400, "M_NOT_JSON", "Content not JSON.")
        try:
            value = json.loads(self.body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            raise MatrixError(400, "M_NOT_JSON", "Content not JSON.")
        if not isinstance(value, dict):
            raise bad_json("Content must be a JSON object.")
        self._json = value
        return value

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.args.get(name)
        return _no_nul(values[-1], f"Query parameter {name!r}") if values else default

    def int_arg(self, name: str, default: int | None = None, *, minimum: int | None = None) -> int | None:
        raw = self.arg(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} must be an integer")
        if not -2 ** 63 <= value < 2 ** 63:  # what the databases store
            raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} is out of range")
        if minimum is not None and value < minimum:
            raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} must be >= {minimum}")
        return value

    def bool_arg(self, name: str, default: bool = False) -> bool:
        raw = self.arg(name)
        if raw is None:
            return default
        if raw in ("true", "1"):
            return True
        if raw in ("false", "0"):
            return False
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} must be true or false")

    @property
    def user_id(self) -> str:
        assert self.requester is not None, "route must declare AUTH_USER"
        return self.requester.user_id


Handler = Callable[[ApiRequest], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # e.g. /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
    regex: re.Pattern
    handler: Handler
    auth: str
    rate_limited: bool


def _no_nul(value: str, what: str) -> str:
    """No identifier or token holds U+0000, and PostgreSQL text cannot: 400, not a failed query."""
    if "\x00" in value:
        raise MatrixError(400, "M_INVALID_PARAM", f"{what} contains a NUL character")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


_PARAM = re.compile(r"\{(\w+)\}")


def _compile(template: str) -> re.Pattern:
    pattern = ""
    pos = 0
    for m in _PARAM.finditer(template):
        pattern += re.escape(template[pos:m.start()])
        pattern += f"(?P<{m.group(1)}>[^/]+)"
        pos = m.end()
    pattern += re.escape(template[pos:])
    return re.compile("^" + pattern + "$")


class Router:
    """Maps (method, path) to a route; tells 404 (no path) from 405 (wrong method)."""

    CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, auth: str = AUTH_USER,
            rate_limited: bool = False) -> None:
        self.routes.append(Route(method, template, _compile(template), handler, auth, rate_limited))

    def client(self, method: str, path: str, handler: Handler, *, auth: str = AUTH_USER,
               rate_limited: bool = False, versions: tuple[str, ...] = CLIENT_PREFIXES) -> None:
        """Register a client-server endpoint under each of its version prefixes."""
        for prefix in versions:
            self.add(method, prefix + path, handler, auth=auth, rate_limited=rate_limited)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | tuple[None, list[str]]:
        allowed: list[str] = []
        for route in self.routes:
            m = route.regex.match(path)
            if m is None:
                continue
            if route.method == method:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
            allowed.append(route.method)
        return None, allowed

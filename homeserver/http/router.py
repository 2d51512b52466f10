"""Route table and the request model handed to endpoint handlers.

Each API module declares one ``ROUTES`` table of :class:`Endpoint` rows; its handlers are
module-level ``async def handler(hs, request: ApiRequest) -> (status, body)`` functions (or return
just a body for 200), bound to the homeserver by :meth:`Router.bind`. Each route declares its auth
scheme; the site enforces it once, so handlers never parse tokens.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from homeserver.errors import MatrixError, bad_json
from homeserver.requester import Requester

# Auth schemes an endpoint can declare.
AUTH_NONE = "none"          # public endpoint
AUTH_USER = "user"          # access token required
AUTH_OPTIONAL = "optional"  # access token used when present
AUTH_SERVER = "server"      # X-Matrix signed federation request
AUTH_ADMIN = "admin"        # access token of a server admin (anyone else: 403 M_FORBIDDEN)


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
    body_file: Any = None  # a spooled route's body, already on disk (Endpoint.spool); ``body`` is then empty
    _json: Any = field(default=None, repr=False)
    on_disconnect: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for value in self.path_params.values():
            _no_nul(value, "Path parameter")

    def json(self, *, allow_empty: bool = False) -> dict:
        """Parse the body as a JSON object (``M_NOT_JSON`` / ``M_BAD_JSON`` otherwise, see parse_json)."""
        if self._json is not None:
            return self._json
        if not self.body.strip():
            if allow_empty:
                self._json = {}
                return self._json
            raise MatrixError(400, "M_NOT_JSON", "Content not JSON.")
        value = parse_json(self.body)
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
    max_body: int | None = None  # bytes; None: the site's default for the route's auth scheme
    spool: Callable[[], Any] | None = None  # makes the file a streamed body is written to, as it arrives


CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")
NO_PREFIX = ("",)  # the endpoint's path is absolute (federation, keys, /_synapse/admin, /.well-known)


@dataclass(frozen=True)
class Endpoint:
    """One row of an API module's ``ROUTES`` table.

    ``handler`` is a module-level ``async def handler(hs, req)`` (one shared by several routes takes
    its differences as keywords through ``functools.partial``); the route is served under each of
    ``prefixes`` (a client-server endpoint under its version prefixes by default).

    A large body (media uploads) is never held in memory: ``spool(hs)`` returns the factory of the file its
    bytes are written to while they arrive (the handler gets it as ``req.body_file``), and ``max_body`` may
    then be ``max_body(hs)``, a limit read from the configuration."""

    method: str
    path: str
    handler: Callable[[Any, ApiRequest], Awaitable[Any]]
    auth: str = AUTH_USER
    prefixes: tuple[str, ...] = CLIENT_PREFIXES
    max_body: int | Callable[[Any], int] | None = None
    spool: Callable[[Any], Callable[[], Any]] | None = None


MAX_JSON_DEPTH = 100  # nested objects and arrays; deeper is refused before any handler sees it
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _DuplicateKey(Exception):
    pass


def _no_nul(value: str, what: str) -> str:
    """No identifier or token holds U+0000, and PostgreSQL text cannot: 400, not a failed query."""
    if "\x00" in value:
        raise MatrixError(400, "M_INVALID_PARAM", f"{what} contains a NUL character")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def parse_json(raw: bytes, what: str = "Content") -> Any:
    """Spec v1.19 "API standards": JSON text in UTF-8. Not UTF-8 (UTF-16/32 included), not JSON, or
    NaN/Infinity: 400 ``M_NOT_JSON``. JSON we refuse to hold: 400 ``M_BAD_JSON`` for a key twice in one
    object (parsers disagree on which value wins, so signed or canonical JSON must not have any), nesting
    deeper than MAX_JSON_DEPTH, or an escaped lone surrogate (no UTF-8 can carry it back out)."""
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except _DuplicateKey as e:
        raise bad_json(f"{what}: key {e.args[0]!r} appears twice in one object") from None
    except RecursionError:
        raise bad_json(f"{what}: JSON nested too deeply") from None
    except ValueError:  # UnicodeDecodeError included
        raise MatrixError(400, "M_NOT_JSON", f"{what} not JSON.") from None
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH or _SURROGATE_ESCAPE.search(raw):
        _check_depth_and_text(value, what)  # only when the bytes say it may be needed: cheap otherwise
    return value


def _check_depth_and_text(value: Any, what: str) -> None:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise bad_json(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH}")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str):
                    _check_text(key, what)
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            _check_text(item, what)


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_json(f"{what}: a string holds a lone surrogate (\\uD800-\\uDFFF)") from None


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

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, auth: str = AUTH_USER,
            max_body: int | None = None, spool: Callable[[], Any] | None = None) -> None:
        self.routes.append(Route(method, template, _compile(template), handler, auth, max_body, spool))

    def bind(self, hs: Any, routes: list[Endpoint]) -> None:
        """Register an API module's ``ROUTES`` table, each handler bound to the homeserver ``hs``."""
        for endpoint in routes:
            handler = partial(endpoint.handler, hs)
            max_body = endpoint.max_body(hs) if callable(endpoint.max_body) else endpoint.max_body
            spool = endpoint.spool(hs) if endpoint.spool is not None else None
            for prefix in endpoint.prefixes:
                self.add(endpoint.method, prefix + endpoint.path, handler, auth=endpoint.auth,
                         max_body=max_body, spool=spool)

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

"""The one async adapter between Twisted's resource API and our handlers.

It routes, authenticates (per the route's declared scheme), rate-limits,
renders errors once, adds CORS headers and logs one line per request.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote_plus
from typing import Any, Awaitable, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.protocols import policies
from twisted.web import resource, server
from twisted.web.http import Request
from zope.interface import implementer

from homeserver.bodies import FileBody, RawBody, encode_json
from homeserver.config import ListenerConfig
from homeserver.errors import MatrixError
from homeserver.http.guest_access import check_guest_may_call
from homeserver.http.router import AUTH_ADMIN, AUTH_NONE, AUTH_OPTIONAL, AUTH_SERVER, ApiRequest, Router
from homeserver.http.listener import ListenerPolicy, ListenerRequest, listener_site
from homeserver.metrics import Metrics
from homeserver.requester import Requester
from homeserver.services.ratelimit import Tarpit

logger = logging.getLogger("homeserver.access")

# Body limits, unless a route declares its own (Route.max_body, e.g. media uploads). As in Synapse, the
# largest JSON body expected is a full federation transaction: 50 PDUs of 64 KiB and their EDUs.
JSON_BODY_LIMIT = 200 * 65536
UNAUTHENTICATED_BODY_LIMIT = 64 * 1024  # AUTH_NONE routes (login, register): small JSON objects
# Query parameters that are secrets, never written to the access log.
SECRET_PARAMS = frozenset({"access_token", "token", "client_secret", "loginToken", "login_token", "password"})

CORS_HEADERS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"GET, HEAD, POST, PUT, DELETE, OPTIONS",
    b"Access-Control-Allow-Headers": b"X-Requested-With, Content-Type, Authorization, Date",
}

TokenResolver = Callable[[str], Awaitable[Requester]]
ServerAuthenticator = Callable[[ApiRequest], Awaitable[str]]
# rc_federation: run(origin, call) runs a federation request under its origin's limits.
FederationLimit = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
DbCounters = Callable[[], tuple[int, int]]  # (transactions, round trips) so far
# (token, client ip, ?user_id=, ?device_id=) -> the requester when the token is an appservice's, else None
AppServiceAuthenticator = Callable[[str, str, str | None, str | None], Awaitable[Requester | None]]
ThreadRunner = Callable[..., defer.Deferred]  # run_in_thread(fn, *args): fn(*args) on a thread pool


def access_token_of(req: ApiRequest) -> str | None:
    """Spec "Using access tokens": the Authorization header, or the access_token query parameter."""
    header = req.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if scheme != "X-Matrix":
            raise MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header")
    return req.arg("access_token")


class MatrixResource(resource.Resource):
    """A leaf resource serving every path through the router."""

    isLeaf = True

    def __init__(self, router: Router, resolve_token: TokenResolver,
                 authenticate_server: ServerAuthenticator | None = None,
                 max_body: int = JSON_BODY_LIMIT,
                 db_counters: DbCounters | None = None,
                 room_gate: Callable[[str], Awaitable[None]] | None = None,
                 federation_limit: FederationLimit | None = None,
                 tarpit: Tarpit | None = None,
                 authenticate_appservice: AppServiceAuthenticator | None = None,
                 file_reads: ThreadRunner | None = None, metrics: Metrics | None = None,
                 check_locked: Callable[[str], None] | None = None):
        super().__init__()
        self._check_locked = check_locked  # raises M_USER_LOCKED for a locked account (Endpoint.locked_ok)
        self._metrics = metrics  # request counts and latencies per endpoint
        self._authenticate_appservice = authenticate_appservice
        self._router = router
        self._room_gate = room_gate  # awaited before a request about a room (a join still completing)
        self._db_counters = db_counters
        self._resolve_token = resolve_token
        self._authenticate_server = authenticate_server
        self._federation_limit = federation_limit
        self._tarpit = tarpit  # delays the 429s of a client that ignores retry_after_ms
        self._max_body = max_body
        self._file_reads = file_reads  # where the reads of a streamed file run (None: on the reactor thread)
        self.in_flight: set[Request] = set()
        self._drained: list[defer.Deferred] = []

    def render(self, request: Request):  # Twisted entry point
        self.in_flight.add(request)
        request.notifyFinish().addBoth(self._finished, request)
        d = defer.ensureDeferred(self._handle(request))
        d.addErrback(self._unexpected, request)
        return server.NOT_DONE_YET

    def _finished(self, result, request: Request):
        self.in_flight.discard(request)
        if not self.in_flight:
            waiters, self._drained = self._drained, []
            for d in waiters:
                d.callback(None)
        return None

    def wait_drained(self) -> defer.Deferred:
        """Fires once no request is in flight (used for a clean shutdown)."""
        if not self.in_flight:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drained.append(d)
        return d

    async def _handle(self, request: Request) -> None:
        start = time.monotonic()
        db_before = self._db_counters() if self._db_counters is not None else None
        status = 500
        method = request.method.decode("ascii")
        servlet = request.matched[0].template if request.matched and request.matched[0] is not None else None
        if self._metrics is not None:
            self._metrics.request_received(method, servlet)
        try:
            if method == "OPTIONS":
                status, body = 200, {}
            else:
                status, body = await self._dispatch(request, method)
        except MatrixError as e:
            status, body = e.status, e.to_json()
        except Exception:
            logger.exception("Unhandled error on %s %s", method, request.path.decode("utf-8", "replace"))
            status, body = 500, {"errcode": "M_UNKNOWN", "error": "Internal server error"}
        self._respond(request, status, body)
        elapsed = time.monotonic() - start
        if self._metrics is not None:
            self._metrics.request_done(method, servlet, status, elapsed)
        logger.info("%s %s %s %d %.1fms", request.getClientAddress().host, method,
                    _loggable_path(request), status, elapsed * 1000)
        if db_before is not None and logger.isEnabledFor(logging.DEBUG):
            txns, trips = (now - before for now, before in zip(self._db_counters(), db_before))
            logger.debug("%s %s: %d database transactions, %d round trips (with any concurrent request's)",
                         method, request.path.decode("utf-8", "replace"), txns, trips)

    def route_for(self, method: str, path: str) -> tuple[tuple, int]:
        """The router's answer for a request line, and the largest body that request may send."""
        matched = self._router.match("GET" if method == "HEAD" else method, path)
        route = matched[0]
        if route is None:
            return matched, self._max_body
        if route.max_body is not None:
            return matched, route.max_body
        return matched, UNAUTHENTICATED_BODY_LIMIT if route.auth == AUTH_NONE else self._max_body

    async def _dispatch(self, request: ListenerRequest, method: str) -> tuple[int, Any]:
        path = request.path.decode("utf-8", "replace")
        if not request.serves(path):
            raise MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
        route, found = request.matched
        if route is None:
            if found:
                raise MatrixError(405, "M_UNRECOGNIZED", "Unrecognized request")
            raise MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
        spooled = route.spool is not None and request.content is not None
        # A spooled body stays in its file; any other is at most route_for's limit.
        body = request.content.read() if request.content is not None and not spooled else b""
        req = ApiRequest(
            method=method, path=path, path_params=found, args=_query_args(request.args),
            headers={k.decode().lower(): v[-1].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()},
            body=body, client_ip=request.getClientAddress().host, uri=request.uri.decode("utf-8", "replace"),
            body_file=request.content if spooled else None,
        )
        request.notifyFinish().addErrback(lambda _: [cb() for cb in req.on_disconnect])
        try:
            result = await self._call(route, found, req)
        except MatrixError as e:
            if e.errcode == "M_LIMIT_EXCEEDED" and self._tarpit is not None:
                client = req.requester.user_id if req.requester is not None else req.origin or req.client_ip
                await self._tarpit.refused(client, e.extra.get("retry_after_ms", 1000))
            raise
        finally:
            if spooled:
                request.content.discard()  # no-op once the handler has kept the file
        if isinstance(result, tuple):
            return result
        return 200, result

    async def _call(self, route, found: dict, req: ApiRequest) -> Any:
        await self._authenticate(route.auth, req)
        if req.requester is not None and self._check_locked is not None and not route.locked_ok:
            self._check_locked(req.requester.user_id)
        if req.requester is not None and req.requester.is_guest and route.auth != AUTH_OPTIONAL:
            check_guest_may_call(route.method, route.template)
        room = found.get("roomId") or found.get("roomIdOrAlias")  # the gate resolves an alias
        if self._room_gate is not None and room is not None:
            await self._room_gate(room)
        if route.auth == AUTH_SERVER and self._federation_limit is not None:
            return await self._federation_limit(req.origin, lambda: route.handler(req))
        return await route.handler(req)

    async def _authenticate(self, scheme: str, req: ApiRequest) -> None:
        if scheme == AUTH_NONE:
            return
        if scheme == AUTH_SERVER:
            if self._authenticate_server is None:
                raise MatrixError(401, "M_UNAUTHORIZED", "Federation is not enabled")
            req.origin = await self._authenticate_server(req)
            return
        token = access_token_of(req)
        if token is None:
            if scheme == AUTH_OPTIONAL:
                return
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        if self._authenticate_appservice is not None:
            # Application service API "Identity assertion": ?user_id= and (MSC4326) ?device_id=
            req.requester = await self._authenticate_appservice(
                token, req.client_ip, req.arg("user_id"), req.arg("device_id", req.arg("org.matrix.msc3202.device_id")))
            if req.requester is not None:
                return
        req.requester = await self._resolve_token(token)
        if scheme == AUTH_ADMIN and not req.requester.is_admin:
            raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")

    def _respond(self, request: Request, status: int, body: Any) -> None:
        if request.finished or request._disconnected:
            if isinstance(body, FileBody):
                body.file.close()
            return
        if isinstance(body, FileBody):
            self._respond_file(request, status, body)
            return
        if isinstance(body, (bytes, RawBody)):
            payload = body.data if isinstance(body, RawBody) else body
            content_type = body.content_type if isinstance(body, RawBody) else b"application/octet-stream"
        else:
            payload = encode_json(body)
            content_type = b"application/json"
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Content-Length", str(len(payload)).encode())
        if status == 429 and isinstance(body, dict) and isinstance(body.get("retry_after_ms"), int):
            # MSC4041, as Synapse sends it: the wait in whole seconds, rounded up.
            request.setHeader(b"Retry-After", str(-(-body["retry_after_ms"] // 1000)).encode())
        for k, v in CORS_HEADERS.items():
            request.setHeader(k, v)
        for k, v in (body.headers.items() if isinstance(body, RawBody) else ()):
            request.setHeader(k, v)
        if request.method != b"HEAD":
            request.write(payload)
        request.finish()

    def _respond_file(self, request: Request, status: int, body: FileBody) -> None:
        """Stream a file body: the transport pulls the next chunk only once the previous one is sent."""
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", body.content_type)
        request.setHeader(b"Content-Length", str(body.total).encode())
        for k, v in {**CORS_HEADERS, **body.headers}.items():
            request.setHeader(k, v)
        if request.method == b"HEAD":
            body.file.close()
            request.finish()
            return
        # Handled: only bytes remain to be sent, which a shutdown does not wait for (a slow client could hold
        # it for ever); the connections still open are closed then.
        self._finished(None, request)
        FileProducer(request, body, self._file_reads).start()

    def _unexpected(self, failure, request: Request):
        logger.error("Request failed: %s", failure.getTraceback())
        if not request.finished and not request._disconnected:
            request.setResponseCode(500)
            request.finish()


@implementer(IPushProducer)
class FileProducer:
    """Writes a :class:`FileBody` to a request, chunk after chunk until the transport asks for a pause (a slow
    client holds back the reads instead of the server buffering the file). With ``read_in_thread``, each read
    runs on a thread, so a file not in the page cache never blocks the reactor."""

    CHUNK = 1024 * 1024

    def __init__(self, request: Request, body: FileBody, read_in_thread: ThreadRunner | None = None):
        self._request = request
        self._body = body
        self._read_in_thread = read_in_thread
        self._left = body.length
        self._parts = [body.prefix] if body.prefix else []
        self._paused = self._reading = self._stopped = False

    def start(self) -> None:
        self._body.file.seek(self._body.offset)
        self._request.registerProducer(self, True)
        self._request.notifyFinish().addBoth(self._finished)
        self._produce()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._produce()

    def stopProducing(self) -> None:
        self._stopped = True
        if not self._reading:
            self._body.file.close()

    def _finished(self, _result) -> None:
        self.stopProducing()

    def _produce(self) -> None:
        while not (self._paused or self._reading or self._stopped):
            if self._parts:
                self._request.write(self._parts.pop())
            elif self._left <= 0:
                self._end()
            elif self._read_in_thread is None:
                self._write(self._body.file.read(min(self.CHUNK, self._left)))
            else:
                self._reading = True
                d = self._read_in_thread(self._body.file.read, min(self.CHUNK, self._left))
                d.addCallbacks(self._read_done, self._read_failed)
                return

    def _read_done(self, data: bytes) -> None:
        self._reading = False
        if self._stopped:
            self._body.file.close()
            return
        self._write(data)
        self._produce()

    def _read_failed(self, failure) -> None:
        self._reading = False
        logger.error("Reading a file being sent failed: %s", failure.getErrorMessage())
        self._stopped = True
        self._body.file.close()
        self._request.loseConnection()  # the client sees a short body, never wrong bytes

    def _write(self, data: bytes) -> None:
        if not data:  # the file is shorter than announced: end early, the client sees a short body
            self._left = 0
            return
        self._left -= len(data)
        self._request.write(data)

    def _end(self) -> None:
        self._stopped = True
        if self._body.suffix:
            self._request.write(self._body.suffix)
        self._request.unregisterProducer()
        self._request.finish()
        self._body.file.close()


def _query_args(args: dict[bytes, list[bytes]]) -> dict[str, list[str]]:
    """Query parameters as text: names and values must be UTF-8 (spec "API standards")."""
    try:
        return {k.decode("utf-8"): [v.decode("utf-8") for v in vs] for k, vs in args.items()}
    except UnicodeDecodeError:
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameters must be UTF-8") from None


def _loggable_path(request: Request) -> str:
    """The request path with secret query parameters (SECRET_PARAMS, however encoded) redacted."""
    uri = request.uri.decode("utf-8", "replace")
    path, _, query = uri.partition("?")
    if not query:
        return path
    parts = []
    for part in query.split("&"):
        name = unquote_plus(part.partition("=")[0])
        parts.append(f"{name}=<redacted>" if name in SECRET_PARAMS else part)
    return path + "?" + "&".join(parts)


class ConnectionTracker(policies.WrappingFactory):
    """Wraps the Site to know its open connections, so a shutdown can close them after their bytes are sent."""

    def __init__(self, site: server.Site):
        super().__init__(site)
        self._closed_waiters: list[defer.Deferred] = []

    def unregisterProtocol(self, p) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiters, self._closed_waiters = self._closed_waiters, []
            for d in waiters:
                d.callback(None)

    def close_connections(self) -> defer.Deferred:
        """loseConnection (which flushes first) on every connection; fires when all are closed."""
        if not self.protocols:
            return defer.succeed(None)
        d = defer.Deferred()
        self._closed_waiters.append(d)
        for wrapper in list(self.protocols):
            wrapper.loseConnection()
        return d

    def abort_connections(self) -> None:
        """Drop whatever is still open (e.g. a TLS peer that never answers our close_notify)."""
        for wrapper in list(self.protocols):
            wrapper.abortConnection()


def make_site(root: MatrixResource, listener: ListenerConfig) -> ConnectionTracker:
    """The site of one listener: its resources, x_forwarded and trusted proxies."""
    policy = ListenerPolicy.build(root.route_for, listener.resources, listener.x_forwarded,
                                  listener.trusted_proxies)
    site = listener_site(root, policy)
    site.noisy = False
    site.displayTracebacks = False
    # Access logging is ours (one line per request, secrets removed).
    site.log = lambda request: None
    return ConnectionTracker(site)

"""Outbound federation HTTP: signed JSON requests to other homeservers.

Spec v1.19 server-server "API standards", "TLS", "Resolving server names" and
"Request Authentication". Every request is signed (``X-Matrix``); the
destination is found with :mod:`federation.discovery`; connections are TLS with
certificate checks (:mod:`federation.tls`) and go only to IP addresses allowed by
``ip_range_blacklist``/``ip_range_whitelist`` (checked on the resolved address
actually connected to). ``federation_domain_whitelist`` applies outbound too.
"""

from __future__ import annotations

import json
import logging
import socket
from io import BytesIO
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectingCancelledError, DNSLookupError, TimeoutError as TwistedTimeoutError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.http_headers import Headers
from zope.interface import implementer

from federation.discovery import ServerResolver, WellKnownResponse, tls_name_of, twisted_srv_lookup
from federation.peers import FederationPeers
from federation.policy import IpRangeFilter, is_ip_literal
from federation.request_auth import sign_request
from federation.tls import TlsClientEndpoint
from homeserver.events.canonical_json import encode_canonical_json

logger = logging.getLogger(__name__)

try:
    from importlib.metadata import version as _dist_version
    HEXAGONE_VERSION = _dist_version("hexagone")
except Exception:  # running from a source tree that is not installed
    HEXAGONE_VERSION = "0.1.0"

USER_AGENT = f"Hexagone/{HEXAGONE_VERSION}".encode("ascii")
FEDERATION_SCHEME = b"matrix-federation"
MAX_RESPONSE_SIZE = 100 * 1024 * 1024
MAX_REDIRECTS = 5
_CANCELLED = (defer.CancelledError, ConnectingCancelledError)  # our caller gave up: stop trying


class FederationRequestError(Exception):
    """An outbound federation request failed."""


class RequestSendFailed(FederationRequestError):
    """No answer: name resolution, connection, TLS or timeout failure."""


class BlockedAddressError(RequestSendFailed):
    """Every address of the destination is refused by ``ip_range_blacklist``."""


class FederationDeniedError(FederationRequestError):
    """The destination is not in ``federation_domain_whitelist``."""


class HttpResponseError(FederationRequestError):
    """The destination answered with a non-2xx status (or a body that is not a JSON object)."""

    def __init__(self, status: int, body: Any, message: str = ""):
        super().__init__(f"HTTP {status}: {message or body}")
        self.status = status
        self.body = body

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    """``matrix-federation://<name>`` -> the name's targets (SRV etc.); ``https://host:port`` -> that host."""

    def __init__(self, client: "FederationClient"):
        self._client = client

    def endpointForURI(self, uri):
        if uri.scheme == FEDERATION_SCHEME:
            name = uri.netloc.decode("ascii")
            return _CheckedTlsEndpoint(self._client, name, tls_name_of(name), None)
        if uri.scheme == b"https":
            host = uri.host.decode("ascii").strip("[]")
            return _CheckedTlsEndpoint(self._client, host, host, [(host, uri.port)])
        raise RequestSendFailed(f"unsupported URL scheme {uri.scheme!r}")


@implementer(IStreamClientEndpoint)
class _CheckedTlsEndpoint:
    """Connects over TLS to the first reachable allowed address of the targets, in order."""

    def __init__(self, client: "FederationClient", name: str, tls_name: str, targets: list[tuple[str, int]] | None):
        self._client = client
        self._name = name
        self._tls_name = tls_name
        self._targets = targets

    def connect(self, factory):
        return defer.ensureDeferred(self._connect(factory))

    async def _connect(self, factory):
        client = self._client
        targets = self._targets if self._targets is not None else await client.resolver.targets(self._name)
        blocked, errors = [], []
        for host, port in targets:
            try:
                addresses = await client.resolve_host(host, port)
            except _CANCELLED:
                raise
            except Exception as e:
                errors.append(f"{host}: {e}")
                continue
            for family, ip in addresses:
                if not client.ip_filter.allows(ip):
                    blocked.append(ip)
                    continue
                logger.info("Outbound connection to %s at %s port %d", self._name, ip, port)
                tcp_class = TCP6ClientEndpoint if family == socket.AF_INET6 else TCP4ClientEndpoint
                tcp = tcp_class(client.reactor, ip, port, timeout=client.connect_timeout_s)
                endpoint = TlsClientEndpoint(tcp, client.tls_policy.context, self._tls_name, client.reactor,
                                             client.connect_timeout_s)
                try:
                    return await endpoint.connect(factory)
                except _CANCELLED:
                    raise
                except Exception as e:
                    errors.append(f"{ip}:{port}: {e}")
        if blocked and not errors:
            raise BlockedAddressError(f"{self._name} resolves only to addresses refused by ip_range_blacklist "
                                      f"({', '.join(blocked)})")
        raise RequestSendFailed(f"cannot connect to {self._name}: {'; '.join(errors) or 'no address found'}")


class BodyReader(protocol.Protocol):
    """Collects a response body (or passes each chunk to ``sink``), refusing more than ``limit`` bytes."""

    def __init__(self, limit: int, sink: Callable[[bytes], None] | None = None):
        self.limit = limit
        self.sink = sink
        self.chunks: list[bytes] = []
        self.size = 0
        self.done: defer.Deferred = defer.Deferred(lambda _d: self.transport.loseConnection())

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            if not self.done.called:
                self.done.errback(RequestSendFailed(f"response larger than {self.limit} bytes"))
            self.transport.loseConnection()
            return
        if self.sink is None:
            self.chunks.append(data)
            return
        try:
            self.sink(data)
        except Exception as e:  # the sink refused what arrived: stop reading
            if not self.done.called:
                self.done.errback(RequestSendFailed(f"response refused: {e}"))
            self.transport.loseConnection()

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


class FederationClient:
    """``get_json`` / ``put_json`` / ``post_json`` to another homeserver, signed as this server."""

    def __init__(self, *, reactor, threads, server_name: str, signing_key, tls_policy, ip_filter: IpRangeFilter,
                 peers: FederationPeers, now_ms: Callable[[], int], lookup_srv=twisted_srv_lookup,
                 timeout_s: float = 60.0, connect_timeout_s: float = 10.0):
        self.reactor = reactor
        self._threads = threads  # WorkerThreads: getaddrinfo off the reactor thread
        self.server_name = server_name
        self.signing_key = signing_key
        self.tls_policy = tls_policy
        self.ip_filter = ip_filter
        self.peers = peers
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.resolver = ServerResolver(now_ms=now_ms, fetch_well_known=self.fetch_well_known, lookup_srv=lookup_srv)
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 5
        self._pool.cachedConnectionTimeout = 120
        self._pool.retryAutomatically = False
        self._agent = Agent.usingEndpointFactory(reactor, _EndpointFactory(self), pool=self._pool)

    async def get_json(self, destination: str, path: str, args: dict | None = None, *,
                       timeout_s: float | None = None) -> dict:
        return await self.request_json("GET", destination, path, args, None, timeout_s=timeout_s)

    async def put_json(self, destination: str, path: str, content: Any, args: dict | None = None, *,
                       timeout_s: float | None = None, v1_wrapped: bool = False) -> dict:
        """``v1_wrapped``: a deprecated v1 membership endpoint, whose object answer comes as ``[200, {...}]``."""
        return await self.request_json("PUT", destination, path, args, content, timeout_s=timeout_s,
                                       v1_wrapped=v1_wrapped)

    async def post_json(self, destination: str, path: str, content: Any, args: dict | None = None, *,
                        timeout_s: float | None = None) -> dict:
        return await self.request_json("POST", destination, path, args, content, timeout_s=timeout_s)

    async def request_json(self, method: str, destination: str, path: str, args: dict | None = None,
                           content: Any = None, *, timeout_s: float | None = None,
                           v1_wrapped: bool = False) -> dict:
        """Sign and send one request; the 2xx JSON object answer, else a :class:`FederationRequestError`.

        ``path`` is already percent-encoded; ``args`` values are strings or lists of strings.
        """
        url, headers, body = await self._signed(method, destination, path, args, content)
        status, _headers, data = await self._send(method, url, headers, body, timeout_s or self.timeout_s)
        parsed = json_or_none(data)
        if not 200 <= status < 300:
            raise HttpResponseError(status, parsed if parsed is not None else data[:200])
        if v1_wrapped and isinstance(parsed, list) and len(parsed) == 2 and parsed[0] == 200:
            parsed = parsed[1]
        if not isinstance(parsed, dict):
            raise HttpResponseError(status, None, f"{destination} answered {method} {path} with no JSON object")
        return parsed

    async def get_stream(self, destination: str, path: str, args: dict | None,
                         sink_for: Callable[[dict[str, str]], Callable[[bytes], None]], *, limit: int,
                         timeout_s: float) -> dict[str, str]:
        """A signed GET whose 2xx body is passed to ``sink_for(headers)`` chunk by chunk as it arrives (media
        downloads), refused past ``limit`` bytes; its headers, else a :class:`FederationRequestError`."""
        url, headers, _ = await self._signed("GET", destination, path, args, None)
        status, response_headers, data = await self._send("GET", url, headers, None, timeout_s, limit=limit,
                                                          sink_for=sink_for)
        if not 200 <= status < 300:
            parsed = json_or_none(data)
            raise HttpResponseError(status, parsed if parsed is not None else data[:200])
        return response_headers

    async def _signed(self, method: str, destination: str, path: str, args: dict | None,
                      content: Any) -> tuple[bytes, Headers, bytes | None]:
        """The URL, signed headers and body of a request (spec "Request Authentication")."""
        if not self.peers.allows(destination):
            raise FederationDeniedError(f"{destination} is not in federation_domain_whitelist")
        uri = path + ("?" + urlencode(args, doseq=True) if args else "")
        host_header = await self.resolver.delegated_name(destination)
        headers = Headers({
            b"Host": [host_header.encode("ascii")],
            b"User-Agent": [USER_AGENT],
            b"Authorization": [sign_request(self.signing_key, self.server_name, destination, method, uri,
                                            content).encode("utf-8")],
        })
        body = None
        if content is not None:
            body = encode_canonical_json(content)
            headers.addRawHeader(b"Content-Type", b"application/json")
        return FEDERATION_SCHEME + b"://" + host_header.encode("ascii") + uri.encode("ascii"), headers, body

    async def fetch_well_known(self, hostname: str) -> WellKnownResponse:
        """``GET https://<hostname>/.well-known/matrix/server``, following https redirects."""
        status, headers, data = await self.get_https(f"https://{hostname}/.well-known/matrix/server", limit=51200,
                                                     timeout_s=15.0)
        return WellKnownResponse(status, headers, data)

    async def get_https(self, url: str, *, limit: int, timeout_s: float,
                        sink_for: Callable[[dict[str, str]], Callable[[bytes], None]] | None = None
                        ) -> tuple[int, dict[str, str], bytes]:
        """An unsigned GET of an https URL, following https redirects, to addresses allowed as for federation
        (a redirect another server gave us: its media's ``Location``); (status, headers, body), the 2xx body
        passed to ``sink_for(headers)`` instead when given."""
        for _ in range(MAX_REDIRECTS + 1):
            headers = Headers({b"User-Agent": [USER_AGENT]})
            status, response_headers, data = await self._send("GET", url.encode("ascii"), headers, None, timeout_s,
                                                              limit=limit, sink_for=sink_for)
            location = response_headers.get("location")
            if status in (301, 302, 303, 307, 308) and location:
                target = urlsplit(location)
                if target.scheme != "https" or not target.netloc:
                    raise RequestSendFailed(f"refusing non-https redirect to {location}")
                url = location
                continue
            return status, response_headers, data
        raise RequestSendFailed(f"too many redirects from {url}")

    async def _send(self, method: str, url: bytes, headers: Headers, body: bytes | None, timeout_s: float,
                    limit: int = MAX_RESPONSE_SIZE, sink_for=None) -> tuple[int, dict[str, str], bytes]:
        async def attempt():
            producer = FileBodyProducer(BytesIO(body)) if body is not None else None
            response = await self._agent.request(method.encode("ascii"), url, headers, producer)
            flat = {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                    for k, v in response.headers.getAllRawHeaders()}
            streamed = sink_for is not None and 200 <= response.code < 300
            reader = BodyReader(limit, sink_for(flat) if streamed else None)
            response.deliverBody(reader)
            data = await reader.done
            return response.code, flat, data

        d = defer.ensureDeferred(attempt())
        d.addTimeout(timeout_s, self.reactor)
        try:
            return await d
        except (FederationRequestError, defer.CancelledError):  # cancelled by our caller, not by the timeout
            raise
        except (defer.TimeoutError, TwistedTimeoutError):
            raise RequestSendFailed(f"{method} {url.decode('ascii', 'replace')} timed out after {timeout_s}s") \
                from None
        except Exception as e:
            target = url.decode('ascii', 'replace')
            raise RequestSendFailed(f"{method} {target} failed: {describe_failure(e)}") from None

    async def resolve_host(self, host: str, port: int) -> list[tuple[int, str]]:
        return await resolve_host(self._threads, host, port)

    def close(self) -> defer.Deferred:
        """Close pooled connections (server shutdown)."""
        return self._pool.closeCachedConnections()


def json_or_none(data: bytes) -> Any:
    """The JSON value of ``data``; None when empty or not JSON."""
    try:
        return json.loads(data) if data else None
    except (ValueError, UnicodeDecodeError):
        return None


async def resolve_host(threads, host: str, port: int) -> list[tuple[int, str]]:
    """(family, ip) pairs of a host name (or the IP literal itself), without duplicates."""
    if is_ip_literal(host):
        bare = host.strip("[]")
        return [(socket.AF_INET6 if ":" in bare else socket.AF_INET, bare)]
    try:
        infos = await threads.run(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DNSLookupError(f"{host}: {e}") from None
    seen, out = set(), []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in seen:
            seen.add(sockaddr[0])
            out.append((family, sockaddr[0]))
    return out


def describe_failure(e: Exception) -> str:
    """A readable reason, unwrapping Twisted's ResponseFailed/ResponseNeverReceived lists."""
    reasons = getattr(e, "reasons", None)
    if reasons:
        return "; ".join(str(r.value) or r.value.__class__.__name__ for r in reasons)
    return str(e) or e.__class__.__name__

"""What the outbound HTTP clients to servers other than homeservers share: push gateways (spec v1.19 push
gateway API), identity servers (identity service API v2), application services (application service API) and
one configured origin (CAS, reCAPTCHA).

- :class:`FilteredEndpoints`: as Synapse does for URLs users give, each address the host resolves to is
  checked against an :class:`IpRangeFilter` (on the address actually connected to, so a DNS answer cannot slip
  past the check); TLS is federation's (``federation/tls.py``).
- :func:`direct_endpoint`: no filter, for URLs the administrator wrote.
- :class:`OutboundHttp`: one request with a timeout; every failure without an HTTP answer becomes the caller's
  :class:`Unreachable` subclass.
"""

from __future__ import annotations

import json
import socket
from io import BytesIO
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from federation.client import MAX_RESPONSE_SIZE, USER_AGENT, BodyReader, describe_failure, json_or_none, resolve_host
from federation.policy import IpRangeFilter
from federation.tls import ClientTlsPolicy, TlsClientEndpoint

CONNECT_TIMEOUT_S = 10


class Unreachable(Exception):
    """No HTTP answer: refused address or URL, connection or TLS failure, or ``timed_out``."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


def _with_tls(endpoint, scheme: bytes, host: str, reactor, tls_policy: ClientTlsPolicy):
    if scheme != b"https":
        return endpoint
    return TlsClientEndpoint(endpoint, tls_policy.context, host, reactor, CONNECT_TIMEOUT_S)


def direct_endpoint(reactor, tls_policy: ClientTlsPolicy, scheme: bytes, host: str, port: int):
    """TCP to ``host`` (names resolved by the reactor), with TLS on top for ``https``."""
    return _with_tls(HostnameEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT_S), scheme, host, reactor,
                     tls_policy)


def _no_delay(transport) -> None:
    """TCP_NODELAY on the socket under ``transport`` (TLS wraps it): a request's headers and body are two writes."""
    while transport is not None and not hasattr(transport, "setTcpNoDelay"):
        transport = getattr(transport, "transport", None)
    if transport is not None:
        transport.setTcpNoDelay(True)


@implementer(IStreamClientEndpoint)
class _Connecting:
    def __init__(self, connect):
        self._connect = connect

    def connect(self, factory):
        return defer.ensureDeferred(self._connect(factory))


@implementer(IAgentEndpointFactory)
class FilteredEndpoints:
    """The first address of the URL's host that ``ip_filter`` allows and that answers. ``blacklist``: the
    config key named when an address is refused; ``https_only``: any other scheme is refused."""

    def __init__(self, *, reactor, threads, ip_filter: IpRangeFilter, tls_policy: ClientTlsPolicy,
                 unreachable: type[Unreachable], blacklist: str, https_only: bool = False):
        self._reactor = reactor
        self._threads = threads
        self._ip_filter = ip_filter
        self._tls_policy = tls_policy
        self._unreachable = unreachable
        self._blacklist = blacklist
        self._https_only = https_only

    def endpointForURI(self, uri):
        if self._https_only and uri.scheme != b"https":
            raise self._unreachable(f"refusing {uri.scheme.decode('ascii')} URL: https only")
        return _Connecting(lambda factory: self._connect(uri, factory))

    async def _connect(self, uri, factory):
        host, port = uri.host.decode("ascii").strip("[]"), uri.port
        errors = []
        for family, ip in await resolve_host(self._threads, host, port):
            if not self._ip_filter.allows(ip):
                errors.append(f"{ip} refused by {self._blacklist}")
                continue
            tcp_class = TCP6ClientEndpoint if family == socket.AF_INET6 else TCP4ClientEndpoint
            endpoint = _with_tls(tcp_class(self._reactor, ip, port, timeout=CONNECT_TIMEOUT_S), uri.scheme, host,
                                 self._reactor, self._tls_policy)
            try:
                connected = await endpoint.connect(factory)
            except Exception as e:
                errors.append(f"{ip}:{port}: {e}")
                continue
            _no_delay(connected.transport)
            return connected
        raise self._unreachable(f"cannot connect to {host}: {'; '.join(errors) or 'no address found'}")


class OutboundHttp:
    """An agent over ``endpoints`` and its connection pool. ``fetch`` answers (status, body), ``send``
    (status, JSON value or None); with no answer in ``timeout_s`` or none at all, ``unreachable``."""

    def __init__(self, *, reactor, endpoints, unreachable: type[Unreachable], timeout_s: float,
                 persistent: bool, max_per_host: int = 2, retry: bool = False,
                 max_size: int = MAX_RESPONSE_SIZE):
        self._reactor = reactor
        self._unreachable = unreachable
        self.timeout_s = timeout_s
        self._max_size = max_size
        self._pool = HTTPConnectionPool(reactor, persistent=persistent)
        self._pool.maxPersistentPerHost = max_per_host
        self._pool.retryAutomatically = retry
        self._agent = Agent.usingEndpointFactory(reactor, endpoints, pool=self._pool)

    async def fetch(self, method: str, url: str, headers: Headers | None = None, body: bytes | None = None, *,
                    timeout_s: float | None = None, label: str = "") -> tuple[int, bytes]:
        """``label`` prefixes the error messages."""
        headers = headers if headers is not None else Headers()
        headers.setRawHeaders(b"User-Agent", [USER_AGENT])

        async def attempt():
            producer = FileBodyProducer(BytesIO(body)) if body is not None else None
            response = await self._agent.request(method.encode("ascii"), url.encode("utf-8"), headers, producer)
            reader = BodyReader(self._max_size)
            response.deliverBody(reader)
            return response.code, await reader.done

        prefix = f"{label}: " if label else ""
        d = defer.ensureDeferred(attempt())
        d.addTimeout(timeout_s or self.timeout_s, self._reactor)
        try:
            return await d
        except (Unreachable, defer.CancelledError):
            raise
        except (defer.TimeoutError, TwistedTimeoutError):
            raise self._unreachable(prefix + "timed out", timed_out=True) from None
        except Exception as e:
            raise self._unreachable(prefix + describe_failure(e)) from None

    async def send(self, method: str, url: str, headers: Headers | None = None,
                   body: bytes | None = None) -> tuple[int, Any]:
        status, raw = await self.fetch(method, url, headers, body)
        return status, json_or_none(raw)

    def close(self) -> defer.Deferred:
        return self._pool.closeCachedConnections()


def json_body(value: Any) -> tuple[Headers, bytes]:
    """Headers announcing JSON, and ``value`` encoded."""
    return (Headers({b"Content-Type": [b"application/json"]}),
            json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))

"""Outbound requests to push gateways (spec v1.19 push gateway API, POST /_matrix/push/v1/notify).

The gateway URL is the one a user gave in ``/pushers/set``, so, as Synapse does, every address it
resolves to is checked against ``ip_range_blacklist``/``ip_range_whitelist`` before connecting (on
the address actually connected to, so a DNS answer cannot slip past the check).
"""

from __future__ import annotations

import json
import socket
from io import BytesIO
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from federation.client import MAX_RESPONSE_SIZE, USER_AGENT, BodyReader, describe_failure, resolve_host
from federation.policy import IpRangeFilter
from federation.tls import ClientTlsPolicy, TlsClientEndpoint

CONNECT_TIMEOUT_S = 10


class PushGatewayUnreachable(Exception):
    """No usable answer: refused address, connection failure, timeout."""


class _FilteredEndpoint:
    def __init__(self, owner: "PushGatewayClient", uri):
        self._owner = owner
        self._uri = uri

    def connect(self, factory):
        return defer.ensureDeferred(self._connect(factory))

    async def _connect(self, factory):
        owner, host, port = self._owner, self._uri.host.decode("ascii"), self._uri.port
        errors = []
        for family, ip in await resolve_host(owner.threads, host, port):
            if not owner.ip_filter.allows(ip):
                errors.append(f"{ip} refused by ip_range_blacklist")
                continue
            tcp_class = TCP6ClientEndpoint if family == socket.AF_INET6 else TCP4ClientEndpoint
            endpoint = tcp_class(owner.reactor, ip, port, timeout=CONNECT_TIMEOUT_S)
            if self._uri.scheme == b"https":
                endpoint = TlsClientEndpoint(endpoint, owner.tls_policy.context, host, owner.reactor,
                                             CONNECT_TIMEOUT_S)
            try:
                connected = await endpoint.connect(factory)
            except Exception as e:
                errors.append(f"{ip}:{port}: {e}")
                continue
            _no_delay(connected.transport)  # a request's headers and body are two writes
            return connected
        raise PushGatewayUnreachable(f"cannot connect to {host}: {'; '.join(errors) or 'no address found'}")


def _no_delay(transport) -> None:
    """TCP_NODELAY on the socket under ``transport`` (TLS wraps it)."""
    while transport is not None and not hasattr(transport, "setTcpNoDelay"):
        transport = getattr(transport, "transport", None)
    if transport is not None:
        transport.setTcpNoDelay(True)


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    def __init__(self, owner: "PushGatewayClient"):
        self._owner = owner

    def endpointForURI(self, uri):
        return _FilteredEndpoint(self._owner, uri)


class PushGatewayClient:
    """``notify`` POSTs one notification to a gateway URL and returns (status, JSON answer or None)."""

    def __init__(self, *, reactor, threads, ip_filter: IpRangeFilter, tls_policy: ClientTlsPolicy,
                 timeout_s: float = 30.0):
        """``tls_policy``: https gateways' certificates are checked against the system's CAs (stdlib ssl,
        as federation's, with no pyOpenSSL)."""
        self.reactor = reactor
        self.threads = threads
        self.tls_policy = tls_policy
        self.ip_filter = ip_filter
        self.timeout_s = timeout_s
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 10
        self._pool.retryAutomatically = False
        self._agent = Agent.usingEndpointFactory(reactor, _EndpointFactory(self), pool=self._pool)

    async def notify(self, url: str, notification: dict) -> tuple[int, Any]:
        body = json.dumps({"notification": notification}, ensure_ascii=False).encode("utf-8")
        headers = Headers({b"User-Agent": [USER_AGENT], b"Content-Type": [b"application/json"]})

        async def attempt():
            response = await self._agent.request(b"POST", url.encode("utf-8"), headers,
                                                 FileBodyProducer(BytesIO(body)))
            reader = BodyReader(MAX_RESPONSE_SIZE)
            response.deliverBody(reader)
            return response.code, await reader.done

        d = defer.ensureDeferred(attempt())
        d.addTimeout(self.timeout_s, self.reactor)
        try:
            status, raw = await d
        except (PushGatewayUnreachable, defer.CancelledError):
            raise
        except (defer.TimeoutError, TwistedTimeoutError):
            raise PushGatewayUnreachable("timed out") from None
        except Exception as e:
            raise PushGatewayUnreachable(describe_failure(e)) from None
        try:
            return status, json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            return status, None

    def close(self) -> defer.Deferred:
        return self._pool.closeCachedConnections()

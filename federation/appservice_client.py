"""Outbound requests to application services (spec v1.19 application service API, "Homeserver ->
Application Service API"): JSON over HTTP(S) to the registration's ``url``, with
``Authorization: Bearer <hs_token>``.

Same rules as the federation client for what can go wrong (timeouts, capped response size, the
User-Agent), but no ``ip_range_blacklist``: an appservice URL is one the administrator wrote in a
registration file, typically on 127.0.0.1, and Synapse does not filter it either. An ``https`` URL's
certificate is checked against the system's CAs (OpenSSL's default paths, so ``SSL_CERT_FILE`` adds a
private CA, as for Synapse) with the standard library's ``ssl``, as federation does: no pyOpenSSL at run time.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any
from urllib.parse import quote, urlencode

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from federation.client import MAX_RESPONSE_SIZE, USER_AGENT, BodyReader, describe_failure
from federation.tls import ClientTlsPolicy, TlsClientEndpoint

APP_PREFIX = "/_matrix/app/v1"
CONNECT_TIMEOUT_S = 10


class AppServiceUnreachable(Exception):
    """No answer from the appservice: connection refused, TLS failure, or ``timed_out``."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


class AppServiceResponse:
    """The appservice's answer: status, the JSON value (None when the body is not JSON) and the body."""

    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body
        try:
            self.json: Any = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            self.json = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """TCP to the URL's host (names resolved by the reactor), with TLS on top for ``https``."""

    def __init__(self, reactor, tls_policy: ClientTlsPolicy):
        self._reactor = reactor
        self._tls_policy = tls_policy

    def endpointForURI(self, uri):
        endpoint = HostnameEndpoint(self._reactor, uri.host, uri.port, timeout=CONNECT_TIMEOUT_S)
        if uri.scheme == b"https":
            endpoint = TlsClientEndpoint(endpoint, self._tls_policy.context, uri.host.decode("ascii").strip("[]"),
                                         self._reactor, CONNECT_TIMEOUT_S)
        return endpoint


class AppServiceClient:
    """``request`` to one registration's URL; the caller interprets the status."""

    def __init__(self, reactor, tls_policy: ClientTlsPolicy, timeout_s: float = 60.0):
        self._reactor = reactor
        self.timeout_s = timeout_s
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 4
        # A GET (a query) that a pooled connection closed under it before any answer is sent again on a new
        # one (Twisted's retry, for GETs without a body only): an appservice that closes its connections after
        # each answer would otherwise see every other query fail. Transactions (PUT) are resent by the sender.
        self._pool.retryAutomatically = True
        self._agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor, tls_policy), pool=self._pool)

    async def request(self, registration, method: str, path: str, content: Any = None,
                      args: dict | None = None, timeout_s: float | None = None) -> AppServiceResponse:
        """``path`` under ``/_matrix/app/v1``, its parts already quoted (see :func:`quote_part`)."""
        url = registration.url + APP_PREFIX + path + ("?" + urlencode(args, doseq=True) if args else "")
        headers = Headers({b"User-Agent": [USER_AGENT],
                           b"Authorization": [b"Bearer " + registration.hs_token.encode("utf-8")]})
        body = None
        if content is not None:
            body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers.addRawHeader(b"Content-Type", b"application/json")

        async def attempt():
            producer = FileBodyProducer(BytesIO(body)) if body is not None else None
            response = await self._agent.request(method.encode("ascii"), url.encode("utf-8"), headers, producer)
            reader = BodyReader(MAX_RESPONSE_SIZE)
            response.deliverBody(reader)
            return AppServiceResponse(response.code, await reader.done)

        d = defer.ensureDeferred(attempt())
        d.addTimeout(timeout_s or self.timeout_s, self._reactor)
        try:
            return await d
        except (defer.TimeoutError, TwistedTimeoutError):
            raise AppServiceUnreachable(f"{method} {registration.id} {path}: timed out", timed_out=True) from None
        except Exception as e:
            raise AppServiceUnreachable(f"{method} {registration.id} {path}: {describe_failure(e)}") from None

    def close(self) -> defer.Deferred:
        return self._pool.closeCachedConnections()


def quote_part(value: str) -> str:
    """One path segment, percent-encoded whole (a user id's ``@`` and ``:`` included)."""
    return quote(value, safe="")

"""Outbound requests to application services (spec v1.19 application service API, "Homeserver ->
Application Service API"): JSON over HTTP(S) to the registration's ``url``, with
``Authorization: Bearer <hs_token>``.

No ``ip_range_blacklist``: an appservice URL is one the administrator wrote in a registration file,
typically on 127.0.0.1, and Synapse does not filter it either. https is checked against the system's CAs
(``SSL_CERT_FILE`` adds a private CA, as for Synapse) with federation's TLS (``federation/tls.py``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from twisted.internet import defer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from federation.client import json_or_none
from federation.outbound_http import OutboundHttp, Unreachable, direct_endpoint, json_body
from federation.tls import ClientTlsPolicy

APP_PREFIX = "/_matrix/app/v1"


class AppServiceUnreachable(Unreachable):
    """No answer from the appservice: connection refused, TLS failure, or ``timed_out``."""


class AppServiceResponse:
    """The appservice's answer: status, the JSON value (None when the body is not JSON) and the body."""

    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body
        self.json: Any = json_or_none(body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@implementer(IAgentEndpointFactory)
class _Endpoints:
    def __init__(self, reactor, tls_policy: ClientTlsPolicy):
        self._reactor = reactor
        self._tls_policy = tls_policy

    def endpointForURI(self, uri):
        return direct_endpoint(self._reactor, self._tls_policy, uri.scheme, uri.host.decode("ascii").strip("[]"),
                               uri.port)


class AppServiceClient:
    """``request`` to one registration's URL; the caller interprets the status."""

    def __init__(self, reactor, tls_policy: ClientTlsPolicy, timeout_s: float = 60.0):
        # A GET (a query) that a pooled connection closed under it before any answer is sent again on a new
        # one (Twisted's retry, for GETs without a body only): an appservice that closes its connections after
        # each answer would otherwise see every other query fail. Transactions (PUT) are resent by the sender.
        self._http = OutboundHttp(reactor=reactor, endpoints=_Endpoints(reactor, tls_policy),
                                  unreachable=AppServiceUnreachable, timeout_s=timeout_s, persistent=True,
                                  max_per_host=4, retry=True)

    async def request(self, registration, method: str, path: str, content: Any = None,
                      args: dict | None = None, timeout_s: float | None = None) -> AppServiceResponse:
        """``path`` under ``/_matrix/app/v1``, its parts already quoted (see :func:`quote_part`)."""
        url = registration.url + APP_PREFIX + path + ("?" + urlencode(args, doseq=True) if args else "")
        headers, body = json_body(content) if content is not None else (Headers(), None)
        headers.addRawHeader(b"Authorization", b"Bearer " + registration.hs_token.encode("utf-8"))
        status, raw = await self._http.fetch(method, url, headers, body, timeout_s=timeout_s,
                                             label=f"{method} {registration.id} {path}")
        return AppServiceResponse(status, raw)

    def close(self) -> defer.Deferred:
        return self._http.close()


def quote_part(value: str) -> str:
    """One path segment, percent-encoded whole (a user id's ``@`` and ``:`` included)."""
    return quote(value, safe="")

"""Outbound requests to one configured server, never to any other: the CAS server of ``cas_config`` (ticket
validation, CAS protocol "/proxyValidate") and reCAPTCHA's ``recaptcha_siteverify_api``.

The agent's endpoint factory refuses any URL whose scheme, host or port differ from the configured URL's, and
redirects are not followed. https is checked with the ``ClientTlsPolicy`` of outbound federation
(``federation_custom_ca_list`` when set, else the system's CAs; no checks with
``federation_verify_certificates: false``). Connections are not kept: a login or a captcha is rare.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from federation.outbound_http import OutboundHttp, Unreachable, direct_endpoint
from federation.tls import ClientTlsPolicy

MAX_RESPONSE = 1024 * 1024   # a CAS service response or a siteverify answer is a few hundred bytes


class OriginUnreachable(Unreachable, ConnectionError):
    """No usable answer from the server: connection or TLS failure, timeout, a non-200 status, another origin."""


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


@implementer(IAgentEndpointFactory)
class OnlyOrigin:
    def __init__(self, reactor, origin: tuple[str, str, int], tls_policy: ClientTlsPolicy, name: str = "the server"):
        self._reactor = reactor
        self._origin = origin
        self._tls_policy = tls_policy
        self._name = name

    def endpointForURI(self, uri):
        scheme, host, port = uri.scheme.decode("ascii"), uri.host.decode("ascii").lower(), uri.port
        if (scheme, host, port) != self._origin:
            raise OriginUnreachable(f"refusing to connect to {scheme}://{host}:{port}: not {self._name}")
        return direct_endpoint(self._reactor, self._tls_policy, uri.scheme, host.strip("[]"), port)


class OriginClient:
    """``get(path, args)`` under ``base_url`` and ``post_form(args)`` to ``base_url`` itself: the body of a 200
    answer, else OriginUnreachable. ``name`` ("the CAS server") words the errors."""

    def __init__(self, *, reactor, base_url: str, tls_policy: ClientTlsPolicy, name: str,
                 timeout_s: float = 30.0):
        self._base_url = base_url
        self._name = name
        self._http = OutboundHttp(reactor=reactor, endpoints=OnlyOrigin(reactor, _origin(base_url), tls_policy, name),
                                  unreachable=OriginUnreachable, timeout_s=timeout_s, persistent=False,
                                  max_size=MAX_RESPONSE)

    async def get(self, path: str, args: dict[str, str]) -> bytes:
        return await self._request("GET", f"{self._base_url}{path}?{urlencode(args)}", None)

    async def post_form(self, args: dict[str, str]) -> bytes:
        """An ``application/x-www-form-urlencoded`` POST of ``args`` to ``base_url``."""
        return await self._request("POST", self._base_url, urlencode(args).encode("utf-8"))

    async def _request(self, method: str, url: str, form: bytes | None) -> bytes:
        headers = Headers()
        if form is not None:
            headers.addRawHeader(b"Content-Type", b"application/x-www-form-urlencoded")
        status, body = await self._http.fetch(method, url, headers, form)
        if status != 200:
            raise OriginUnreachable(f"{self._name} answered {status}")
        return body

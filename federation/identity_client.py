"""Outbound requests to identity servers (spec v1.19 identity service API v2): lookups, invites stored
for third-party identifiers, binds and unbinds, and the key validity checks of third-party invites.

Which identity servers may be asked is the service's decision (``services/identity.py``). As Synapse does,
every address is checked against the federation's IP ranges (``federation_ip_range_blacklist``, else
``ip_range_blacklist``/``ip_range_whitelist``) and TLS is checked as federation's is
(``federation_verify_certificates``, ``federation_custom_ca_list``).
Only https is spoken.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from twisted.internet import defer
from twisted.web.http_headers import Headers

from federation.outbound_http import FilteredEndpoints, OutboundHttp, Unreachable, json_body
from federation.policy import IpRangeFilter
from federation.request_auth import sign_request
from federation.tls import ClientTlsPolicy


class IdentityServerUnreachable(Unreachable):
    """No HTTP answer: refused address, connection or TLS failure, timeout."""


class IdentityServerClient:
    """``request`` sends one JSON request to an identity server; ``get_url`` fetches a URL an identity
    server gave (a ``key_validity_url``). Both answer (status, JSON body or None)."""

    def __init__(self, *, reactor, threads, ip_filter: IpRangeFilter, tls_policy: ClientTlsPolicy,
                 server_name: str, signing_key, timeout_s: float = 30.0):
        self._server_name = server_name
        self._signing_key = signing_key
        endpoints = FilteredEndpoints(reactor=reactor, threads=threads, ip_filter=ip_filter, tls_policy=tls_policy,
                                      unreachable=IdentityServerUnreachable, blacklist="the IP range blacklist",
                                      https_only=True)
        # One connection per request: identity server requests are few, and a kept connection the server
        # closed meanwhile would fail a POST (not retried) for nothing.
        self._http = OutboundHttp(reactor=reactor, endpoints=endpoints, unreachable=IdentityServerUnreachable,
                                  timeout_s=timeout_s, persistent=False)

    async def request(self, method: str, id_server: str, path: str, *, args: dict | None = None,
                      body: Any = None, access_token: str | None = None,
                      signed: bool = False) -> tuple[int, Any]:
        """``https://<id_server><path>``; ``access_token``: the user's identity server token (Bearer);
        ``signed``: X-Matrix authentication as this homeserver, the identity server as destination (the v2
        unbind)."""
        uri = path + ("?" + urlencode(args) if args else "")
        headers, data = json_body(body) if body is not None else (Headers(), None)
        if access_token is not None:
            headers.addRawHeader(b"Authorization", b"Bearer " + access_token.encode("utf-8"))
        if signed:
            header = sign_request(self._signing_key, self._server_name, id_server, method, uri, body)
            headers.addRawHeader(b"Authorization", header.encode("utf-8"))
        return await self._http.send(method, f"https://{id_server}{uri}", headers, data)

    async def get_url(self, url: str, args: dict) -> tuple[int, Any]:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise IdentityServerUnreachable(f"not an https URL: {url!r}")
        separator = "&" if parts.query else "?"
        return await self._http.send("GET", url + separator + urlencode(args))

    def close(self) -> defer.Deferred:
        return self._http.close()

"""Outbound requests to identity servers (spec v1.19 identity service API v2): lookups, invites stored
for third-party identifiers, binds and unbinds, and the key validity checks of third-party invites.

Which identity servers may be asked at all is the service's decision (``services/identity.py``:
``trusted_third_party_id_servers``); this client only carries the request. As Synapse does for the
identity servers clients name, every address a name resolves to is checked against the federation's IP
ranges (``federation_ip_range_blacklist``, else ``ip_range_blacklist``/``ip_range_whitelist``) on the
address actually connected to, and TLS is verified as federation's is (``federation_verify_certificates``,
``federation_custom_ca_list``: a closed deployment's identity server is usually under the same CA as its
homeservers). Only https is spoken.
"""

from __future__ import annotations

import json
import socket
from io import BytesIO
from typing import Any
from urllib.parse import urlencode, urlsplit

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from federation.client import MAX_RESPONSE_SIZE, USER_AGENT, BodyReader, describe_failure, resolve_host
from federation.policy import IpRangeFilter
from federation.request_auth import sign_request
from federation.tls import ClientTlsPolicy, TlsClientEndpoint

CONNECT_TIMEOUT_S = 10


class IdentityServerUnreachable(Exception):
    """No HTTP answer: refused address, connection or TLS failure, timeout."""


class _FilteredTlsEndpoint:
    """TLS to the first address of the URL's host that the IP ranges allow and that answers."""

    def __init__(self, owner: "IdentityServerClient", uri):
        self._owner = owner
        self._uri = uri

    def connect(self, factory):
        return defer.ensureDeferred(self._connect(factory))

    async def _connect(self, factory):
        owner, host, port = self._owner, self._uri.host.decode("ascii").strip("[]"), self._uri.port
        errors = []
        for family, ip in await resolve_host(owner.threads, host, port):
            if not owner.ip_filter.allows(ip):
                errors.append(f"{ip} refused by the IP range blacklist")
                continue
            tcp_class = TCP6ClientEndpoint if family == socket.AF_INET6 else TCP4ClientEndpoint
            endpoint = TlsClientEndpoint(tcp_class(owner.reactor, ip, port, timeout=CONNECT_TIMEOUT_S),
                                         owner.tls_policy.context, host, owner.reactor, CONNECT_TIMEOUT_S)
            try:
                return await endpoint.connect(factory)
            except Exception as e:
                errors.append(f"{ip}:{port}: {e}")
        raise IdentityServerUnreachable(f"cannot connect to {host}: {'; '.join(errors) or 'no address found'}")


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    def __init__(self, owner: "IdentityServerClient"):
        self._owner = owner

    def endpointForURI(self, uri):
        if uri.scheme != b"https":
            raise IdentityServerUnreachable("identity servers are reached over https only")
        return _FilteredTlsEndpoint(self._owner, uri)


class IdentityServerClient:
    """``request`` sends one JSON request to an identity server; ``get_url`` fetches a URL an identity
    server gave (a ``key_validity_url``). Both answer (status, JSON body or None)."""

    def __init__(self, *, reactor, threads, ip_filter: IpRangeFilter, tls_policy: ClientTlsPolicy,
                 server_name: str, signing_key, timeout_s: float = 30.0):
        self.reactor = reactor
        self.threads = threads
        self.ip_filter = ip_filter
        self.tls_policy = tls_policy
        self._server_name = server_name
        self._signing_key = signing_key
        self.timeout_s = timeout_s
        # One connection per request: identity server requests are few, and a kept connection the server
        # closed meanwhile would fail a POST (not retried) for nothing.
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self._agent = Agent.usingEndpointFactory(reactor, _EndpointFactory(self), pool=self._pool)

    async def request(self, method: str, id_server: str, path: str, *, args: dict | None = None,
                      body: Any = None, access_token: str | None = None,
                      signed: bool = False) -> tuple[int, Any]:
        """``https://<id_server><path>``; ``access_token``: the user's identity server token (Bearer);
        ``signed``: X-Matrix authentication as this homeserver, the identity server as destination (the v2
        unbind)."""
        uri = path + ("?" + urlencode(args) if args else "")
        headers = Headers({b"User-Agent": [USER_AGENT]})
        if access_token is not None:
            headers.addRawHeader(b"Authorization", b"Bearer " + access_token.encode("utf-8"))
        if signed:
            header = sign_request(self._signing_key, self._server_name, id_server, method, uri, body)
            headers.addRawHeader(b"Authorization", header.encode("utf-8"))
        return await self._send(method, f"https://{id_server}{uri}", headers, body)

    async def get_url(self, url: str, args: dict) -> tuple[int, Any]:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise IdentityServerUnreachable(f"not an https URL: {url!r}")
        separator = "&" if parts.query else "?"
        return await self._send("GET", url + separator + urlencode(args),
                                Headers({b"User-Agent": [USER_AGENT]}), None)

    async def _send(self, method: str, url: str, headers: Headers, body: Any) -> tuple[int, Any]:
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers.addRawHeader(b"Content-Type", b"application/json")

        async def attempt():
            producer = FileBodyProducer(BytesIO(data)) if data is not None else None
            response = await self._agent.request(method.encode("ascii"), url.encode("utf-8"), headers, producer)
            reader = BodyReader(MAX_RESPONSE_SIZE)
            response.deliverBody(reader)
            return response.code, await reader.done

        d = defer.ensureDeferred(attempt())
        d.addTimeout(self.timeout_s, self.reactor)
        try:
            status, raw = await d
        except (IdentityServerUnreachable, defer.CancelledError):
            raise
        except (defer.TimeoutError, TwistedTimeoutError):
            raise IdentityServerUnreachable("timed out") from None
        except Exception as e:
            raise IdentityServerUnreachable(describe_failure(e)) from None
        try:
            return status, json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            return status, None

    def close(self) -> defer.Deferred:
        return self._pool.closeCachedConnections()

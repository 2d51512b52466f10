"""Outbound requests to the CAS server of ``cas_config`` (ticket validation, CAS protocol "/proxyValidate").

Only that server is ever connected to: the agent's endpoint factory refuses any URL whose scheme, host or
port differ from ``cas_config.server_url``'s, and redirects are not followed. https is checked with the
``ClientTlsPolicy`` of outbound federation (``federation_custom_ca_list`` when set, else the system's CAs;
no checks with ``federation_verify_certificates: false``). Connections are not kept: a login is rare.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from federation.client import USER_AGENT, BodyReader, describe_failure
from federation.tls import ClientTlsPolicy, TlsClientEndpoint

CONNECT_TIMEOUT_S = 10
MAX_CAS_RESPONSE = 1024 * 1024   # a CAS service response is a few hundred bytes of XML


class CasServerUnreachable(ConnectionError):
    """No usable answer from the CAS server: connection or TLS failure, timeout, a non-200 status."""


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


@implementer(IAgentEndpointFactory)
class _OnlyCasServer:
    def __init__(self, reactor, origin: tuple[str, str, int], tls_policy: ClientTlsPolicy):
        self._reactor = reactor
        self._origin = origin
        self._tls_policy = tls_policy

    def endpointForURI(self, uri):
        scheme, host, port = uri.scheme.decode("ascii"), uri.host.decode("ascii").lower(), uri.port
        if (scheme, host, port) != self._origin:
            raise CasServerUnreachable(f"refusing to connect to {scheme}://{host}:{port}: not the CAS server")
        endpoint = HostnameEndpoint(self._reactor, host, port, timeout=CONNECT_TIMEOUT_S)
        if scheme == "https":
            endpoint = TlsClientEndpoint(endpoint, self._tls_policy.context, host.strip("[]"), self._reactor,
                                         CONNECT_TIMEOUT_S)
        return endpoint


class CasClient:
    """``get(path, args)`` under ``server_url``: the body of a 200 answer."""

    def __init__(self, *, reactor, server_url: str, tls_policy: ClientTlsPolicy, timeout_s: float = 30.0):
        self._reactor = reactor
        self._server_url = server_url
        self._timeout_s = timeout_s
        self._agent = Agent.usingEndpointFactory(
            reactor, _OnlyCasServer(reactor, _origin(server_url), tls_policy),
            pool=HTTPConnectionPool(reactor, persistent=False))

    async def get(self, path: str, args: dict[str, str]) -> bytes:
        url = f"{self._server_url}{path}?{urlencode(args)}"

        async def attempt():
            response = await self._agent.request(b"GET", url.encode("utf-8"), Headers({b"User-Agent": [USER_AGENT]}))
            reader = BodyReader(MAX_CAS_RESPONSE)
            response.deliverBody(reader)
            return response.code, await reader.done

        d = defer.ensureDeferred(attempt())
        d.addTimeout(self._timeout_s, self._reactor)
        try:
            status, body = await d
        except CasServerUnreachable:
            raise
        except (defer.TimeoutError, TwistedTimeoutError):
            raise CasServerUnreachable("the CAS server did not answer in time") from None
        except Exception as e:
            raise CasServerUnreachable(describe_failure(e)) from None
        if status != 200:
            raise CasServerUnreachable(f"the CAS server answered {status}")
        return body

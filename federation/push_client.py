"""Outbound requests to push gateways (spec v1.19 push gateway API, POST /_matrix/push/v1/notify).

The gateway URL is the one a user gave in ``/pushers/set``, so, as Synapse does, every address it
resolves to is checked against ``ip_range_blacklist``/``ip_range_whitelist`` before connecting
(``federation/outbound_http.py``). http and https are both spoken.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from federation.outbound_http import FilteredEndpoints, OutboundHttp, Unreachable, json_body
from federation.policy import IpRangeFilter
from federation.tls import ClientTlsPolicy


class PushGatewayUnreachable(Unreachable):
    """No usable answer: refused address, connection failure, timeout."""


class PushGatewayClient:
    """``notify`` POSTs one notification to a gateway URL and returns (status, JSON answer or None)."""

    def __init__(self, *, reactor, threads, ip_filter: IpRangeFilter, tls_policy: ClientTlsPolicy,
                 timeout_s: float = 30.0):
        """``tls_policy``: https gateways' certificates are checked against the system's CAs (stdlib ssl,
        as federation's, with no pyOpenSSL)."""
        endpoints = FilteredEndpoints(reactor=reactor, threads=threads, ip_filter=ip_filter, tls_policy=tls_policy,
                                      unreachable=PushGatewayUnreachable, blacklist="ip_range_blacklist")
        self._http = OutboundHttp(reactor=reactor, endpoints=endpoints, unreachable=PushGatewayUnreachable,
                                  timeout_s=timeout_s, persistent=True, max_per_host=10, retry=False)

    async def notify(self, url: str, notification: dict) -> tuple[int, Any]:
        headers, body = json_body({"notification": notification})
        return await self._http.send("POST", url, headers, body)

    def close(self) -> defer.Deferred:
        return self._http.close()

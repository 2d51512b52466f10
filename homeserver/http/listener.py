"""What one ``listeners`` entry changes about the HTTP requests it accepts.

- **Body size** (spec v1.19 client-server "API standards": 413 ``M_TOO_LARGE``): a request is routed
  as soon as its headers are in; a ``Content-Length`` above its route's limit is answered 413 before one
  byte of the body is read, and a chunked body is cut the moment it passes the limit. Either way the
  connection is closed after the answer, so memory stays bounded whatever a client sends. A route
  declaring a ``spool`` (media uploads) has its body written to that file as it arrives, never held in
  memory; the file is discarded if the connection is lost before the handler has kept it.
- **Client address** (``x_forwarded``): behind a reverse proxy, the address the rate limiters and the
  access log see is taken from ``X-Forwarded-For``, only when the direct peer is one of the listener's
  ``trusted_proxies`` (loopback by default). The header is read from the right, skipping trusted
  proxies, so an address a client wrote into the header itself is never believed. (Synapse believes the
  left-most address of any peer; it has no list of trusted proxies.) ``X-Forwarded-Proto`` from a trusted
  proxy says whether the client used https.
- **Resources** (``resources``): a listener serves only the path prefixes of the resources it names,
  with Synapse's mapping; ``/health`` is served everywhere, as in Synapse.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web import server
from twisted.web.http import HTTPChannel
from twisted.web.iweb import INonQueuedRequestFactory
from zope.interface import directlyProvides

logger = logging.getLogger("homeserver.access")

# Synapse's listener resource names and the path prefixes each one serves.
RESOURCE_PREFIXES: dict[str, tuple[str, ...]] = {
    "client": ("/_matrix/client/", "/_synapse/client/", "/_synapse/admin/", "/_hexagone/admin/", "/_hexagone/console/",
               "/.well-known/"),
    "federation": ("/_matrix/federation/", "/_matrix/policy/"),
    "keys": ("/_matrix/key/",),
    "media": ("/_matrix/media/", "/_matrix/client/v1/media/", "/_matrix/federation/v1/media/"),
    "openid": ("/_matrix/federation/v1/openid/userinfo",),
    "static": ("/_matrix/static/",),
    "health": ("/health",),
    "metrics": ("/_synapse/metrics",),
    "replication": ("/_synapse/replication/",),  # main's, for its workers (docs/workers.md)
}
ALWAYS_SERVED = ("/health",)
LOOPBACK = ("127.0.0.0/8", "::1/128")
REFUSED_LINGER_S = 2.0  # how long a refused body is read and dropped, so the client sees our 413

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (method, path without query) -> (the router's match, the route's body limit in bytes)
RouteLookup = Callable[[str, str], tuple[object, int]]


def served_prefixes(resources: Iterable[str]) -> tuple[str, ...]:
    """Every path prefix served by a listener naming ``resources``."""
    prefixes = list(ALWAYS_SERVED)
    for name in resources:
        prefixes += RESOURCE_PREFIXES.get(name, ())
    return tuple(dict.fromkeys(prefixes))


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_client(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client address of a request from ``peer`` carrying these ``X-Forwarded-For`` values.

    Only a trusted peer's header counts; it is read right to left (each proxy appends the address it
    saw), skipping trusted proxies; the first untrusted address is the client. A malformed entry ends the
    walk at the last address we could check."""
    client = peer
    if not is_trusted(peer, trusted):
        return client
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return client
        client = str(address)
        if not any(address in net for net in trusted if net.version == address.version):
            return client
    return client


def is_trusted(peer: str, trusted: Sequence[Network]) -> bool:
    address = _address(peer)
    return address is not None and any(address in net for net in trusted if net.version == address.version)


@dataclass(frozen=True)
class ListenerPolicy:
    """The per-listener settings a request needs; ``route`` is the shared router's lookup."""

    route: RouteLookup
    prefixes: tuple[str, ...]
    x_forwarded: bool = False
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def build(cls, route: RouteLookup, resources: Iterable[str], x_forwarded: bool = False,
              trusted_proxies: Iterable[str] = LOOPBACK) -> "ListenerPolicy":
        return cls(route, served_prefixes(resources), x_forwarded,
                   tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies))


class ListenerRequest(server.Request):
    """A request of one listener: routed when its headers arrive, body bounded, client address resolved."""

    policy: ListenerPolicy  # set by the site's request factory
    matched: object = None  # the router's answer, computed once from the headers
    body_limit: int = 0
    _target = b""  # the request target (path and query) as sent
    _received = 0
    _client = None
    _forwarded_https = False

    def route_headers(self, command: bytes, path: bytes, length: int | None) -> bool:
        """Route the request from its request line and headers; False if its declared body is too large."""
        self._target = path
        if self.policy.x_forwarded:
            self._resolve_forwarded()
        self.matched, self.body_limit = self.policy.route(
            command.decode("ascii", "replace"), path.split(b"?", 1)[0].decode("utf-8", "replace"))
        return length is None or length <= self.body_limit

    def gotLength(self, length: int | None) -> None:
        route = self.matched[0] if self.matched else None
        spool = getattr(route, "spool", None)
        if spool is None:
            super().gotLength(length)
        else:
            # Nothing reaches the disk for a request that cannot be authenticated (it is answered 401).
            self.content = spool() if self._may_authenticate() else _Discarded()
            self._parsePOSTFormSubmission = False  # a spooled body is stored as sent, never parsed as a form
            _widen_reads(self.channel.transport)

    def _may_authenticate(self) -> bool:
        return self.requestHeaders.hasHeader(b"authorization") or b"access_token=" in self._target

    def discard_spool(self) -> None:
        """Remove a spooled body the handler has not kept (or not yet seen)."""
        discard = getattr(self.content, "discard", None)
        if discard is not None:
            discard()

    def connectionLost(self, reason) -> None:
        self.discard_spool()
        super().connectionLost(reason)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.body_limit:
            self.channel.refuse_too_large()
            return
        super().handleContentChunk(data)

    def _resolve_forwarded(self) -> None:
        peer = super().getClientAddress()
        host = getattr(peer, "host", None)
        values = self.requestHeaders.getRawHeaders(b"x-forwarded-for")
        if host is None or not values or not is_trusted(host, self.policy.trusted_proxies):
            return
        client = forwarded_client(host, [v.decode("latin-1") for v in values], self.policy.trusted_proxies)
        if client != host:
            self._client = (IPv6Address if ":" in client else IPv4Address)("TCP", client, 0)
        proto = self.getHeader(b"x-forwarded-proto")
        self._forwarded_https = proto is not None and proto.strip().lower() == b"https"

    def getClientAddress(self):
        return self._client if self._client is not None else super().getClientAddress()

    def isSecure(self) -> bool:
        return self._forwarded_https or super().isSecure()

    def serves(self, path: str) -> bool:
        return path.startswith(self.policy.prefixes)


class ListenerChannel(HTTPChannel):
    """HTTP/1.1 that checks a request's declared body size before reading the body."""

    _refused = False

    def allHeadersReceived(self) -> None:
        if not self.requests[-1].route_headers(self._command, self._path, self.length):
            self.refuse_too_large()
            return
        super().allHeadersReceived()

    def refuse_too_large(self) -> None:
        """413 ``M_TOO_LARGE``, then drop whatever else arrives and close shortly after (a client still
        sending gets time to read the answer instead of a reset)."""
        if self._refused:
            return
        self._refused = True
        logger.info("%s 413 %s %s: body over %d bytes", self.requests[-1].getClientAddress().host,
                    self._command.decode("ascii", "replace"),
                    self._path.split(b"?", 1)[0].decode("utf-8", "replace"), self.requests[-1].body_limit)
        self.dataReceived = self.rawDataReceived = self.lineReceived = _drop
        self.requests[-1].discard_spool()
        body = json.dumps({"errcode": "M_TOO_LARGE", "error": "Request body too large"}).encode()
        self.transport.write(
            b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
            b"Access-Control-Allow-Origin: *\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.setTimeout(None)
        self.callLater(REFUSED_LINGER_S, self.transport.loseConnection)

    def allContentReceived(self) -> None:
        if not self._refused:  # a chunked body cut in the middle of a read
            super().allContentReceived()


class _Discarded:
    """The body of a spooled route sent without credentials: counted against the limit, then dropped."""

    def write(self, data: bytes) -> None:
        return None

    def tell(self) -> int:
        return 0

    def seek(self, *_args) -> None:
        return None

    def read(self, *_args) -> bytes:
        return b""

    def discard(self) -> None:
        return None

    close = discard


SPOOL_READ_SIZE = 1024 * 1024  # bytes read from the socket at once while a large body is spooled


def _widen_reads(transport) -> None:
    """Read a large body 1 MiB per read instead of Twisted's 64 KiB: 16 times fewer trips through the
    protocol stack for the same bytes (the TCP transport, under any wrapping protocol)."""
    while getattr(transport, "transport", None) is not None:
        transport = transport.transport
    if isinstance(getattr(transport, "bufferSize", None), int):
        transport.bufferSize = SPOOL_READ_SIZE


def _drop(_data: bytes) -> None:
    return None


def listener_site(resource, policy: ListenerPolicy) -> server.Site:
    """A Twisted Site whose connections and requests follow ``policy``."""
    site = server.Site(resource)
    site.protocol = ListenerChannel

    def request_factory(channel):
        request = ListenerRequest(channel)
        request.policy = policy
        return request

    directlyProvides(request_factory, INonQueuedRequestFactory)
    site.requestFactory = request_factory
    return site

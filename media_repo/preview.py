"""URL previews: Open Graph data of a web page, fetched by this server for a client.

Spec v1.19 client-server "Content repository", ``GET /_matrix/client/v1/media/preview_url`` (and the
deprecated ``/_matrix/media/v3/preview_url``). Configured by Synapse's keys ``url_preview_enabled``,
``url_preview_ip_range_blacklist``/``_whitelist``, ``url_preview_url_blacklist`` and ``max_spider_size``.

What it guarantees:
- no request to a refused address (SSRF): every connection, the first and each redirect's, is made to an
  address resolved here and checked against the IP ranges (``federation.policy.IpRangeFilter``), never by
  name; a URL matching ``url_preview_url_blacklist`` is refused before any connection, on each hop too;
- at most ``max_spider_size`` bytes read from a response, at most :data:`MAX_REDIRECTS` redirects, the
  whole preview (page and its image) within ``timeout_s``;
- HTML is read by the standard library's tolerant parser (``html.parser``), never executed; values are
  plain text, bounded in number and length;
- the page's ``og:image`` (or an image URL itself) is received into a media spool and stored as local media
  through ``store_image`` (the media service: scanned and stored like an upload), answered as its ``mxc://`` URI.

Previews are cached as Synapse's are: a URL previewed within the last ``cache_ttl_s`` (an hour) is answered
from memory without fetching it again, and requests for a URL whose fetch is under way wait for that fetch;
failures are not cached. ``ts`` is accepted; the newest preview known is answered (the spec allows it).
"""

from __future__ import annotations

import codecs
import collections
import io
import logging
import os
import re
import socket
from html.parser import HTMLParser
from typing import Any, Awaitable, Callable
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from federation.client import USER_AGENT, BodyReader, RequestSendFailed, describe_failure
from federation.policy import IpRangeFilter, is_ip_literal
from federation.tls import ClientTlsPolicy, TlsClientEndpoint
from homeserver.errors import MatrixError, forbidden, invalid_param
from homeserver.events.glob import glob_matches

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CACHE_TTL_S = 3600.0  # Synapse keeps a preview an hour
MAX_CACHED = 1000  # previews kept in memory; the oldest go first
MAX_VALUES = 50  # og:* properties kept from one page
MAX_VALUE_LENGTH = 2000  # characters of one value
HTML_TYPES = ("text/html", "application/xhtml+xml")
_REDIRECTS = (301, 302, 303, 307, 308)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)

# store_image(spool, content_type, file_name, user_id): the image received in ``spool`` stored as local media
# (media_repo/service.py's upload: scanned, quota, thumbnails), answered as og:image and what else is known.
StoreImage = Callable[[Any, str, str, "str | None"], Awaitable[dict]]


def media_image_store(media) -> StoreImage:
    """``store_image`` on the media repository (``MediaRepository.upload``)."""
    async def store(spool, content_type: str, name: str, user_id: str | None) -> dict:
        uri = await media.upload(user_id, spool, content_type, name)
        answer = {"og:image": uri, "og:image:type": content_type, "matrix:image:size": spool.size}
        size = await media.local_image_size(uri.rsplit("/", 1)[1])
        if size is not None:  # as Synapse: the image's own dimensions, whatever the page claimed
            answer["og:image:width"], answer["og:image:height"] = size
        return answer
    return store


# -- pure parts --------------------------------------------------------------------------------------------

class _OpenGraphParser(HTMLParser):
    """Collects ``<meta property|name="og:*">``, ``<title>`` and ``<meta name="description">``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.title: list[str] = []
        self.description: str | None = None
        self._in_title = False
        self._title_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self._title_done:
            self._in_title = True
        if tag != "meta":
            return
        a = {k.lower(): v for k, v in attrs if v is not None}
        key, content = a.get("property") or a.get("name"), a.get("content")
        if key is None or content is None:
            return
        key = key.strip().lower()
        if key.startswith("og:") and key not in self.og and len(self.og) < MAX_VALUES:
            self.og[key] = content
        elif key == "description" and self.description is None:
            self.description = content

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title, self._title_done = False, True

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)


def _charset(body: bytes, header_charset: str | None) -> str:
    for candidate in (header_charset, *(m.decode("ascii") for m in _META_CHARSET.findall(body[:4096])[:1])):
        if candidate:
            try:
                return codecs.lookup(candidate).name
            except LookupError:
                continue
    return "utf-8"


def _clean(text: str) -> str:
    return " ".join(text.split())[:MAX_VALUE_LENGTH]


def parse_html_preview(body: bytes, header_charset: str | None = None) -> dict[str, str]:
    """The Open Graph properties of an HTML page; ``og:title`` from ``<title>`` and ``og:description`` from
    ``<meta name="description">`` when the page has none."""
    parser = _OpenGraphParser()
    parser.feed(body.decode(_charset(body, header_charset), "replace"))
    parser.close()
    og = {k: _clean(v) for k, v in parser.og.items()}
    title = _clean("".join(parser.title))
    if "og:title" not in og and title:
        og["og:title"] = title
    if "og:description" not in og and parser.description:
        og["og:description"] = _clean(parser.description)
    return {k: v for k, v in og.items() if v}


def _rule_matches(rule: dict, parts) -> bool:
    for attribute, pattern in rule.items():
        value = getattr(parts, attribute, None)
        value = "" if value is None else str(value)
        if pattern.startswith("^"):
            if not re.match(pattern, value):
                return False
        elif not glob_matches(pattern, value):
            return False
    return True


def url_blacklisted(url: str, rules: list[dict]) -> bool:
    """Synapse's ``url_preview_url_blacklist``: refused when every part named by one rule matches (a glob,
    or a regular expression when the pattern starts with ``^``)."""
    parts = urlsplit(url)
    return any(_rule_matches(rule, parts) for rule in rules)


def ascii_url(url: str) -> str:
    """An http(s) URL as ASCII (IDNA host, percent-encoded rest); :func:`invalid_param` for anything else."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise invalid_param("url: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise invalid_param("url: only http and https URLs are previewed")
    try:
        host = host if is_ip_literal(host) else host.encode("idna").decode("ascii")
    except UnicodeError:
        raise invalid_param("url: not a valid host name") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    safe = "/%:@!$&'()*+,;=-._~"
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe), quote(parts.query, safe + "?"), ""))


# -- fetching ----------------------------------------------------------------------------------------------

def _page_too_large(limit: int) -> MatrixError:
    return MatrixError(502, "M_TOO_LARGE", f"The page is larger than {limit} bytes")


def _drop(response) -> None:
    """Close a response whose body we do not want."""
    reader = BodyReader(0, lambda _data: None)
    reader.done.addErrback(lambda _f: None)
    response.deliverBody(reader)


@implementer(IAgentEndpointFactory)
class _CheckedEndpointFactory:
    def __init__(self, previewer: "UrlPreviewer"):
        self._previewer = previewer

    def endpointForURI(self, uri):
        return _CheckedEndpoint(self._previewer, uri.scheme == b"https", uri.host.decode("ascii"), uri.port)


@implementer(IStreamClientEndpoint)
class _CheckedEndpoint:
    """Connects to the first reachable resolved address that the IP ranges allow."""

    def __init__(self, previewer: "UrlPreviewer", tls: bool, host: str, port: int):
        self._p = previewer
        self._tls = tls
        self._host = host.strip("[]")
        self._port = port

    def connect(self, factory):
        return defer.ensureDeferred(self._connect(factory))

    async def _connect(self, factory):
        p = self._p
        addresses = await p.resolve(self._host, self._port)
        allowed = [(family, ip) for family, ip in addresses if p.ip_filter.allows(ip)]
        if not allowed:
            raise forbidden("The URL's host has no address this server may fetch from")
        errors = []
        for family, ip in allowed:
            tcp_class = TCP6ClientEndpoint if family == socket.AF_INET6 else TCP4ClientEndpoint
            endpoint = tcp_class(p.reactor, ip, self._port, timeout=p.timeout_s)
            if self._tls:
                endpoint = TlsClientEndpoint(endpoint, p.tls_policy.context, self._host, p.reactor, p.timeout_s)
            try:
                return await endpoint.connect(factory)
            except defer.CancelledError:
                raise
            except Exception as e:
                errors.append(f"{ip}: {e}")
        raise MatrixError(502, "M_UNKNOWN", f"Cannot connect to {self._host}: {'; '.join(errors)}")


class UrlPreviewer:
    """``preview(url, ts)``: the Open Graph data of ``url``, fetched under the configured limits."""

    def __init__(self, *, reactor, run_in_thread: Callable[..., Awaitable[Any]], ip_filter: IpRangeFilter,
                 url_blacklist: list[dict], max_spider_size: int, new_spool: Callable[[], Any],
                 store_image: StoreImage | None = None, timeout_s: float = 30.0, cache_ttl_s: float = CACHE_TTL_S):
        self.reactor = reactor
        self.ip_filter = ip_filter
        self.timeout_s = timeout_s
        self.tls_policy = ClientTlsPolicy()  # system CAs, stdlib ssl (as federation: no pyOpenSSL at run time)
        self._run = run_in_thread
        self._url_blacklist = url_blacklist
        self._max_size = max_spider_size
        self._new_spool = new_spool
        self._store_image = store_image
        self._agent = Agent.usingEndpointFactory(reactor, _CheckedEndpointFactory(self))
        self._cache_ttl_s = cache_ttl_s
        self._cache: collections.OrderedDict[str, tuple[float, dict]] = collections.OrderedDict()  # url: (expiry, og)
        self._fetching: dict[str, list[defer.Deferred]] = {}  # url: the requests waiting for its fetch under way

    async def preview(self, url: str, ts: int | None = None, user_id: str | None = None) -> dict:
        """The preview of ``url`` (``ts``: see the module docstring); images stored on behalf of ``user_id``."""
        url = ascii_url(url)
        cached = self._cache.get(url)
        if cached is not None and cached[0] > self.reactor.seconds():
            return dict(cached[1])
        if url in self._fetching:
            waiter: defer.Deferred = defer.Deferred()
            self._fetching[url].append(waiter)
            return dict(await waiter)
        self._fetching[url] = []
        try:
            og = await self._fetch(url, user_id)
        except Exception:
            for waiter in self._fetching.pop(url):
                waiter.errback()
            raise
        self._remember(url, og)
        for waiter in self._fetching.pop(url):
            waiter.callback(og)
        return dict(og)

    def _remember(self, url: str, og: dict) -> None:
        now = self.reactor.seconds()
        self._cache.pop(url, None)
        self._cache[url] = (now + self._cache_ttl_s, og)
        while self._cache and (len(self._cache) > MAX_CACHED or next(iter(self._cache.values()))[0] <= now):
            self._cache.popitem(last=False)  # entries are in expiry order: the oldest first

    async def _fetch(self, url: str, user_id: str | None) -> dict:
        d = defer.ensureDeferred(self._preview(url, user_id))
        d.addTimeout(self.timeout_s, self.reactor, onTimeoutCancel=self._timed_out)
        try:
            return await d
        except MatrixError:
            raise
        except Exception as e:
            raise MatrixError(502, "M_UNKNOWN", f"Cannot fetch the URL: {describe_failure(e)}") from None

    def _timed_out(self, _result, _timeout) -> None:
        raise MatrixError(504, "M_UNKNOWN", f"The URL did not answer within {self.timeout_s}s")

    async def resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        """(family, ip) of ``host`` (or the IP literal itself), resolved on the thread pool."""
        if is_ip_literal(host):
            return [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]
        try:
            infos = await self._run(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise MatrixError(502, "M_UNKNOWN", f"Cannot resolve {host}: {e}") from None
        return list(dict.fromkeys((family, sockaddr[0]) for family, _t, _p, _n, sockaddr in infos
                                  if family in (socket.AF_INET, socket.AF_INET6)))

    async def _preview(self, url: str, user_id: str | None) -> dict:
        response, url = await self._get(url)
        content_type, charset = _content_type(response)
        if content_type.startswith("image/"):
            return await self._image_from(response, url, content_type, user_id)
        if content_type not in HTML_TYPES:
            _drop(response)
            return {}
        body = io.BytesIO()
        await self._read(response, body)
        og = parse_html_preview(body.getvalue(), charset)
        image_url = og.pop("og:image", None)
        if image_url and self._store_image is not None:
            try:
                image_response, image_url = await self._get(ascii_url(urljoin(url, image_url)))
                image_type, _ = _content_type(image_response)
                og.update(await self._image_from(image_response, image_url, image_type, user_id))
            except Exception as e:  # a page whose image cannot be fetched or stored is still previewed, without it
                logger.info("URL preview of %s without its image %s: %s", url, image_url, describe_failure(e))
        return og

    async def _get(self, url: str):
        """GET ``url`` following redirects (each target checked again); the 2xx response and its URL."""
        for _ in range(MAX_REDIRECTS + 1):
            if url_blacklisted(url, self._url_blacklist):
                raise forbidden("URL blocked by url_preview_url_blacklist")
            headers = Headers({b"User-Agent": [USER_AGENT], b"Accept": [b"text/html, image/*;q=0.9, */*;q=0.1"]})
            response = await self._agent.request(b"GET", url.encode("ascii"), headers)
            location = response.headers.getRawHeaders(b"location")
            if response.code in _REDIRECTS and location:
                _drop(response)
                try:
                    url = ascii_url(urljoin(url, location[-1].decode("latin-1")))
                except MatrixError:
                    raise MatrixError(502, "M_UNKNOWN", "The URL redirects to one that is not previewed") from None
                continue
            if not 200 <= response.code < 300:
                _drop(response)
                raise MatrixError(502, "M_UNKNOWN", f"The URL answered HTTP {response.code}")
            return response, url
        raise MatrixError(502, "M_UNKNOWN", f"More than {MAX_REDIRECTS} redirects")

    async def _read(self, response, out) -> None:
        length = response.length
        if isinstance(length, int) and length > self._max_size:
            _drop(response)
            raise _page_too_large(self._max_size)
        reader = BodyReader(self._max_size, out.write)
        response.deliverBody(reader)
        try:
            await reader.done
        except RequestSendFailed:
            if reader.size > self._max_size:
                raise _page_too_large(self._max_size) from None
            raise

    async def _image_from(self, response, url: str, content_type: str, user_id: str | None) -> dict:
        if self._store_image is None or not content_type.startswith("image/"):
            _drop(response)
            return {}
        spool = self._new_spool()  # a media file being received: write(), size, discard()
        try:
            await self._read(response, spool)
            name = unquote(os.path.basename(urlsplit(url).path))
            name = name if name and name.isprintable() and "\\" not in name else "image"
            return await self._store_image(spool, content_type, name, user_id)
        finally:
            spool.discard()  # nothing if stored


def _content_type(response) -> tuple[str, str | None]:
    raw = (response.headers.getRawHeaders(b"content-type") or [b""])[-1].decode("latin-1")
    media_type, *params = raw.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
    return media_type.strip().lower(), charset


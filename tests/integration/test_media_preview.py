"""media_repo/preview.py against a real HTTP server on 127.0.0.1 (in this process, on the reactor thread).

The default url_preview_ip_range_blacklist holds 127.0.0.0/8: the same page is refused with it and served
once 127.0.0.1 is whitelisted; redirects to a refused address or URL are refused too; size and time limits.
"""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.web import resource, server

from federation.policy import IpRangeFilter
from homeserver.config import DEFAULT_IP_RANGE_BLACKLIST
from homeserver.errors import MatrixError
from media_repo.filestore import Spool
from media_repo.preview import UrlPreviewer
from tests.integration.reactor_thread import on_reactor, reactor, run_in_thread  # noqa: F401 (fixtures)

LIMIT = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
PAGE = b"""<html><head><title>Agency notes</title><meta name="description" content="Shared minutes">
<meta property="og:image" content="/img.png"></head><body>hello</body></html>"""


class Site(resource.Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.port = 0
        self.hits: list[str] = []

    def render_GET(self, request):
        path = request.path.decode()
        self.hits.append(path)
        if path == "/slow":
            return server.NOT_DONE_YET
        if path == "/chunked-big":
            request.setHeader(b"content-type", b"text/html")
            for _ in range(LIMIT // 1000 + 10):
                request.write(b"<p>" + b"x" * 997)
            request.finish()
            return server.NOT_DONE_YET
        targets = {"/to-page": "/page", "/to-internal": f"http://10.0.0.1:{self.port}/page",
                   "/to-secret": "/secret/page", "/to-file": "file:///etc/passwd"}
        if path in targets:
            request.redirect(targets[path].encode())
            return b""
        if path in ("/page", "/secret/page"):
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return PAGE
        if path in ("/img.png", "/caf%C3%A9%0A.png"):
            request.setHeader(b"content-type", b"image/png")
            return PNG
        if path == "/big":
            request.setHeader(b"content-type", b"text/html")
            return b"<p>" + b"x" * LIMIT
        if path == "/text":
            request.setHeader(b"content-type", b"text/plain")
            return b"just text"
        request.setResponseCode(404)
        return b"no"


@pytest.fixture(scope="module")
def site(reactor):
    web = Site()

    async def listen():
        return reactor.listenTCP(0, server.Site(web), interface="127.0.0.1")

    port = on_reactor(reactor, listen)
    web.port = port.getHost().port
    web.base = f"http://127.0.0.1:{web.port}"
    yield web

    async def stop():
        await port.stopListening()

    on_reactor(reactor, stop)


class StoredImages:
    """Stands in for the media service's store: records what it is given, keeps the spool."""

    def __init__(self):
        self.stored: list[tuple[bytes, str, str, str | None]] = []

    async def __call__(self, spool, content_type: str, name: str, user_id: str | None) -> dict:
        spool.flush()
        with open(spool.path, "rb") as f:
            self.stored.append((f.read(), content_type, name, user_id))
        spool.keep(spool.path + ".kept")
        return {"og:image": f"mxc://test/img{len(self.stored)}", "og:image:type": content_type,
                "matrix:image:size": spool.size}


def make_previewer(reactor, run_in_thread, tmp_path, *, whitelist=("127.0.0.1/32",), url_blacklist=(),
                   store=None, timeout_s=10.0, **options) -> UrlPreviewer:
    return UrlPreviewer(reactor=reactor, run_in_thread=run_in_thread,
                        ip_filter=IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST, whitelist),
                        url_blacklist=list(url_blacklist), max_spider_size=LIMIT,
                        new_spool=lambda: Spool(str(tmp_path)),
                        store_image=store, timeout_s=timeout_s, **options)


def preview(reactor, previewer, url):
    return on_reactor(reactor, lambda: previewer.preview(url, None, "@alice:test"))


def refused(reactor, previewer, url) -> tuple[int, str]:
    with pytest.raises(MatrixError) as e:
        preview(reactor, previewer, url)
    return e.value.status, e.value.errcode


def test_blocked_by_default_served_when_whitelisted(reactor, run_in_thread, site, tmp_path):
    before = len(site.hits)
    assert refused(reactor, make_previewer(reactor, run_in_thread, tmp_path, whitelist=()),
                   site.base + "/page") == (403, "M_FORBIDDEN")
    assert len(site.hits) == before  # never connected
    served = preview(reactor, make_previewer(reactor, run_in_thread, tmp_path), site.base + "/page")
    assert served == {"og:title": "Agency notes", "og:description": "Shared minutes"}


def test_image_stored_as_media(reactor, run_in_thread, site, tmp_path):
    store = StoredImages()
    previewer = make_previewer(reactor, run_in_thread, tmp_path, store=store)
    assert preview(reactor, previewer, site.base + "/to-page") == {
        "og:title": "Agency notes", "og:description": "Shared minutes", "og:image": "mxc://test/img1",
        "og:image:type": "image/png", "matrix:image:size": len(PNG)}
    assert store.stored == [(PNG, "image/png", "img.png", "@alice:test")]
    assert preview(reactor, previewer, site.base + "/img.png")["og:image"] == "mxc://test/img2"
    preview(reactor, previewer, site.base + "/caf%C3%A9%0A.png")  # a name that is no file name: "image"
    assert [name for _, _, name, _ in store.stored] == ["img.png", "img.png", "image"]
    assert sorted(p.name.endswith(".kept") for p in tmp_path.iterdir()) == [True] * 3  # no spool left behind


def test_redirects_checked_again(reactor, run_in_thread, site, tmp_path):
    previewer = make_previewer(reactor, run_in_thread, tmp_path, url_blacklist=[{"path": "/secret/*"}])
    assert refused(reactor, previewer, site.base + "/to-internal") == (403, "M_FORBIDDEN")
    assert refused(reactor, previewer, site.base + "/to-file") == (502, "M_UNKNOWN")
    before = len(site.hits)
    assert refused(reactor, previewer, site.base + "/to-secret") == (403, "M_FORBIDDEN")
    assert refused(reactor, previewer, site.base + "/secret/page") == (403, "M_FORBIDDEN")
    assert site.hits[before:] == ["/to-secret"]


def test_url_blacklist_by_host(reactor, run_in_thread, site, tmp_path):
    previewer = make_previewer(reactor, run_in_thread, tmp_path, url_blacklist=[{"netloc": "127.0.0.1:*"}])
    assert refused(reactor, previewer, site.base + "/page") == (403, "M_FORBIDDEN")


def test_limits(reactor, run_in_thread, site, tmp_path):
    previewer = make_previewer(reactor, run_in_thread, tmp_path, timeout_s=1.0)
    assert refused(reactor, previewer, site.base + "/big") == (502, "M_TOO_LARGE")
    assert refused(reactor, previewer, site.base + "/chunked-big") == (502, "M_TOO_LARGE")
    assert refused(reactor, previewer, site.base + "/slow") == (504, "M_UNKNOWN")
    assert refused(reactor, previewer, site.base + "/missing") == (502, "M_UNKNOWN")
    assert preview(reactor, previewer, site.base + "/text") == {}
    assert refused(reactor, previewer, f"http://127.0.0.1:{site.port + 1 if site.port < 65535 else 1}/") == \
        (502, "M_UNKNOWN")


def test_previews_are_cached_an_hour(reactor, run_in_thread, site, tmp_path):
    """As Synapse: the same URL previewed again within the hour is not fetched again (nor its image), and
    concurrent requests for one URL share one fetch; a failure is not cached; an expired entry is fetched."""
    store = StoredImages()
    previewer = make_previewer(reactor, run_in_thread, tmp_path, store=store)
    before = len(site.hits)
    first = preview(reactor, previewer, site.base + "/page?cached=1")
    assert preview(reactor, previewer, site.base + "/page?cached=1") == first
    assert site.hits[before:] == ["/page", "/img.png"] and len(store.stored) == 1

    async def three_at_once():
        return await defer.gatherResults([defer.ensureDeferred(previewer.preview(site.base + "/page?cached=2"))
                                          for _ in range(3)])

    before = len(site.hits)
    answers = on_reactor(reactor, three_at_once)
    assert answers == [answers[0]] * 3 and answers[0]["og:title"] == "Agency notes"
    assert site.hits[before:] == ["/page", "/img.png"]

    before = len(site.hits)
    for _ in range(2):
        assert refused(reactor, previewer, site.base + "/missing?cached=3") == (502, "M_UNKNOWN")
    assert site.hits[before:] == ["/missing", "/missing"]

    expiring = make_previewer(reactor, run_in_thread, tmp_path, cache_ttl_s=0)
    before = len(site.hits)
    for _ in range(2):
        preview(reactor, expiring, site.base + "/page?cached=4")
    assert site.hits[before:] == ["/page", "/page"]

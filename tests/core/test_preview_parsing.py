"""media_repo/preview.py's pure parts: Open Graph from HTML, url_preview_url_blacklist rules, URL checks."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from homeserver.errors import MatrixError
from homeserver.config.media_backends import check_url_blacklist
from media_repo.preview import MAX_VALUE_LENGTH, ascii_url, parse_html_preview, url_blacklisted


def test_open_graph_first_wins_and_fallbacks():
    page = b"""<!doctype html><html><head><title> The  page\n title </title>
      <meta property="og:description" content="From OG">
      <meta name="description" content="From meta">
      <meta property="og:image" content="/img.png"><meta property="OG:Image" content="/other.png">
      <meta name="og:site_name" content="Site &amp; Co">
      </head><body><title>not this</title></body></html>"""
    assert parse_html_preview(page) == {"og:title": "The page title", "og:description": "From OG",
                                        "og:image": "/img.png", "og:site_name": "Site & Co"}


def test_description_fallback_and_og_title_preferred():
    page = b'<title>T</title><meta property="og:title" content="OG T"><meta name="description" content="D">'
    assert parse_html_preview(page) == {"og:title": "OG T", "og:description": "D"}


@pytest.mark.parametrize("page,header,expected", [
    ("<title>caf\u00e9</title>".encode("latin-1"), "iso-8859-1", "caf\u00e9"),
    (b'<meta charset="windows-1252"><title>caf\xe9</title>', None, "caf\u00e9"),
    ("<title>caf\u00e9</title>".encode("utf-8"), None, "caf\u00e9"),
    ("<title>caf\u00e9</title>".encode("utf-8"), "no-such-charset", "caf\u00e9"),
])
def test_charsets(page, header, expected):
    assert parse_html_preview(page, header)["og:title"] == expected


def test_broken_and_huge_values():
    assert "og:x" not in parse_html_preview(b"<title>unclosed <meta property='og:x' content='1'")
    long = parse_html_preview(b'<meta property="og:title" content="' + b"x" * 10000 + b'">')
    assert len(long["og:title"]) == MAX_VALUE_LENGTH


@given(st.binary(max_size=2000))
def test_any_bytes_parse(body):
    assert isinstance(parse_html_preview(body), dict)


RULES = [{"netloc": "google.com"}, {"netloc": "*.google.com"}, {"scheme": "http"},
         {"netloc": "www.acme.com", "path": "/foo"}, {"netloc": r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$"}]


@pytest.mark.parametrize("url,blocked", [
    ("https://google.com/x", True), ("https://maps.google.com/", True), ("https://notgoogle.com/", False),
    ("http://example.com/", True), ("https://www.acme.com/foo", True), ("https://www.acme.com/bar", False),
    ("https://1.2.3.4/", True), ("https://example.com/", False),
])
def test_url_blacklist(url, blocked):
    assert url_blacklisted(url, RULES) is blocked


def test_url_blacklist_config_problems():
    assert check_url_blacklist(RULES, "k") == []
    assert check_url_blacklist("x", "k")[0].startswith("k: must be a list")
    assert check_url_blacklist([{"host": "x"}], "k") == ["k[0].host: not a URL part (scheme, netloc, path, query, "
                                                       "fragment, username, password, hostname, port)"]
    assert check_url_blacklist([{"netloc": "^("}], "k")[0].startswith("k[0].netloc: not a regular expression")
    assert check_url_blacklist([{}], "k") == ["k[0]: must be a non-empty mapping of URL parts to patterns"]


@pytest.mark.parametrize("url,expected", [
    ("https://exa\u00e9mple.org/p\u00e4th?q=\u00e9 x#frag", "https://xn--example-dya.org/p%C3%A4th?q=%C3%A9%20x"),
    ("http://127.0.0.1:8080/a%20b", "http://127.0.0.1:8080/a%20b"),
    ("http://[::1]:81/", "http://[::1]:81/"),
])
def test_ascii_url(url, expected):
    assert ascii_url(url) == expected


@pytest.mark.parametrize("url", ["ftp://x/", "file:///etc/passwd", "http:///nohost", "javascript:alert(1)",
                                 "http://x:99999/", "not a url"])
def test_refused_urls(url):
    with pytest.raises(MatrixError) as e:
        ascii_url(url)
    assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM")

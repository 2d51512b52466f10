"""Pure rules of the media repository: file names, download headers, Range, quotas, the choice of a
thumbnail, mxc URIs in events, and the multipart/mixed envelope read back in any chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from homeserver.config.values import UploadLimit
from media_repo import multipart, rules
from media_repo.filestore import valid_media_id, valid_server_name
from media_repo.service import mxc_uris, parse_mxc
from media_repo.thumbnails import scaled_size


@pytest.mark.parametrize("name", ["a/b", "..\\x", "tab\there", "nul\x00", "rtl\u202e.txt", ".."])
def test_bad_file_names(name):
    with pytest.raises(rules.BadFileName):
        rules.check_file_name(name)


def test_good_file_names():
    assert rules.check_file_name("rapport final (v2).pdf") == "rapport final (v2).pdf"
    assert rules.check_file_name("été.txt") == "été.txt"
    assert rules.check_file_name("") is None and rules.check_file_name(None) is None
    with pytest.raises(rules.BadFileName):
        rules.check_file_name("é" * 200)  # 400 bytes


def test_content_disposition():
    assert rules.content_disposition("image/png", "a.png") == b'inline; filename="a.png"'
    assert rules.content_disposition("text/html", "a.html") == b'attachment; filename="a.html"'
    assert rules.content_disposition("text/plain; charset=utf-8", None) == b"inline"
    assert rules.content_disposition("image/svg+xml", 'x"y.svg') == b"attachment; filename*=utf-8''x%22y.svg"
    assert rules.content_disposition("application/pdf", "a b.pdf") == b"attachment; filename*=utf-8''a%20b.pdf"


def test_content_type_of():
    assert rules.content_type_of(None) == "application/octet-stream"
    assert rules.content_type_of("text/plain; charset=utf-8") == "text/plain; charset=utf-8"
    assert rules.content_type_of("not a type") == "application/octet-stream"
    assert rules.content_type_of("text/plain\r\nX-Injected: 1") == "application/octet-stream"


@pytest.mark.parametrize("header,expected", [
    (None, None), ("bytes=0-9", (0, 10)), ("bytes=5-", (5, 95)), ("bytes=-10", (90, 10)), ("bytes=90-200", (90, 10)),
    ("bytes=-500", (0, 100)), ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=9-5", None), ("bytes=x-1", None),
])
def test_parse_range(header, expected):
    assert rules.parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_unsatisfiable_range(header):
    with pytest.raises(rules.Unsatisfiable):
        rules.parse_range(header, 100)


@given(st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), st.integers(1, 10 ** 6))
def test_a_satisfiable_range_stays_inside_the_file(first, last, size):
    try:
        found = rules.parse_range(f"bytes={first}-{last}", size)
    except rules.Unsatisfiable:
        assert first >= size
        return
    if found is not None:
        offset, length = found
        assert 0 <= offset < size and 1 <= length and offset + length <= size


def test_quota():
    hour, week = UploadLimit(3_600_000, 100), UploadLimit(604_800_000, 150)
    used = {hour: 50, week: 120}
    assert rules.quota_exceeded([hour, week], used.__getitem__, 20) is None
    assert rules.quota_exceeded([hour, week], used.__getitem__, 40) == week
    assert rules.quota_exceeded([hour, week], used.__getitem__, 60) == hour


def test_choose_thumbnail():
    sizes = [(32, 32, "crop"), (96, 96, "crop"), (320, 240, "scale"), (640, 480, "scale")]
    assert rules.choose_thumbnail(sizes, 40, 40, "crop") == (96, 96, "crop")
    assert rules.choose_thumbnail(sizes, 1000, 1000, "crop") == (96, 96, "crop")
    assert rules.choose_thumbnail(sizes, 300, 200, "scale") == (320, 240, "scale")
    assert rules.choose_thumbnail([(320, 240, "scale")], 32, 32, "crop") == (320, 240, "scale")
    assert rules.choose_thumbnail([], 32, 32, "crop") is None


def test_scaled_size_keeps_the_ratio_and_never_enlarges():
    assert scaled_size(4000, 3000, 320, 240) == (320, 240)
    assert scaled_size(3000, 4000, 320, 240) == (180, 240)
    assert scaled_size(100, 50, 320, 240) == (100, 50)


def test_ids_and_mxc():
    assert valid_media_id("abcDEF_-09") and not valid_media_id("../x") and not valid_media_id("a.b")
    assert valid_server_name("localhost:8448") and valid_server_name("[::1]:80")
    assert not valid_server_name("..") and not valid_server_name("a/b") and not valid_server_name(".hidden")
    assert parse_mxc("mxc://example.org/abc") == ("example.org", "abc")
    assert parse_mxc("mxc://example.org/../x") is None and parse_mxc("https://x/y") is None
    content = {"msgtype": "m.image", "url": "mxc://a.org/img", "info": {"thumbnail_url": "mxc://a.org/th",
               "thumbnail_file": {"url": "mxc://a.org/thf"}}, "file": {"url": "mxc://b.org/enc"}}
    assert sorted(mxc_uris(content)) == ["mxc://a.org/img", "mxc://a.org/th", "mxc://a.org/thf", "mxc://b.org/enc"]
    assert mxc_uris({"url": "http://x/y"}) == [] and mxc_uris(None) == []


@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), max_size=20))
def test_multipart_read_back_in_any_chunking(payload, cuts):
    content_type, prefix, suffix = multipart.envelope("application/pdf", b'attachment; filename="a.pdf"')
    wire = prefix + payload + suffix
    got = bytearray()
    reader = multipart.MultipartReader(content_type.decode(), got.extend)
    position = 0
    for cut in cuts:
        reader.feed(wire[position:position + cut])
        position += cut
    reader.feed(wire[position:])
    reader.finish()
    assert bytes(got) == payload
    assert reader.headers == {"content-type": "application/pdf", "content-disposition": 'attachment; filename="a.pdf"'}


def test_multipart_errors():
    with pytest.raises(multipart.MultipartError):
        multipart.MultipartReader("application/json", lambda _: None)
    content_type, prefix, _ = multipart.envelope("text/plain", b"inline")
    reader = multipart.MultipartReader(content_type.decode(), lambda _: None)
    reader.feed(prefix + b"truncated")
    with pytest.raises(multipart.MultipartError):
        reader.finish()
    reader = multipart.MultipartReader(content_type.decode(), lambda _: None)
    with pytest.raises(multipart.MultipartError):
        reader.feed(b"x" * (multipart.HEAD_LIMIT + 1))


def test_legacy_fallback_only_for_an_unknown_endpoint():
    """Synapse's test: 404/405 with M_UNRECOGNIZED or an empty body, or 400 M_UNRECOGNIZED."""
    from federation.client import HttpResponseError
    from media_repo.remote import _unknown_endpoint

    assert _unknown_endpoint(HttpResponseError(404, {"errcode": "M_UNRECOGNIZED"}))
    assert _unknown_endpoint(HttpResponseError(405, b""))
    assert _unknown_endpoint(HttpResponseError(400, {"errcode": "M_UNRECOGNIZED"}))
    assert not _unknown_endpoint(HttpResponseError(404, {"errcode": "M_NOT_FOUND"}))
    assert not _unknown_endpoint(HttpResponseError(502, {"errcode": "M_UNRECOGNIZED"}))
    assert not _unknown_endpoint(HttpResponseError(403, {"errcode": "M_FORBIDDEN"}))

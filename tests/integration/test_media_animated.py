"""Animated thumbnails (spec v1.11+ ``animated`` on the thumbnail endpoints) against a real server: an animated
GIF or WebP asked with ``animated=true`` keeps its frames, durations and loop in a thumbnail of its own format;
without it (or ``false``), and for any still image, the static thumbnail Synapse answers."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.integration.media_client import AUTHED, download, split_mxc, upload

DURATIONS = [50, 80, 120]


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory(thumbnail_sizes=[
        {"width": 32, "height": 32, "method": "crop"}, {"width": 96, "height": 96, "method": "crop"},
        {"width": 320, "height": 240, "method": "scale"}])


@pytest.fixture(scope="module")
def alice(server):
    return server.register()


def _animation(fmt: str, frames: int = 3) -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    images = [Image.new("RGB", (200, 150), colours[i % 3]) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, fmt, save_all=True, append_images=images[1:], duration=DURATIONS[:frames], loop=0)
    return out.getvalue()


def _thumbnail(server, user, content: bytes, content_type: str, query: str) -> tuple[int, str, bytes]:
    status, body = upload(server.base_url, user.token, content, content_type=content_type)
    assert status == 200, body
    origin, media_id = split_mxc(body["content_uri"])
    status, headers, data = download(server.base_url, f"{AUTHED}/thumbnail/{origin}/{media_id}?{query}",
                                     user.token)
    return status, headers["Content-Type"], data


@pytest.mark.parametrize("fmt, content_type", [("GIF", "image/gif"), ("WEBP", "image/webp")])
def test_animated_source_keeps_its_animation(server, alice, fmt, content_type):
    status, media_type, data = _thumbnail(server, alice, _animation(fmt), content_type,
                                          "width=96&height=96&method=crop&animated=true")
    assert (status, media_type) == (200, content_type)
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.format == fmt and thumb.is_animated and thumb.n_frames == 3
        assert thumb.size == (96, 96)
        durations = []
        for i in range(thumb.n_frames):
            thumb.seek(i)
            thumb.load()  # WebP: a frame's duration is known once it is decoded
            durations.append(thumb.info["duration"])
        assert durations == DURATIONS
        assert thumb.info.get("loop") == 0


def test_animated_is_never_upscaled(server, alice):
    status, media_type, data = _thumbnail(server, alice, _animation("GIF"), "image/gif",
                                          "width=320&height=240&method=scale&animated=true")
    assert (status, media_type) == (200, "image/gif")
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.size == (200, 150) and thumb.n_frames == 3


@pytest.mark.parametrize("query", ["", "&animated=false"])
def test_static_thumbnail_unless_asked(server, alice, query):
    status, media_type, data = _thumbnail(server, alice, _animation("GIF"), "image/gif",
                                          f"width=96&height=96&method=crop{query}")
    assert (status, media_type) == (200, "image/png")
    with Image.open(io.BytesIO(data)) as thumb:
        assert not getattr(thumb, "is_animated", False) and thumb.size == (96, 96)


def test_both_kinds_of_one_source_are_kept_apart(server, alice):
    """The animated and the static thumbnail of the same size coexist; each request gets its kind."""
    status, body = upload(server.base_url, alice.token, _animation("GIF"), content_type="image/gif")
    origin, media_id = split_mxc(body["content_uri"])
    path = f"{AUTHED}/thumbnail/{origin}/{media_id}?width=32&height=32&method=crop"
    for query, expected in [("&animated=true", "image/gif"), ("", "image/png"), ("&animated=true", "image/gif"),
                            ("&animated=false", "image/png")]:
        status, headers, _ = download(server.base_url, path + query, alice.token)
        assert (status, headers["Content-Type"]) == (200, expected), query


@pytest.mark.parametrize("fmt, content_type, expected", [
    ("PNG", "image/png", "image/png"), ("GIF", "image/gif", "image/png"), ("JPEG", "image/jpeg", "image/jpeg")])
def test_still_images_give_static_thumbnails_when_animated_is_asked(server, alice, fmt, content_type, expected):
    out = io.BytesIO()
    Image.new("RGB", (200, 150), (10, 20, 30)).save(out, fmt)
    status, media_type, data = _thumbnail(server, alice, out.getvalue(), content_type,
                                          "width=96&height=96&method=crop&animated=true")
    assert (status, media_type) == (200, expected)


def test_bad_animated_value(server, alice):
    status, body = upload(server.base_url, alice.token, _animation("GIF"), content_type="image/gif")
    origin, media_id = split_mxc(body["content_uri"])
    status, _, data = download(server.base_url, f"{AUTHED}/thumbnail/{origin}/{media_id}?width=32&height=32"
                               "&animated=maybe", alice.token)
    assert status == 400 and b"M_INVALID_PARAM" in data

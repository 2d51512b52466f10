"""Pure rules of the content repository (spec v1.19 client-server "Content repository"): file names, the
headers a download carries, Range requests, upload quotas, the choice of a thumbnail. No I/O."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from typing import Iterable

from homeserver.config.values import UploadLimit

# Served inline; anything else is an attachment (spec: "Content-Disposition ... MUST be attachment unless
# the media type is one of a list of types safe to render inline" - the same list as Synapse's).
INLINE_CONTENT_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav",
    "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})
# The spec's Content-Security-Policy for media, so that a file opened in a browser cannot run anything.
CSP = b"sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; " \
      b"media-src 'self'; object-src 'self';"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
THUMBNAIL_SOURCE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp"})
ANIMATED_SOURCE_TYPES = frozenset({"image/gif", "image/webp"})  # may have animated thumbnails (same type)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class BadFileName(ValueError):
    pass


def check_file_name(name: str | None) -> str | None:
    """An upload's ``filename``: kept as given, but never a path (``/`` or ``\\``), never control characters
    (they would break headers and logs), at most 255 UTF-8 bytes."""
    if name is None or name == "":
        return None
    if "/" in name or "\\" in name:
        raise BadFileName("file name must not contain a path separator")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise BadFileName("file name must not contain control characters")
    if name in (".", ".."):
        raise BadFileName("file name must not be . or ..")
    if len(name.encode("utf-8")) > 255:
        raise BadFileName("file name is longer than 255 bytes")
    return name


def content_type_of(header: str | None) -> str:
    """The media type to store for an upload's ``Content-Type`` (parameters such as charset kept)."""
    if not header or not header.strip():
        return DEFAULT_CONTENT_TYPE
    value = header.strip()
    if not _TOKEN.match(value.split(";", 1)[0].strip()) or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return DEFAULT_CONTENT_TYPE
    return value


def essence(media_type: str | None) -> str:
    """``text/plain; charset=utf-8`` -> ``text/plain``."""
    return (media_type or DEFAULT_CONTENT_TYPE).split(";", 1)[0].strip().lower()


def content_disposition(media_type: str | None, file_name: str | None) -> bytes:
    """``inline`` only for the safe types, ``attachment`` otherwise; the name as RFC 6266/5987 says: a plain
    ``filename=`` when it is printable ASCII, else ``filename*=utf-8''`` percent-encoded."""
    kind = "inline" if essence(media_type) in INLINE_CONTENT_TYPES else "attachment"
    if not file_name:
        return kind.encode()
    if all(0x20 < ord(c) < 0x7f for c in file_name) and not any(c in file_name for c in '"\\;,'):
        return f'{kind}; filename="{file_name}"'.encode()
    return f"{kind}; filename*=utf-8''{urllib.parse.quote(file_name, safe='')}".encode()


def download_headers(media_type: str | None, file_name: str | None) -> dict[bytes, bytes]:
    """The headers every media answer carries (spec "Content repository", "Security considerations")."""
    return {
        b"Content-Disposition": content_disposition(media_type, file_name),
        b"Content-Security-Policy": CSP,
        b"X-Content-Security-Policy": CSP,
        b"Cross-Origin-Resource-Policy": b"cross-origin",
        b"Accept-Ranges": b"bytes",
        b"Cache-Control": b"public,max-age=86400,s-maxage=86400",
        b"X-Content-Type-Options": b"nosniff",
    }


class Unsatisfiable(ValueError):
    """416: the range starts past the end of the file."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """RFC 9110 ``Range: bytes=...`` of one range -> (offset, length); None = send the whole file (no header,
    several ranges or a malformed one may be ignored, RFC 9110 14.2); raises :class:`Unsatisfiable`."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) \
            or (last and not last.isdigit()):
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0:
            raise Unsatisfiable()
        count = min(count, size)
        return size - count, count
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        raise Unsatisfiable()
    if end < start:
        return None
    return start, end - start + 1


def quota_exceeded(quotas: Iterable[UploadLimit], used_in_period, new_size: int) -> UploadLimit | None:
    """The first ``media_upload_limits`` entry a new upload of ``new_size`` bytes would break, given
    ``used_in_period(quota)``: the bytes the user uploaded within that entry's period."""
    for quota in quotas:
        if used_in_period(quota) + new_size > quota.max_size:
            return quota
    return None


def choose_thumbnail(candidates: list[tuple[int, int, str]], width: int, height: int, method: str
                     ) -> tuple[int, int, str] | None:
    """Of the (width, height, method) thumbnails available, the one to answer a request for width x height
    with ``method``: the smallest of that method at least as large as asked, else the largest of that method,
    else the nearest of any method (Synapse's preference order, simplified)."""
    if not candidates:
        return None
    same = [c for c in candidates if c[2] == method] or candidates
    big_enough = [c for c in same if c[0] >= width and c[1] >= height]
    if big_enough:
        return min(big_enough, key=lambda c: (c[0] * c[1], c))
    return max(same, key=lambda c: (c[0] * c[1], c))

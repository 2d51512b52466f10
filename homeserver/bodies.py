"""Response bodies shared by the HTTP layer and the services that pre-encode answers (sync's cache)."""

from __future__ import annotations

import json
from typing import Any, BinaryIO


def encode_json(body: Any) -> bytes:
    """The JSON of every answer: compact, UTF-8 rather than ASCII escapes."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class RawBody:
    """A non-JSON response body (e.g. media, HTML)."""

    def __init__(self, data: bytes, content_type: bytes, headers: dict[bytes, bytes] | None = None):
        self.data = data
        self.content_type = content_type
        self.headers = headers or {}  # more response headers (e.g. a page's Content-Security-Policy)


class FileBody:
    """A response body streamed from an open file: ``length`` bytes from ``offset`` (a Range answer, or the
    whole file), between ``prefix`` and ``suffix`` bytes (a multipart envelope); never read whole into memory.
    The HTTP layer closes ``file`` once sent (or once the client has gone)."""

    def __init__(self, file: BinaryIO, length: int, content_type: bytes, *, offset: int = 0,
                 headers: dict[bytes, bytes] | None = None, prefix: bytes = b"", suffix: bytes = b""):
        self.file = file
        self.offset = offset
        self.length = length
        self.content_type = content_type
        self.headers = headers or {}
        self.prefix = prefix
        self.suffix = suffix

    @property
    def total(self) -> int:
        return len(self.prefix) + self.length + len(self.suffix)


def with_encoded_arrays(body: dict, **arrays: list[bytes]) -> RawBody:
    """``body`` plus members that are arrays of values already encoded as JSON (stored PDUs), as
    one JSON answer: those values are copied as they are, never decoded and encoded again."""
    members = [encode_json(name) + b":[" + b",".join(values) + b"]" for name, values in arrays.items()]
    joint = b"," if body and members else b""
    return RawBody(encode_json(body)[:-1] + joint + b",".join(members) + b"}", b"application/json")

"""Response bodies shared by the HTTP layer and the services that pre-encode answers (sync's cache)."""

from __future__ import annotations

import json
from typing import Any


def encode_json(body: Any) -> bytes:
    """The JSON of every answer: compact, UTF-8 rather than ASCII escapes."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class RawBody:
    """A non-JSON response body (e.g. media, HTML)."""

    def __init__(self, data: bytes, content_type: bytes, headers: dict[bytes, bytes] | None = None):
        self.data = data
        self.content_type = content_type
        self.headers = headers or {}  # more response headers (e.g. a page's Content-Security-Policy)


def with_encoded_arrays(body: dict, **arrays: list[bytes]) -> RawBody:
    """``body`` plus members that are arrays of values already encoded as JSON (stored PDUs), as
    one JSON answer: those values are copied as they are, never decoded and encoded again."""
    members = [encode_json(name) + b":[" + b",".join(values) + b"]" for name, values in arrays.items()]
    joint = b"," if body and members else b""
    return RawBody(encode_json(body)[:-1] + joint + b",".join(members) + b"}", b"application/json")

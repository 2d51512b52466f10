"""Response bodies shared by the HTTP layer and the services that pre-encode answers (sync's cache)."""

from __future__ import annotations

import json
from typing import Any


def encode_json(body: Any) -> bytes:
    """The JSON of every answer: compact, UTF-8 rather than ASCII escapes."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class RawBody:
    """A non-JSON response body (e.g. media, HTML)."""

    def __init__(self, data: bytes, content_type: bytes):
        self.data = data
        self.content_type = content_type

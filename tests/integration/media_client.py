"""Raw-HTTP helpers for the media tests: upload a body (bytes or a stream), download with headers."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Iterable

AUTHED = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"


def upload(base_url: str, token: str | None, body: bytes | Iterable[bytes], *, filename: str | None = None,
           content_type: str | None = "application/octet-stream", length: int | None = None,
           path: str = f"{LEGACY}/upload", method: str = "POST") -> tuple[int, dict]:
    """Send ``body`` (bytes, or chunks streamed with ``length`` as Content-Length); (status, JSON)."""
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    if filename is not None:
        path += "?" + urllib.parse.urlencode({"filename": filename})
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if content_type:
        headers["Content-Type"] = content_type
    if length is not None:
        headers["Content-Length"] = str(length)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def download(base_url: str, path: str, token: str | None = None, headers: dict | None = None
             ) -> tuple[int, http.client.HTTPMessage, bytes]:
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("GET", path, headers=all_headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def split_mxc(uri: str) -> tuple[str, str]:
    assert uri.startswith("mxc://"), uri
    server, media_id = uri[6:].split("/", 1)
    return server, media_id

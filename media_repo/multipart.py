"""The ``multipart/mixed`` answers of server-server media downloads (spec v1.19 server-server "Content
repository"): exactly two parts, JSON metadata (``{}`` today) then the file (or a ``Location``). Both sides
stream: the envelope is written around a file without reading it whole, and :class:`MultipartReader` passes
the file part's bytes on as they arrive, holding back only what could be the closing delimiter. Pure, no I/O.
"""

from __future__ import annotations

import re
import secrets
from typing import Callable

HEAD_LIMIT = 64 * 1024  # the JSON part and the file part's headers together, at most
_BOUNDARY = re.compile(r'boundary="?([^";]{1,70})"?', re.IGNORECASE)


class MultipartError(ValueError):
    pass


def envelope(media_type: str, disposition: bytes, boundary: str | None = None) -> tuple[bytes, bytes, bytes]:
    """(Content-Type of the answer, bytes before the file, bytes after it)."""
    boundary = boundary or secrets.token_hex(16)
    b = boundary.encode()
    prefix = (b"--" + b + b"\r\nContent-Type: application/json\r\n\r\n{}\r\n--" + b +
              b"\r\nContent-Type: " + media_type.encode("latin-1") + b"\r\nContent-Disposition: " + disposition +
              b"\r\n\r\n")
    return b"multipart/mixed; boundary=" + b, prefix, b"\r\n--" + b + b"--\r\n"


def boundary_of(content_type: str | None) -> str:
    if not content_type or not content_type.lower().startswith("multipart/mixed"):
        raise MultipartError(f"not multipart/mixed: {content_type!r}")
    m = _BOUNDARY.search(content_type)
    if m is None:
        raise MultipartError("multipart/mixed without a boundary")
    return m.group(1)


def _headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


class MultipartReader:
    """Reads the two-part answer as it arrives; the second part's bytes go to ``sink``.

    After ``finish()``, ``headers`` are the file part's headers (``content-type``, ``content-disposition`` or
    ``location``)."""

    def __init__(self, content_type: str | None, sink: Callable[[bytes], None]):
        self._delimiter = b"\r\n--" + boundary_of(content_type).encode("latin-1")
        self._sink = sink
        self._buffer = b"\r\n"  # the first delimiter has no CRLF before it
        self._in_file = False
        self.headers: dict[str, str] = {}

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if not self._in_file:
            self._read_head()
        if self._in_file:
            keep = len(self._delimiter) + 8  # "--" and a CRLF after the closing delimiter, and some slack
            if len(self._buffer) > keep:
                self._sink(self._buffer[:-keep])
                self._buffer = self._buffer[-keep:]

    def _read_head(self) -> None:
        d = self._delimiter
        first = self._buffer.find(d)
        second = self._buffer.find(d, first + len(d)) if first != -1 else -1
        end_of_headers = self._buffer.find(b"\r\n\r\n", second + len(d)) if second != -1 else -1
        if end_of_headers == -1:
            if len(self._buffer) > HEAD_LIMIT:
                raise MultipartError("no file part in the first 64 KiB")
            return
        self.headers = _headers(self._buffer[second + len(d):end_of_headers])
        self._buffer = self._buffer[end_of_headers + 4:]
        self._in_file = True

    def finish(self) -> None:
        if not self._in_file:
            raise MultipartError("the answer ended before its file part")
        end = self._buffer.find(self._delimiter)
        if end == -1:
            raise MultipartError("the answer ended before its closing delimiter")
        self._sink(self._buffer[:end])
        self._buffer = b""

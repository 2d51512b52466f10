"""Antivirus scanning of media files by ClamAV's daemon (clamd), over its INSTREAM protocol.

What it guarantees: :meth:`ClamdScanner.scan_file` answers a :class:`ScanVerdict` only when clamd
itself said ``OK`` or ``<signature> FOUND`` for the whole file; anything else (connection refused,
timeout, a reply that is neither, clamd's own ``... ERROR`` such as its ``StreamMaxLength`` being
exceeded) raises :class:`ScannerUnavailable`, so a caller running ``fail_closed`` refuses the file.

The file is streamed from disk in chunks with back-pressure (a 1 GB file never sits in memory).
The scanner is stateless: verdicts are remembered by content hash in the media store.

Protocol (clamd(8), "INSTREAM"): send ``zINSTREAM\\0``, then chunks each prefixed by their length
as a 4-byte big-endian integer, then a zero length; clamd answers one NUL-terminated line
``stream: OK`` or ``stream: <name> FOUND`` and closes the connection.
The address is the ``content_scanner.clamd`` configuration value: ``tcp://HOST:PORT`` or ``unix:PATH``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from twisted.internet import defer, protocol
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.protocols.basic import FileSender
from twisted.protocols.policies import TimeoutMixin

from homeserver.config.media_backends import parse_clamd_address

_CHUNK = 256 * 1024
_MAX_REPLY = 4096


class ScannerUnavailable(Exception):
    """clamd could not be reached, timed out or did not give a verdict."""


@dataclass(frozen=True)
class ScanVerdict:
    clean: bool
    signature: str | None  # the name of the signature found, when not clean


def parse_reply(reply: bytes) -> ScanVerdict:
    """clamd's answer to INSTREAM -> verdict; :class:`ScannerUnavailable` for an error or garbage."""
    text = reply.rstrip(b"\0\n").decode("utf-8", "replace")
    name, sep, result = text.partition(": ")
    if sep and name == "stream":
        if result == "OK":
            return ScanVerdict(clean=True, signature=None)
        if result.endswith(" FOUND") and len(result) > len(" FOUND"):
            return ScanVerdict(clean=False, signature=result[: -len(" FOUND")])
    raise ScannerUnavailable(f"clamd answered {text[:200]!r}")


class _ChunkSender(FileSender):
    CHUNK_SIZE = _CHUNK


class _InstreamProtocol(protocol.Protocol, TimeoutMixin):
    """One INSTREAM exchange; ``done`` fires with the raw reply or fails."""

    def __init__(self, file, timeout: float):
        self._file = file
        self._timeout = timeout
        self._reply = b""
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.setTimeout(self._timeout)
        self.transport.write(b"zINSTREAM\0")
        sending = _ChunkSender().beginFileTransfer(self._file, self.transport, self._frame)
        sending.addCallbacks(self._sent, lambda _f: None)

    def _frame(self, chunk: bytes) -> bytes:
        self.resetTimeout()
        return struct.pack(">I", len(chunk)) + chunk

    def _sent(self, _last) -> None:
        if self.transport.connected:
            self.transport.write(struct.pack(">I", 0))
            self.resetTimeout()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self._reply += data
        if len(self._reply) > _MAX_REPLY:
            self._fail(ScannerUnavailable("clamd's reply is too long"))
        elif self._reply.endswith(b"\0"):
            self._finish()

    def timeoutConnection(self) -> None:
        self._fail(ScannerUnavailable(f"clamd did not answer within {self._timeout}s"))

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.setTimeout(None)
        if not self.done.called:
            if self._reply:
                self._finish()
            else:
                self.done.errback(ScannerUnavailable(f"clamd closed the connection: {reason.getErrorMessage()}"))

    def _finish(self) -> None:
        self.setTimeout(None)
        if not self.done.called:
            self.done.callback(self._reply)
        self.transport.loseConnection()

    def _fail(self, error: Exception) -> None:
        self.setTimeout(None)
        if not self.done.called:
            self.done.errback(error)
        self.transport.abortConnection()


class ClamdScanner:
    """Scans files with clamd at ``address``; ``timeout`` bounds connecting and each silence in the exchange
    (the upload of a chunk, clamd's scan after the last one)."""

    def __init__(self, address: str, reactor, timeout: float = 30.0):
        kind, where, port = parse_clamd_address(address)
        if kind == "unix":
            self._endpoint = UNIXClientEndpoint(reactor, where, timeout=timeout)
        else:
            self._endpoint = HostnameEndpoint(reactor, where, port, timeout=timeout)
        self._address = address
        self._timeout = timeout

    async def scan_file(self, path: str) -> ScanVerdict:
        """The verdict of clamd on the file at ``path``, streamed in chunks."""
        with open(path, "rb") as f:
            exchange = _InstreamProtocol(f, self._timeout)
            try:
                await self._endpoint.connect(protocol.Factory.forProtocol(lambda: exchange))
            except Exception as e:
                raise ScannerUnavailable(f"cannot connect to clamd at {self._address}: {e}") from None
            return parse_reply(await exchange.done)

"""media_repo/scanner.py against a real clamd (clamd.py): EICAR found, a clean file clean, a big file
streamed in chunks, clamd stopped -> ScannerUnavailable, clamd back -> verdicts again; both socket kinds."""

from __future__ import annotations

import os

import pytest

from homeserver.config.media_backends import parse_clamd_address
from media_repo.scanner import ClamdScanner, ScannerUnavailable, ScanVerdict, parse_reply
from tests.integration.clamd import EICAR, SIGNATURE, ClamdProcess, clamd, clamd_binary  # noqa: F401 (fixture)
from tests.integration.reactor_thread import on_reactor, reactor  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(clamd_binary() is None,
                                reason="clamd is not installed (Debian package clamav-daemon)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    paths = {"eicar": d / "eicar.com", "clean": d / "clean.txt", "big": d / "big.bin",
             "embedded": d / "embedded.bin"}
    paths["eicar"].write_bytes(EICAR)
    paths["clean"].write_bytes(b"nothing to see here\n" * 100)
    with open(paths["big"], "wb") as f:  # 40 MiB, above clamd's default StreamMaxLength of 25 MiB
        for _ in range(40):
            f.write(os.urandom(1024 * 1024))
    paths["embedded"].write_bytes(os.urandom(3 * 1024 * 1024) + EICAR + os.urandom(1024))
    return {k: str(v) for k, v in paths.items()}


def scan(reactor, address: str, path: str, timeout: float = 30.0) -> ScanVerdict:
    scanner = ClamdScanner(address, reactor, timeout=timeout)
    return on_reactor(reactor, lambda: scanner.scan_file(path))


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_verdicts(reactor, clamd, files, kind):
    address = clamd.tcp_address if kind == "tcp" else clamd.unix_address
    assert scan(reactor, address, files["eicar"]) == ScanVerdict(clean=False, signature=SIGNATURE)
    assert scan(reactor, address, files["clean"]) == ScanVerdict(clean=True, signature=None)
    assert scan(reactor, address, files["embedded"]) == ScanVerdict(clean=False, signature=SIGNATURE)


def test_big_file_streamed(reactor, clamd, files):
    assert scan(reactor, clamd.tcp_address, files["big"]) == ScanVerdict(clean=True, signature=None)


def test_stream_limit_is_unavailable(reactor, tmp_path, files):
    """clamd's own StreamMaxLength refusal is not a verdict: the file is not called clean."""
    small = ClamdProcess(tmp_path, stream_max_length="1M").start()
    try:
        with pytest.raises(ScannerUnavailable):
            scan(reactor, small.tcp_address, files["embedded"])
    finally:
        small.stop()


def test_stopped_then_restarted(reactor, tmp_path, files):
    process = ClamdProcess(tmp_path).start()
    try:
        assert scan(reactor, process.tcp_address, files["clean"]).clean
        process.stop()
        for address in (process.tcp_address, process.unix_address):
            with pytest.raises(ScannerUnavailable):
                scan(reactor, address, files["clean"], timeout=5)
        process.start()
        assert scan(reactor, process.unix_address, files["eicar"]).signature == SIGNATURE
        assert scan(reactor, process.tcp_address, files["clean"]).clean
    finally:
        process.stop()


def test_silent_peer_times_out(reactor, files):
    """A peer that accepts and never answers: ScannerUnavailable after the timeout, not a hang."""
    from twisted.internet import protocol

    port = on_reactor(reactor, _listen_silently(reactor, protocol))
    try:
        with pytest.raises(ScannerUnavailable, match="did not answer"):
            scan(reactor, f"tcp://127.0.0.1:{port.getHost().port}", files["clean"], timeout=0.5)
    finally:
        on_reactor(reactor, lambda: _stop(port))


def _listen_silently(reactor, protocol):
    async def listen():
        return reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol), interface="127.0.0.1")
    return listen


async def _stop(port):
    await port.stopListening()


@pytest.mark.parametrize("address,expected", [
    ("tcp://127.0.0.1:3310", ("tcp", "127.0.0.1", 3310)),
    ("tcp://clamav.internal:3310", ("tcp", "clamav.internal", 3310)),
    ("unix:/run/clamav/clamd.ctl", ("unix", "/run/clamav/clamd.ctl", 0)),
    ("unix:///run/clamav/clamd.ctl", ("unix", "/run/clamav/clamd.ctl", 0)),
])
def test_addresses(address, expected):
    assert parse_clamd_address(address) == expected


@pytest.mark.parametrize("address", ["127.0.0.1:3310", "tcp://127.0.0.1", "http://x:1", "unix:relative",
                                     "tcp://h:99999", 3310])
def test_bad_addresses(address):
    with pytest.raises(ValueError):
        parse_clamd_address(address)


@pytest.mark.parametrize("reply", [b"", b"PONG\0", b"stream: \0", b"INSTREAM size limit exceeded. ERROR\0",
                                   b"stream: FOUND\0", b"stream: lstat() failed. ERROR\0"])
def test_replies_without_verdict(reply):
    with pytest.raises(ScannerUnavailable):
        parse_reply(reply)

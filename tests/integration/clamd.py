"""A real clamd (Debian's clamav-daemon) for the tests: its own configuration, a one-signature database
written here (the EICAR test file, matched anywhere in a file), no freshclam and no network.

``ClamdProcess.start()`` returns once clamd answers PING; ``stop()`` kills it by PID. Tests skip with the
reason when clamd is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.integration.harness import free_port

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE_NAME = "Hexagone.Test.EICAR"
SIGNATURE = f"{SIGNATURE_NAME}.UNOFFICIAL"  # clamd marks signatures of unofficial databases so


def clamd_binary() -> str | None:
    found = shutil.which("clamd")
    if found:
        return found
    return "/usr/sbin/clamd" if os.access("/usr/sbin/clamd", os.X_OK) else None


def clamd_ping(sock_family: int, address) -> bool:
    try:
        with socket.socket(sock_family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(address)
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")
    except OSError:
        return False


class ClamdProcess:
    """clamd listening on 127.0.0.1:<free port> and on a UNIX socket in ``directory``."""

    def __init__(self, directory: str, stream_max_length: str = "2000M"):
        self.dir = str(directory)
        self.port = free_port()
        self.socket_path = os.path.join(self.dir, "clamd.sock")
        self.tcp_address = f"tcp://127.0.0.1:{self.port}"
        self.unix_address = f"unix:{self.socket_path}"
        self.log_path = os.path.join(self.dir, "clamd.log")
        self.proc: subprocess.Popen | None = None
        db = os.path.join(self.dir, "db")
        os.makedirs(db, exist_ok=True)
        with open(os.path.join(db, "hexagone-test.ndb"), "w") as f:
            f.write(f"{SIGNATURE_NAME}:0:*:{EICAR.hex()}\n")
        self.config_path = os.path.join(self.dir, "clamd.conf")
        with open(self.config_path, "w") as f:
            f.write("\n".join([
                "Foreground yes", f"DatabaseDirectory {db}", "TCPAddr 127.0.0.1", f"TCPSocket {self.port}",
                f"LocalSocket {self.socket_path}", f"LogFile {self.log_path}", "LogVerbose no",
                f"StreamMaxLength {stream_max_length}", "MaxFileSize 2000M", "MaxScanSize 2000M",
                "SelfCheck 0", "",
            ]))

    def start(self, timeout: float = 60.0) -> "ClamdProcess":
        binary = clamd_binary()
        assert binary, "clamd is not installed"
        self.proc = subprocess.Popen([binary, "-c", self.config_path], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not clamd_ping(socket.AF_INET, ("127.0.0.1", self.port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"clamd did not start:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-5000:]
        except OSError:
            return ""


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    """A clamd for the test module."""
    process = ClamdProcess(tmp_path_factory.mktemp("clamd")).start()
    yield process
    process.stop()

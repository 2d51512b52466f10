"""A real coturn (Debian's ``coturn``, ``/usr/bin/turnserver``) for the call tests, on 127.0.0.1.

It runs in the foreground with no configuration file, either with coturn's TURN REST scheme
(``use-auth-secret``: the time-limited credentials a homeserver mints from ``turn_shared_secret``) or with
one static long-term user (Synapse's ``turn_username``/``turn_password``). Relay ports come from a small
range; loopback peers are allowed (coturn 4.6 refuses them unless both --allow-loopback-peers and
--allowed-peer-ip say so), as both callers run on this machine.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import time

from tests.integration.harness import free_port

START_TIMEOUT_S = 15
RELAY_PORTS = 40
REALM = "test.local"


def coturn_available() -> bool:
    return shutil.which("turnserver") is not None


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Coturn:
    """One turnserver process we started (stopped by its PID)."""

    def __init__(self, base_dir: str, *, secret: str | None = None, static: tuple[str, str] | None = None):
        assert (secret is None) != (static is None), "either use-auth-secret or one static user"
        self.dir = str(base_dir)
        self.secret, self.static = secret, static
        self.log_path = os.path.join(self.dir, "turnserver.log")
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def uri(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def _args(self, port: int, min_port: int) -> list[str]:
        auth = ([f"--use-auth-secret", f"--static-auth-secret={self.secret}"] if self.secret is not None
                else ["--lt-cred-mech", f"--user={self.static[0]}:{self.static[1]}"])
        return ["turnserver", "-n", "-v", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
                f"--listening-port={port}", f"--min-port={min_port}", f"--max-port={min_port + RELAY_PORTS - 1}",
                f"--realm={REALM}", *auth, "--no-tls", "--no-dtls", "--allowed-peer-ip=127.0.0.1", "--allow-loopback-peers", "--no-cli",
                "--fingerprint", f"--log-file={self.log_path}", "--simple-log", "--no-stdout-log",
                f"--pidfile={os.path.join(self.dir, 'turnserver.pid')}", f"--db={os.path.join(self.dir, 'turndb')}"]

    def start(self) -> "Coturn":
        for _ in range(5):
            port = free_port()
            if not _udp_free(port):
                continue
            min_port = random.randrange(20000, 30000 - RELAY_PORTS)
            if os.path.exists(self.log_path):
                os.remove(self.log_path)
            self.process = subprocess.Popen(self._args(port, min_port), cwd=self.dir, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            self.port = port
            if self._wait_listening():
                return self
            self.stop()
        raise AssertionError(f"turnserver did not start:\n{self.log()}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        ready = f"UDP listener opened on: 127.0.0.1:{self.port}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if ready in self.log():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        proc, self.process = self.process, None
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def allocations(self, username: str, outcome: str = "success") -> int:
        """How many ALLOCATE requests of ``username`` coturn answered with ``outcome`` (e.g. ``error 401``)."""
        pattern = re.compile(rf"user <{re.escape(username)}>: incoming packet ALLOCATE processed, {outcome}")
        return len(pattern.findall(self.log()))

    def relayed_bytes(self, username: str, deadline_s: float = 10) -> int:
        """Bytes coturn relayed from peers to ``username``'s closed allocations (logged when each closes)."""
        pattern = re.compile(rf"peer usage: realm=<[^>]*>, username=<{re.escape(username)}>, rp=\d+, rb=(\d+)")
        end = time.monotonic() + deadline_s
        while True:
            total = sum(int(n) for n in pattern.findall(self.log()))
            if total or time.monotonic() > end:
                return total
            time.sleep(0.05)

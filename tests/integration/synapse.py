"""A real Synapse (installed from PyPI into its own venv) federating with the test servers over TLS.

Synapse is named ``localhost:<tls port>``, trusts the tests' CA and may reach 127.0.0.1; its
client API answers on a plain HTTP port so the tests drive it exactly like Hexagone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import yaml

from tests.bench.servers import synapse_python
from tests.integration.fedtls import CertificateAuthority
from tests.integration.harness import PASSWORD, HttpClient, ServerProcess, User, free_port, unique

START_TIMEOUT_S = 90.0
UNTHROTTLED = {"per_second": 10000, "burst_count": 100000}


class _PortTaken(Exception):
    """Synapse could not listen on a port chosen for it."""


class SynapseProcess:
    """One Synapse home directory and the process serving it; quacks like harness.ServerProcess."""

    def __init__(self, base_dir: str, ca: CertificateAuthority, *, presence: bool = False,
                 extra: dict | None = None):
        self.process: subprocess.Popen | None = None
        self._settings = (ca, presence, extra or {})
        self._prepare(base_dir)

    def _prepare(self, base_dir: str) -> None:
        """A home directory configured for two ports free now (named by the TLS one)."""
        os.makedirs(base_dir, exist_ok=True)
        self.dir = base_dir
        self.port = free_port()
        self.tls_port = free_port(self.port)
        self.name = f"localhost:{self.tls_port}"
        self.config_path = os.path.join(base_dir, "homeserver.yaml")
        self.log_path = os.path.join(base_dir, "synapse.log")
        self._configure(*self._settings)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _configure(self, ca: CertificateAuthority, presence: bool, extra: dict) -> None:
        """Synapse's generated config with our listeners, CA, test limits, then ``extra`` keys on top."""
        python = synapse_python()
        subprocess.run([python, "-m", "synapse.app.homeserver", "--generate-config", "--server-name", self.name,
                        "--config-path", self.config_path, "--data-directory", self.dir, "--report-stats=no"],
                       cwd=self.dir, check=True, capture_output=True)
        cert, key = ca.issue(f"synapse{self.tls_port}")
        with open(self.config_path) as f:
            config = yaml.safe_load(f)
        config.update(
            listeners=[
                {"port": self.tls_port, "tls": True, "type": "http", "bind_addresses": ["127.0.0.1"],
                 "resources": [{"names": ["federation"], "compress": False}]},
                {"port": self.port, "tls": False, "type": "http", "x_forwarded": False,
                 "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"], "compress": False}]}],
            tls_certificate_path=cert, tls_private_key_path=key, federation_custom_ca_list=[ca.cert_path],
            ip_range_whitelist=["127.0.0.0/8"], trusted_key_servers=[], suppress_key_server_warning=True,
            enable_registration=True, enable_registration_without_verification=True, bcrypt_rounds=4,
            database={"name": "sqlite3", "args": {"database": os.path.join(self.dir, "homeserver.db")}},
            rc_message=UNTHROTTLED, rc_registration=UNTHROTTLED, rc_joins={"local": UNTHROTTLED,
                                                                           "remote": UNTHROTTLED},
            rc_login={"address": UNTHROTTLED, "account": UNTHROTTLED, "failed_attempts": UNTHROTTLED},
            rc_invites={"per_room": UNTHROTTLED, "per_user": UNTHROTTLED, "per_issuer": UNTHROTTLED},
            rc_federation={"window_size": 1000, "sleep_limit": 10000, "reject_limit": 10000, "concurrent": 100},
            federation_rr_transactions_per_room_per_second=10000, presence={"enabled": presence},
            allow_public_rooms_over_federation=True,
            federation={"destination_min_retry_interval": 500, "destination_max_retry_interval": 2000,
                        "destination_retry_multiplier": 2}, room_list_publication_rules=[{"action": "allow"}])
        config.update(extra)
        config.pop("log_config", None)
        with open(self.config_path, "w") as f:
            yaml.safe_dump(config, f)

    def start(self) -> "SynapseProcess":
        """Start Synapse and wait until it answers. Between choosing its ports and binding them (seconds: it
        loads first), another process may take one, if only as the local port of a connection: it then starts
        again, once, in a new home directory with new ports."""
        try:
            return self._start()
        except _PortTaken:
            self._prepare(os.path.join(self.dir, "ports-again"))
            return self._start()

    def _start(self) -> "SynapseProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [synapse_python(), "-m", "synapse.app.homeserver", "--config-path", self.config_path],
                cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log()
                self.process = None
                if "Address already in use" in log:
                    raise _PortTaken()
                raise AssertionError(f"Synapse exited:\n{log}")
            try:
                # Synapse itself (its Server header): another test's server may have taken the port first
                status, headers, _ = self.client().exchange("GET", "/_matrix/client/versions", timeout=2)
                if status == 200 and (headers.get("Server") or "").startswith("Synapse"):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"Synapse did not answer within {START_TIMEOUT_S}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None:
            return
        proc, self.process = self.process, None
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log(self, tail: int = 200) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-tail:])
        except OSError:
            return "(no Synapse log)"

    def client(self) -> HttpClient:
        return HttpClient(self.base_url)

    def request(self, method, path, body=None, token=None, **kwargs):
        return self.client().request(method, path, body, token, **kwargs)

    def register(self, localpart: str | None = None) -> User:
        body = {"username": localpart or unique(), "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        status, resp = self.request("POST", "/register", body)
        if status == 401:  # Synapse wants the UIA session from the first round
            body["auth"]["session"] = resp["session"]
            status, resp = self.request("POST", "/register", body)
        assert status == 200, (status, resp)
        return User(self, resp["user_id"], resp["access_token"], resp["device_id"], PASSWORD)

    login = ServerProcess.login  # the same m.login.password request


class SynapsePeer:
    """The fixture value: the process, with the ``name`` attribute the federation tests use."""

    def __init__(self, process: SynapseProcess):
        self.process = process
        self.name = process.name


@pytest.fixture(scope="module")
def synapse(tmp_path_factory, ca, request):
    process = SynapseProcess(str(tmp_path_factory.mktemp("synapse")), ca).start()
    yield SynapsePeer(process)
    if request.session.testsfailed:
        print(f"---- Synapse log ({process.dir}) ----\n{process.log()}")
    process.stop()

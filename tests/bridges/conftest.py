"""Fixtures for the bridge tests: a real homeserver with the bridge's registration, the stand-in Olvid
daemon, and the bridge itself as a separate process (``hexagone bridge olvid run``).

Database-independent: the bridge keeps its own SQLite store; the lead runs these once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from tests.bridges.olvid_standin import StandinDaemon
from tests.integration.federation import ca  # noqa: F401 (fixture)
from tests.integration.harness import LIVE_SERVERS, ServerProcess, free_port
from tests.integration.synapse import SynapseProcess

pytest.importorskip("olvid", reason="the olvid extra is not installed: pip install '.[olvid]'")

HEXAGONE = os.path.join(os.path.dirname(sys.executable), "hexagone")
CLIENT_KEY = "standin-client-key"
START_TIMEOUT_S = 60.0
MATRIX_USER = "alice"  # invited to every portal


class BridgeProcess:
    """``hexagone bridge olvid init`` then ``run``, as an admin would."""

    def __init__(self, base_dir: str, homeserver_url: str, domain: str, daemon: StandinDaemon, **bridge):
        self.dir = base_dir
        self.port = free_port()
        self.log_path = os.path.join(base_dir, "bridge.log")
        self.process: subprocess.Popen | None = None
        subprocess.run([HEXAGONE, "bridge", "olvid", "init", "--homeserver", homeserver_url, "--domain", domain,
                        "--dir", base_dir, "--port", str(self.port)], check=True, capture_output=True)
        self.config_path = os.path.join(base_dir, "config.yaml")
        self.registration_path = os.path.join(base_dir, "registration.yaml")
        with open(self.config_path) as f:
            self.config = yaml.safe_load(f)
        self.config["olvid"].update(daemon_url=daemon.url, client_key=CLIENT_KEY, resync_interval_s=600)
        self.config["bridge"].update(bridge)
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hs_token(self) -> str:
        return self.config["appservice"]["hs_token"]

    def start(self) -> "BridgeProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([HEXAGONE, "bridge", "olvid", "run", "--config", self.config_path],
                                            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        LIVE_SERVERS.append(self)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the bridge exited with {self.process.returncode}:\n{self.log()}")
            if self.status("/_bridge/ready")[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"the bridge was not ready within {START_TIMEOUT_S}s:\n{self.log()}")

    def status(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=2) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    stop = ServerProcess.stop  # SIGTERM, and a clean exit within the harness's limit
    kill = ServerProcess.kill
    log = ServerProcess.log


class OlvidWorld:
    """One module's homeserver, stand-in daemon and bridge."""

    def __init__(self, homeserver, daemon: StandinDaemon, bridge: BridgeProcess):
        self.homeserver, self.daemon, self.bridge = homeserver, daemon, bridge


def synapse_with(registration_path_for, base_dir: str, ca) -> SynapseProcess:
    """A Synapse that lists the bridge's registration (the file exists before Synapse starts)."""
    synapse = SynapseProcess(base_dir, ca)
    with open(synapse.config_path) as f:
        config = yaml.safe_load(f)
    config["app_service_config_files"] = [registration_path_for(synapse)]
    config["max_upload_size"] = "64M"
    with open(synapse.config_path, "w") as f:
        yaml.safe_dump(config, f)
    return synapse


@pytest.fixture(scope="module")
def olvid_world(tmp_path_factory, ca, request):  # noqa: F811
    daemon = StandinDaemon(free_port(), CLIENT_KEY).start()
    holder: dict = {}

    def registration(synapse: SynapseProcess) -> str:
        holder["bridge"] = BridgeProcess(str(tmp_path_factory.mktemp("bridge")), synapse.base_url, synapse.name,
                                         daemon, permissions={synapse.name: "admin"},
                                         max_attachment_size=21 * 1000 * 1000,
                                         portal_invites=[f"@{MATRIX_USER}:{synapse.name}"])
        return holder["bridge"].registration_path

    synapse = synapse_with(registration, str(tmp_path_factory.mktemp("synapse")), ca).start()
    bridge = holder["bridge"].start()
    world = OlvidWorld(synapse, daemon, bridge)
    try:
        yield world
    finally:
        if request.session.testsfailed:
            print(f"---- bridge log ----\n{bridge.log()}\n---- Synapse log ----\n{synapse.log(60)}")
        bridge.stop()
        synapse.stop()
        daemon.stop()

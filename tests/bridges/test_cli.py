"""``hexagone bridge NAME init|run``: the files it writes, and the one-line errors it gives."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import yaml

from tests.bridges.conftest import HEXAGONE


def hexagone(*args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([HEXAGONE, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_init_writes_the_config_and_the_registration_and_never_overwrites(tmp_path):
    args = ("bridge", "olvid", "init", "--homeserver", "http://127.0.0.1:8008", "--domain", "example.org",
            "--dir", str(tmp_path), "--port", "29399")
    r = hexagone(*args, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    registration = yaml.safe_load((tmp_path / "registration.yaml").read_text())
    assert registration["url"] == "http://127.0.0.1:29399" and registration["sender_localpart"] == "olvidbot"
    assert registration["as_token"] == config["appservice"]["as_token"] != config["appservice"]["hs_token"]
    assert set(config["olvid"]) >= {"daemon_url", "client_key", "tls"}
    for name in ("config.yaml", "registration.yaml"):  # tokens inside: owner only
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    again = hexagone(*args, cwd=str(tmp_path))
    assert again.returncode == 1 and "Refusing to overwrite" in again.stderr


def test_a_wrong_config_is_one_line_naming_the_key(tmp_path):
    hexagone("bridge", "olvid", "init", "--homeserver", "http://127.0.0.1:8008", "--domain", "example.org",
             "--dir", str(tmp_path), cwd=str(tmp_path))
    path = tmp_path / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["bridge"]["permissions"] = {"example.org": "superuser"}
    path.write_text(yaml.safe_dump(config))
    r = hexagone("bridge", "olvid", "run", "--config", str(path), cwd=str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "Configuration error: bridge.permissions.example.org: 'superuser' is not one of ('relay', 'user', 'admin')"]


@pytest.mark.parametrize("missing", ["olvid", "aiohttp"])
def test_a_missing_optional_dependency_is_one_line_saying_what_to_install(tmp_path, missing):
    hexagone("bridge", "olvid", "init", "--homeserver", "http://127.0.0.1:8008", "--domain", "example.org",
             "--dir", str(tmp_path), cwd=str(tmp_path))
    without = (f"import sys; sys.modules[{missing!r}] = None; from homeserver.cli import main; "
               f"sys.exit(main(['bridge', 'olvid', 'run', '--config', {str(tmp_path / 'config.yaml')!r}]))")
    r = subprocess.run([sys.executable, "-c", without], cwd=str(tmp_path), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"The olvid bridge needs a missing module ({missing}): pip install 'hexagone[olvid]'"]

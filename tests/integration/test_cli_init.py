"""The real `hexagone` command line, run as a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from signedjson.key import get_verify_key, read_signing_keys

from homeserver.config import load_config, read_signing_key

pytestmark = pytest.mark.engine_independent  # what is tested happens before any database is opened

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hexagone(*args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "homeserver.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )


def test_init_writes_config_and_key(tmp_path):
    target = tmp_path / "srv" / "hexagone"  # does not exist yet
    r = hexagone("init", "--server-name", "example.org", "--dir", str(target),
                 "--port", "8118", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    config_path = target / "homeserver.yaml"
    key_path = target / "signing.key"
    assert str(config_path) in r.stdout and str(key_path) in r.stdout
    assert f"hexagone run --config {config_path}" in r.stdout

    # the key file is in Synapse's format and loads with signedjson
    key_text = key_path.read_text()
    assert re.fullmatch(r"ed25519 a_[A-Za-z0-9]{4} [A-Za-z0-9+/]{43}\n", key_text), key_text
    with open(key_path) as f:
        (key,) = read_signing_keys(f)
    assert key.alg == "ed25519"
    assert get_verify_key(key).encode() == get_verify_key(read_signing_key(str(key_path))).encode()
    assert os.stat(key_path).st_mode & 0o077 == 0

    # the config parses and points at what init wrote
    config = load_config(str(config_path))
    assert config.server_name == "example.org"
    assert config.listeners[0].port == 8118
    assert config.signing_key_path == str(key_path)
    assert config.database.engine == "sqlite"
    assert config.database.sqlite_path == str(target / "homeserver.db")
    assert len(config.registration_shared_secret) >= 32

    # a second init refuses and leaves both files alone
    config_text = config_path.read_text()
    again = hexagone("init", "--server-name", "example.org", "--dir", str(target), cwd=tmp_path)
    assert again.returncode == 1
    assert "signing.key" in again.stderr
    assert key_path.read_text() == key_text
    assert config_path.read_text() == config_text


def test_init_refuses_existing_config(tmp_path):
    (tmp_path / "homeserver.yaml").write_text("server_name: mine.example\n")
    r = hexagone("init", "--server-name", "example.org", "--dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1
    assert "homeserver.yaml" in r.stderr
    assert (tmp_path / "homeserver.yaml").read_text() == "server_name: mine.example\n"
    assert not (tmp_path / "signing.key").exists()


def test_init_with_postgres_url(tmp_path):
    r = hexagone("init", "--server-name", "example.org", "--dir", str(tmp_path),
                 "--database", "postgresql://hx:pw@db.internal:5432/hexagone", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    raw = yaml.safe_load((tmp_path / "homeserver.yaml").read_text())
    assert raw["database"]["name"] == "psycopg2"
    assert raw["database"]["args"]["dbname"] == "hexagone"
    assert load_config(str(tmp_path / "homeserver.yaml")).database.engine == "postgresql"


def test_init_refuses_bad_server_name(tmp_path):
    r = hexagone("init", "--server-name", "https://example.org", "--dir", str(tmp_path / "x"),
                 cwd=tmp_path)
    assert r.returncode == 1
    assert "server_name" in r.stderr
    assert not (tmp_path / "x" / "signing.key").exists()


def test_run_with_broken_config_names_the_key(tmp_path):
    r = hexagone("init", "--server-name", "example.org", "--dir", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(config_path.read_text().replace("- port: 8008", "- port: 70000"))
    r = hexagone("run", "--config", str(config_path), cwd=tmp_path)
    assert r.returncode == 1
    assert "Configuration error: listeners[0].port: must be an integer between 1 and 65535" in r.stderr


def test_run_with_missing_config(tmp_path):
    r = hexagone("run", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("Configuration error: config file:")


def test_register_user_with_broken_config(tmp_path):
    (tmp_path / "hs.yaml").write_text("server_name: ''\n")
    r = hexagone("register-user", "--config", str(tmp_path / "hs.yaml"),
                 "--user", "alice", "--password", "pw", cwd=tmp_path)
    assert r.returncode == 1
    assert "Configuration error: server_name:" in r.stderr


def test_no_subcommand_is_a_usage_error(tmp_path):
    r = hexagone(cwd=tmp_path)
    assert r.returncode == 2
    assert "usage" in r.stderr.lower()

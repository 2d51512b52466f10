"""scripts/spec_coverage.py runs against the real route table and the spec's OpenAPI files."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.fuzz.spec import spec_data_dir
from tests.integration.harness import REPO_ROOT

pytestmark = pytest.mark.engine_independent  # the script's throwaway server is always on SQLite

SCRIPT = os.path.join(REPO_ROOT, "scripts", "spec_coverage.py")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(spec_data_dir() is None,
                    reason="the Matrix spec checkout (<repository>/../shared/matrix-spec/data) is absent")
def test_spec_coverage_report():
    r = run()
    assert r.returncode == 0, r.stderr
    summary = re.search(r"^implemented (\d+) of (\d+) operations$", r.stdout, re.MULTILINE)
    assert summary, r.stdout[-2000:]
    implemented, total = int(summary.group(1)), int(summary.group(2))
    assert 0 < implemented <= total and total > 100
    lines = r.stdout.splitlines()
    for served in ("POST /_matrix/client/v3/createRoom", "GET /_matrix/client/v3/sync",
                   "GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}",
                   "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"):
        assert f"  [x] {served}" in lines, served
    assert re.search(r"^create_room\.yaml: 1/1$", r.stdout, re.MULTILINE)

    missing = run("--missing-only")
    assert missing.returncode == 0 and "[x]" not in missing.stdout
    assert missing.stdout.splitlines()[-1] == summary.group(0)
    for served in ("POST /_matrix/media/v3/upload", "GET /_matrix/client/v1/media/download/{serverName}/{mediaId}"):
        assert f"  [x] {served}" in lines, served

    federation = run("--api", "server-server")
    assert federation.returncode == 0, federation.stderr
    assert "  [x] GET /_matrix/federation/v1/media/download/{mediaId}" in federation.stdout.splitlines()


def test_spec_coverage_bad_spec_dir(tmp_path):
    r = run("--spec-dir", str(tmp_path / "nowhere"))
    assert r.returncode != 0 and "spec directory not found" in r.stderr

"""The conformance kits of the assumed Oodrive and Tixeo contracts, run green against each stand-in
(``hexagone bridge NAME standin``) by ``hexagone bridge NAME conformance``, as an admin would run them
against a real server; and the kit fails a server that breaks the contract."""

from __future__ import annotations

import subprocess

import pytest

from tests.bridges.conftest import HEXAGONE, StandinProcess


@pytest.fixture(params=["oodrive", "tixeo"])
def standin(request, tmp_path):
    process = StandinProcess(request.param, str(tmp_path)).start()
    yield process
    process.stop()


def conformance(standin, secret: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([HEXAGONE, "bridge", standin.name, "conformance", "--url", standin.url, "--client-id",
                           standin.client_id, "--client-secret", secret or standin.client_secret],
                          capture_output=True, text=True, timeout=120)


def test_the_kit_runs_green_against_the_standin(standin):
    result = conformance(standin)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and result.stdout.count("ok ") >= 5


def test_the_kit_reports_what_fails(standin):
    result = conformance(standin, secret="wrong")
    assert result.returncode == 1 and "FAIL" in result.stdout and "invalid_client" in result.stdout

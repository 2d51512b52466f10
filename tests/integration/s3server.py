"""A real S3-compatible server for the tests: moto's standalone server (``moto[server]`` from PyPI) in its own
process on 127.0.0.1, started here and killed by PID. ``bucket()`` creates a fresh bucket and returns the
``config:`` mapping of a ``media_storage_providers`` entry pointing at it."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import boto3
import pytest

from tests.integration.harness import free_port, unique
from tests.integration.reactor_thread import wait_for

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class S3Server:
    def __init__(self, log_path: str):
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or _answers(self.endpoint_url + "/moto-api/"),
                 "moto's S3 server to answer", 60)
        assert self.proc.poll() is None, f"moto's server exited with {self.proc.returncode} (log: {log_path})"

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def bucket(self, **extra) -> dict:
        name = unique("bucket").lower().replace("_", "-")
        self.client().create_bucket(Bucket=name)
        return {"bucket": name, "endpoint_url": self.endpoint_url, "region_name": REGION,
                "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, **extra}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._log.close()


def s3_provider(config: dict) -> dict:
    """A ``media_storage_providers`` entry in the synapse-s3-storage-provider shape: every file, synchronously."""
    return {"module": "s3_storage_provider.S3StorageProviderBackend", "store_local": True, "store_remote": True,
            "store_synchronous": True, "config": config}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """An S3 server for the test module."""
    server = S3Server(str(tmp_path_factory.mktemp("s3") / "moto.log"))
    yield server
    server.stop()

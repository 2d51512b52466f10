"""media_repo/s3.py against a real S3 server (moto's, s3server.py): round trips small and multipart,
absent objects, delete, prefix and storage class, a missing bucket, and the memory a big transfer takes."""

from __future__ import annotations

import hashlib
import os
import resource

import pytest

from homeserver.config.media_backends import check_s3_config
from media_repo.s3 import PART_SIZE, S3Error, S3StorageProvider
from tests.integration.reactor_thread import on_reactor, reactor, run_in_thread  # noqa: F401 (fixtures)
from tests.integration.s3server import s3  # noqa: F401 (fixture)

BIG_MB = int(os.environ.get("HEXAGONE_TEST_S3_BIG_MB", "200"))


def write_random(path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1024 * 1024))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def test_round_trip_and_delete(reactor, s3, run_in_thread, tmp_path):
    provider = S3StorageProvider(s3.bucket(), run_in_thread)
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.write_bytes(b"hello media")
    on_reactor(reactor, lambda: provider.store_file("local_content/ab/cd/efgh", str(src)))
    assert on_reactor(reactor, lambda: provider.fetch_file("local_content/ab/cd/efgh", str(dest)))
    assert dest.read_bytes() == b"hello media"
    on_reactor(reactor, lambda: provider.delete("local_content/ab/cd/efgh"))
    os.unlink(dest)
    assert not on_reactor(reactor, lambda: provider.fetch_file("local_content/ab/cd/efgh", str(dest)))
    assert not dest.exists()
    on_reactor(reactor, lambda: provider.delete("local_content/ab/cd/efgh"))  # absent: no error


def test_multipart_prefix_and_storage_class(reactor, s3, run_in_thread, tmp_path):
    config = s3.bucket(prefix="media/", storage_class="STANDARD_IA")
    provider = S3StorageProvider(config, run_in_thread)
    src, dest = tmp_path / "src", tmp_path / "dest"
    digest = write_random(src, 2 * PART_SIZE + 12345)
    on_reactor(reactor, lambda: provider.store_file("k", str(src)))
    head = s3.client().head_object(Bucket=config["bucket"], Key="media/k")
    assert head["ContentLength"] == 2 * PART_SIZE + 12345
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert head["StorageClass"] == "STANDARD_IA"
    assert on_reactor(reactor, lambda: provider.fetch_file("k", str(dest)))
    assert sha256_of(dest) == digest


def test_missing_bucket(reactor, s3, run_in_thread, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x")
    missing = S3StorageProvider({**s3.bucket(), "bucket": "no-such-bucket"}, run_in_thread)
    with pytest.raises(S3Error, match="no-such-bucket/k"):
        on_reactor(reactor, lambda: missing.store_file("k", str(src)))


def test_big_transfer_memory(reactor, s3, run_in_thread, tmp_path):
    """A BIG_MB file up and down: this process's peak RSS grows by far less than the file (parts of 8 MiB)."""
    provider = S3StorageProvider(s3.bucket(), run_in_thread)
    src, dest = tmp_path / "src", tmp_path / "dest"
    digest = write_random(src, BIG_MB * 1024 * 1024)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    on_reactor(reactor, lambda: provider.store_file("big", str(src)))
    assert on_reactor(reactor, lambda: provider.fetch_file("big", str(dest)))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert sha256_of(dest) == digest
    assert grown_mb < 64, f"peak RSS grew by {grown_mb:.0f} MB for a {BIG_MB} MB transfer"


@pytest.mark.parametrize("config,problem", [
    ({}, "config.bucket: must be"),
    ({"bucket": "b", "access_key_id": "x"}, "set both access_key_id and secret_access_key"),
    ({"bucket": "b", "endpoint_url": 3}, "config.endpoint_url: must be a string"),
    ("b", "must be a mapping"),
])
def test_config_problems(config, problem):
    assert any(problem in p for p in check_s3_config(config, "config"))

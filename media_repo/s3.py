"""S3 as a media storage provider (boto3), configured like Synapse's ``synapse-s3-storage-provider``.

What it guarantees: bytes move between a local file and an S3 object in parts (multipart upload above
:data:`PART_SIZE`, ranged reads on download), so a file of any size holds at most about one part in
memory; a download lands in ``dest_path`` only complete (s3transfer writes a temporary file beside it
and renames it). Every blocking boto3 call runs through the ``run_in_thread`` callable given by the
composition root, never on the reactor thread.

The ``config`` mapping is the ``config:`` of a ``media_storage_providers`` entry: ``bucket`` (required),
``endpoint_url``, ``region_name``, ``access_key_id``, ``secret_access_key``, ``prefix`` (prepended to
every key) and ``storage_class``, as in that module. Which media go to S3 (``store_local``,
``store_remote``, ``store_synchronous``) is decided by the media service, not here.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import boto3
from boto3.s3.transfer import TransferConfig
from boto3.exceptions import Boto3Error
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from homeserver.config.media_backends import check_s3_config

PART_SIZE = 8 * 1024 * 1024
_ABSENT = ("404", "NoSuchKey", "NotFound")


class S3Error(Exception):
    """S3 refused or failed a transfer (the message names the bucket and key, never a secret)."""


class S3ObjectAbsent(S3Error):
    """The bucket has no object of that key."""


class S3StorageProvider:
    """``store_file`` / ``fetch_file`` / ``delete`` of media files as objects of one bucket."""

    def __init__(self, config: dict, run_in_thread: Callable[..., Awaitable[Any]]):
        problems = check_s3_config(config, "config")
        if problems:
            raise ValueError("; ".join(problems))
        self._bucket = config["bucket"]
        self._prefix = config.get("prefix") or ""
        self._extra = {"StorageClass": config["storage_class"]} if config.get("storage_class") else {}
        self._run = run_in_thread
        self._transfer = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE,
                                        use_threads=False)
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=config.get("endpoint_url"), region_name=config.get("region_name"),
            aws_access_key_id=config.get("access_key_id"), aws_secret_access_key=config.get("secret_access_key"),
            config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60))

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def store_file(self, key: str, path: str) -> None:
        """Upload the file at ``path`` as ``key`` (multipart, streamed from the file)."""
        await self._call("store", key, self._client.upload_file, path, self._bucket, self._key(key),
                         ExtraArgs=self._extra, Config=self._transfer)

    async def fetch_file(self, key: str, dest_path: str) -> bool:
        """Download ``key`` into ``dest_path``; False when the bucket has no such object."""
        try:
            await self._call("fetch", key, self._client.download_file, self._bucket, self._key(key), dest_path,
                             Config=self._transfer)
        except S3ObjectAbsent:
            return False
        return True

    async def delete(self, key: str) -> None:
        """Delete ``key`` (deleting an absent object is not an error, as in S3)."""
        await self._call("delete", key, self._client.delete_object, Bucket=self._bucket, Key=self._key(key))

    async def _call(self, what: str, key: str, fn: Callable, *args, **kwargs) -> Any:
        def call():
            try:
                return fn(*args, **kwargs)
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                error = S3ObjectAbsent if code in _ABSENT else S3Error
                raise error(f"S3 {what} of {self._bucket}/{self._key(key)} failed: {code or e}") from None
            except (BotoCoreError, Boto3Error) as e:
                raise S3Error(f"S3 {what} of {self._bucket}/{self._key(key)} failed: {e}") from None
        return await self._run(call)

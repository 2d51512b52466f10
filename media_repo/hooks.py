"""What the media repository expects of a content scanner and of a storage provider (MEDIA-CONTRACT.md).

The implementations (``media_repo/scanner.py``: clamd; ``media_repo/s3.py``: S3) are built by the composition
root and passed to :class:`~media_repo.service.MediaRepository`; these Protocols are all it knows of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

RunInThread = Callable[..., Awaitable[Any]]  # run_in_thread(fn, *args): fn(*args) on the media thread pool


class Verdict(Protocol):
    clean: bool
    signature: str | None


class Scanner(Protocol):
    """Scans a complete file on disk; raises (``ScannerUnavailable``) when it cannot give a verdict."""

    async def scan_file(self, path: str) -> Verdict: ...


class StorageProvider(Protocol):
    """An extra backend behind the filesystem store, keyed by the file's path relative to ``media_store_path``."""

    async def store_file(self, key: str, path: str) -> None: ...

    async def fetch_file(self, key: str, dest_path: str) -> bool: ...

    async def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class ProviderEntry:
    """One ``media_storage_providers`` entry: the provider and Synapse's options of the entry."""

    provider: StorageProvider
    store_local: bool = True
    store_remote: bool = False
    store_synchronous: bool = True

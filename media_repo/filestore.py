"""The filesystem media store under ``media_store_path``: always the primary copy, and the cache of remote media.

What it guarantees:
- A file is servable only once complete: bytes arrive in ``<media_store_path>/tmp/`` (a :class:`Spool`, hashed
  and counted on the way), and are moved to their sharded path with ``os.replace`` (atomic on one filesystem)
  once all of them are written; the caller commits the file's row only after that. A crash of the process
  leaves at most a file in ``tmp/``, which is never served and is swept at start.
- Durability as Synapse's: the file is not ``fsync``-ed before the upload is answered (the kernel writes it
  back within its dirty-page expiry, 30 s by default); a power loss in that window can lose the bytes of an
  answered upload, as with Synapse. An ``fsync`` per upload cost more than the rest of the upload together
  on a shared disk (it waits for every dirty page of the filesystem's journal transaction).
- Paths are built only from validated media IDs and server names (no separator, no dot-name), so no request
  can name a file outside the store.
- Layout (Synapse's, so an admin finds their way): ``local_content/ab/cd/<rest>``,
  ``remote_content/<server>/ab/cd/<rest>``, thumbnails beside them under ``local_thumbnails`` and
  ``remote_thumbnail``, one file per ``<width>-<height>-<type>-<subtype>-<method>``.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import shutil
import tempfile
from typing import Any, BinaryIO, Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from media_repo.hooks import RunInThread

BACKLOG_HIGH = 16 * 1024 * 1024  # bytes received but not yet hashed and written past which the sender is paused
BACKLOG_LOW = 4 * 1024 * 1024  # ... and under which it is resumed
BATCH = 4 * 1024 * 1024  # bytes a worker thread takes at once before handing back to the reactor

_MEDIA_ID = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9\-\[\]:][A-Za-z0-9.\-\[\]:]{0,254}$")


def valid_media_id(media_id: str) -> bool:
    """Spec "Matrix Content (mxc://) URIs": a media ID is ``[A-Za-z0-9_-]+``."""
    return bool(_MEDIA_ID.match(media_id))


def valid_server_name(server_name: str) -> bool:
    """A server name usable as a directory name (host, IP literal, port; never ``.`` or ``..``)."""
    return bool(_SERVER_NAME.match(server_name))


def _shard(media_id: str) -> tuple[str, str, str]:
    return media_id[0:2], media_id[2:4], media_id[4:] or "_"


def thumbnail_name(width: int, height: int, media_type: str, method: str) -> str:
    top, _, sub = media_type.partition("/")
    return f"{width}-{height}-{top}-{sub}-{method}"


class _Lane:
    """The chunks of a spool handed, in order, to ``consume`` on worker threads: one batch of at most ``BATCH``
    bytes at a time; ``on_batch_done(result)`` is called on the reactor after each batch."""

    def __init__(self, run_in_thread: RunInThread, consume: Callable[[bytes], None],
                 stopped: Callable[[], bool], on_batch_done: Callable[[Any], None]):
        self._run_in_thread, self._consume, self._stopped, self._on_batch_done = (
            run_in_thread, consume, stopped, on_batch_done)
        self.pending: collections.deque[bytes] = collections.deque()  # appended by the reactor, taken by a thread
        self.consumed = 0  # bytes done (counted by the worker thread only)
        self.busy = False

    def push(self, data: bytes) -> None:
        self.pending.append(data)
        if not self.busy:
            self._start()

    def _start(self) -> None:
        self.busy = True
        defer.ensureDeferred(self._run_in_thread(self._batch)).addBoth(self._done)

    def _batch(self) -> None:
        start = self.consumed
        while self.pending and self.consumed - start < BATCH and not self._stopped():
            data = self.pending.popleft()
            self._consume(data)
            self.consumed += len(data)

    def _done(self, result: Any) -> None:
        self.busy = False
        if self._stopped():
            self.pending.clear()
        elif self.pending:
            self._start()
        self._on_batch_done(result)


class Spool:
    """A file being received under ``tmp/``: written as bytes arrive, hashed (sha256) and counted on the way.

    Given ``run_in_thread`` and the ``producer`` of the bytes (an upload's connection), the hashing and the
    writes run on two worker threads while the reactor goes on reading the socket (hashlib and file writes
    release the GIL, so the three proceed in parallel). The bytes received but not yet hashed and written are
    bounded: past ``BACKLOG_HIGH`` the producer is paused, and resumed under ``BACKLOG_LOW``. Without them
    (remote media, previews) the bytes are hashed and written as they arrive.

    ``await complete()`` before reading ``sha256``, ``error`` or the file. ``keep(dest)`` moves it into place
    atomically; ``discard()`` removes it unless kept (safe to call twice, and while a thread still writes).
    Twisted writes a request body to it through ``write``; reading it back goes through ``path``."""

    def __init__(self, directory: str, run_in_thread: RunInThread | None = None, producer: Any = None):
        fd, self.path = tempfile.mkstemp(dir=directory, prefix="in-")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.done = False  # kept or discarded
        self.error: OSError | None = None  # why the bytes could not be written
        self._producer = producer
        self._lanes: tuple[_Lane, ...] = ()
        if run_in_thread is not None and producer is not None:
            self._lanes = (_Lane(run_in_thread, self._hash.update, self._stopped, self._batch_done),
                           _Lane(run_in_thread, self._write_file, self._stopped, self._batch_done))
        self._queued = 0  # bytes handed to the lanes
        self._paused = False
        self._waiters: list[defer.Deferred] = []

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._stopped():
            return
        if not self._lanes:
            self._hash.update(data)
            self._write_file(data)
            if self.error is not None:
                self.discard()
            return
        self._queued += len(data)
        for lane in self._lanes:
            lane.push(data)
        if not self._paused and self._queued - self._settled() >= BACKLOG_HIGH:
            self._paused = True
            self._producer.pauseProducing()

    def _write_file(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as e:  # e.g. a full disk: the rest is counted and dropped, the upload refused
            self.error = e

    def _stopped(self) -> bool:
        return self.done or self.error is not None

    def _settled(self) -> int:
        return min(lane.consumed for lane in self._lanes)

    def _batch_done(self, result: Any) -> None:
        if isinstance(result, Failure):
            self.error = OSError(f"could not receive the file: {result.getErrorMessage()}")
        stopped = self._stopped()
        if self._paused and (stopped or self._queued - self._settled() < BACKLOG_LOW):
            self._paused = False  # a stopped spool lets the rest of the body be read (and dropped)
            self._producer.resumeProducing()
        if any(lane.busy for lane in self._lanes):
            return
        if stopped:
            self.discard()
            self._close()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def complete(self) -> defer.Deferred:
        """Fires once every byte received so far is hashed and written (or could not be)."""
        if not any(lane.busy for lane in self._lanes):
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def tell(self) -> int:
        return self.size

    def seek(self, *_args) -> None:
        """Twisted rewinds a request body once received; the spool is read back by path instead."""

    def read(self, *_args) -> bytes:
        """Twisted would parse a form-encoded POST body: a spooled body is never parsed, only stored."""
        return b""

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def flush(self) -> None:
        """Hand the last bytes to the kernel and close the file (before it is scanned or moved into place)."""
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def keep(self, dest: str) -> None:
        """Move the complete file to ``dest``."""
        self.flush()
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(self.path, dest)
        self.done = True

    def discard(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            os.unlink(self.path)  # at once, even while a worker thread still writes to the open file
        except FileNotFoundError:
            pass
        if not any(lane.busy for lane in self._lanes):  # else closed once the last batch is over
            self._close()

    def _close(self) -> None:
        try:
            self._file.close()
        except OSError:  # what was buffered could not be written either (full disk): removed anyway
            pass

    close = discard  # what Twisted calls once a request is over: a body nobody kept is removed


class FileStore:
    """Paths and atomic moves under ``media_store_path``."""

    def __init__(self, root: str, run_in_thread: RunInThread | None = None):
        self.root = root
        self._run_in_thread = run_in_thread
        self.tmp = os.path.join(root, "tmp")

    def prepare(self) -> None:
        """Create the store; drop what a crash left half-received in ``tmp/`` (never servable)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp, exist_ok=True)

    def spool(self, producer: Any = None) -> Spool:
        """A new file to receive; hashed and written on worker threads when the ``producer`` of its bytes is
        given (see :class:`Spool`)."""
        return Spool(self.tmp, self._run_in_thread, producer)

    def local_path(self, media_id: str) -> str:
        return os.path.join(self.root, "local_content", *_shard(media_id))

    def remote_path(self, server_name: str, media_id: str) -> str:
        return os.path.join(self.root, "remote_content", server_name, *_shard(media_id))

    def thumbnail_dir(self, server_name: str | None, media_id: str) -> str:
        if server_name is None:
            return os.path.join(self.root, "local_thumbnails", *_shard(media_id))
        return os.path.join(self.root, "remote_thumbnail", server_name, *_shard(media_id))

    def path_of(self, server_name: str | None, media_id: str) -> str:
        """The content of local media (``server_name`` None) or of cached remote media."""
        return self.local_path(media_id) if server_name is None else self.remote_path(server_name, media_id)

    def provider_key(self, server_name: str | None, media_id: str, thumbnail: str | None = None) -> str:
        """The object key of a file in a storage provider: its path relative to the store."""
        path = (self.path_of(server_name, media_id) if thumbnail is None
                else os.path.join(self.thumbnail_dir(server_name, media_id), thumbnail))
        return os.path.relpath(path, self.root)

    def remove(self, server_name: str | None, media_id: str) -> None:
        """Delete a file and its thumbnails (missing ones are fine)."""
        try:
            os.unlink(self.path_of(server_name, media_id))
        except FileNotFoundError:
            pass
        shutil.rmtree(self.thumbnail_dir(server_name, media_id), ignore_errors=True)

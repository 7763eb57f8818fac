"""Streaming one message into the spool (the :class:`MessageWriter` of the file spool).

``write()`` is synchronous and buffers up to :data:`BUFFER_LIMIT` bytes; beyond that it
writes through to the temporary file (header first, since the envelope is complete
before DATA), so memory per message stays bounded whatever the message size.

``commit()`` makes the message durable before it returns, in this order:

1. the rest of the content, the prepend section (header fields computed once the
   content is known, see :mod:`mailyard.queue.record`) and the trailer are written to
   ``tmp/<qid>.<owner>.tmp``, the file is fdatasync'd, closed and renamed to ``msg/<qid>``;
2. the ``msg/`` directory is fsync'd, then the message is inserted into the index.

Both run in the spool's commit threads, in a group commit shared with the other
commits of this process (:mod:`mailyard.queue.groupcommit`); other sessions keep
running meanwhile.

Only then may the server answer 250.  A crash before the rename leaves a temporary
file (removed by the sweep); a crash after it leaves a complete record (indexed by the
sweep if the index did not get it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import zlib
from functools import partial

from mailyard.envelope import Envelope
from mailyard.queue.api import StorageError
from mailyard.queue.groupcommit import GroupCommit
from mailyard.queue.index import NewMessage
from mailyard.queue.record import RecordMeta, encode_header, encode_trailer

BUFFER_LIMIT = 256 * 1024
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def storage_error(action: str, exc: OSError) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"{action}: disk full ({exc.strerror})")
    return StorageError(f"{action}: {exc}")


class SpoolWriter:
    """One message being received.  States: open -> committing -> committed, or aborted."""

    def __init__(self, qid: str, created: float, envelope: Envelope, tmp_path: str,
                 final_path: str, group: GroupCommit[NewMessage]) -> None:
        self.qid = qid
        self._created = created
        self._envelope = envelope
        self._tmp_path = tmp_path
        self._final_path = final_path
        self._group = group
        self._buffer = bytearray()
        self._fd: int | None = None
        self._length = 0
        self._crc = 0
        self._state = "open"
        self._done: asyncio.Future[None] | None = None

    @property
    def size(self) -> int:
        return self._length

    def write(self, data: bytes) -> None:
        if self._state != "open":
            raise StorageError(f"{self.qid}: write after {self._state}")
        self._crc = zlib.crc32(data, self._crc)
        self._length += len(data)
        self._buffer += data
        if len(self._buffer) >= BUFFER_LIMIT:
            self._spill()

    def _record_header(self) -> bytes:
        # Made when the record is first written, not at open: a message that ingest
        # delivers directly (small, in memory) never needs it.
        return encode_header(RecordMeta(self.qid, self._created, self._envelope))

    def held(self) -> bytes | None:
        if self._state != "open" or self._fd is not None:
            return None
        return bytes(self._buffer)

    def _spill(self) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self._tmp_path, _OPEN_FLAGS, 0o600)
                write_all(self._fd, self._record_header())
            write_all(self._fd, self._buffer)
        except OSError as exc:
            self.abort()
            raise storage_error(f"{self.qid}: cannot write the queue file", exc) from exc
        self._buffer.clear()

    async def commit(self, prepend: bytes = b"") -> str:
        """Make the message durable; returns the queue id.  ``prepend`` goes in front of
        the content when it is read back.  Raises StorageError.  Once started, the
        commit runs to its end even if the caller is cancelled."""
        if self._done is None:
            if self._state != "open":
                raise StorageError(f"{self.qid}: commit after {self._state}")
            try:
                trailer = encode_trailer(self._length, self._crc, prepend)
            except StorageError:
                self.abort()
                raise
            self._state = "committing"
            tail = bytes(self._buffer) + trailer
            if self._fd is None:  # the whole record is written by the commit
                tail = self._record_header() + tail
            self._buffer = bytearray()
            message = NewMessage(self.qid, self._created, self._length + len(prepend),
                                 self._envelope)
            self._done = self._group.submit(message, partial(self._finish_file, tail),
                                            slow=self._fd is not None)
            self._done.add_done_callback(self._finished)
        await asyncio.shield(self._done)
        return self.qid

    def _finished(self, done: asyncio.Future[None]) -> None:
        failed = done.cancelled() or done.exception() is not None
        self._state = "aborted" if failed else "committed"  # a failed commit left no files

    def _finish_file(self, tail: bytes) -> None:
        """Runs in the thread pool: complete, flush and rename the record."""
        fd = self._fd
        self._fd = None
        try:
            if fd is None:
                fd = os.open(self._tmp_path, _OPEN_FLAGS, 0o600)
            try:
                write_all(fd, tail)
                os.fdatasync(fd)
            finally:
                os.close(fd)
            os.rename(self._tmp_path, self._final_path)
        except OSError as exc:
            _unlink_quietly(self._tmp_path)
            raise storage_error(f"{self.qid}: cannot commit the queue file", exc) from exc

    def abort(self) -> None:
        """Discard the message (idempotent; a commit already under way completes)."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._buffer = bytearray()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _unlink_quietly(self._tmp_path)


def _unlink_quietly(path: str) -> None:
    # Already gone, or a leftover that the next sweep removes.
    with contextlib.suppress(OSError):
        os.unlink(path)

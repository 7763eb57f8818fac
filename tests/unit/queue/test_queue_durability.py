"""Commit durability: file fdatasync, then rename, then a directory fsync that started
after the rename, and only then does commit() return.  Failures are StorageErrors that
leave nothing behind, and concurrent commits share directory fsyncs."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path

import pytest

from mailyard.envelope import Envelope
from mailyard.queue.api import StorageError
from mailyard.queue.spool import FileSpool

CONTENT = b"Subject: durable\r\n\r\n" + b"body\r\n" * 400


class SyscallLog:
    """Patches os.fdatasync/os.fsync/os.rename to log calls with the paths involved."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.fail_fdatasync = False
        self.fail_dir_fsync = False
        real_fdatasync, real_fsync, real_rename = os.fdatasync, os.fsync, os.rename

        def fdatasync(fd: int) -> None:
            if self.fail_fdatasync:
                raise OSError(errno.EIO, "I/O error")
            real_fdatasync(fd)
            self.add("fdatasync", os.readlink(f"/proc/self/fd/{fd}"))

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            self.add("fsync-start", path)
            if self.fail_dir_fsync and os.path.isdir(path):
                raise OSError(errno.EIO, "I/O error")
            real_fsync(fd)
            self.add("fsync", path)

        def rename(src, dst):  # type: ignore[no-untyped-def]
            real_rename(src, dst)
            self.add("rename", str(dst))

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)

    def add(self, kind: str, path: str) -> None:
        with self.lock:
            self.events.append((kind, path))

    def position(self, kind: str, path: str) -> int:
        return self.events.index((kind, path))


def test_commit_order(spool: FileSpool, envelope: Envelope,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    log = SyscallLog(monkeypatch)
    msg_dir = str(spool.layout.msg_dir)

    async def commit() -> str:
        w = spool.open_message(envelope)
        w.write(CONTENT)
        qid = await w.commit()
        log.add("returned", qid)
        assert spool.get(qid) is not None  # indexed before commit returned
        return qid

    qid = asyncio.run(commit())
    final = str(spool.layout.message_path(qid))
    temp = str(spool.layout.temp_path(qid, spool._r.owner))  # noqa: SLF001
    assert log.position("fdatasync", temp) < log.position("rename", final)
    assert log.position("rename", final) < log.position("fsync-start", msg_dir)
    assert log.position("fsync", msg_dir) < log.position("returned", qid)


def test_concurrent_commits_each_wait_for_a_later_directory_fsync(
        spool: FileSpool, envelope: Envelope, monkeypatch: pytest.MonkeyPatch) -> None:
    log = SyscallLog(monkeypatch)
    msg_dir = str(spool.layout.msg_dir)

    async def commit(i: int) -> str:
        w = spool.open_message(envelope)
        w.write(CONTENT * (i % 3 + 1))
        qid = await w.commit()
        log.add("returned", qid)
        return qid

    async def main() -> list[str]:
        return await asyncio.gather(*(commit(i) for i in range(30)))

    qids = asyncio.run(main())
    for qid in qids:
        renamed = log.position("rename", str(spool.layout.message_path(qid)))
        returned = log.position("returned", qid)
        # Some directory fsync started after this rename and ended before the return.
        starts = [i for i, e in enumerate(log.events)
                  if e == ("fsync-start", msg_dir) and renamed < i < returned]
        ends = [i for i, e in enumerate(log.events)
                if e == ("fsync", msg_dir) and starts and starts[0] < i < returned]
        assert starts and ends, qid


def test_directory_fsyncs_are_shared(spool: FileSpool, envelope: Envelope,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """While one directory fsync runs, the file stages of the commits that arrive go
    on, and every commit renamed meanwhile joins the next directory fsync."""
    real_fsync = os.fsync
    gate = threading.Event()
    dir_fsyncs: list[int] = []

    def fsync(fd: int) -> None:
        if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
            dir_fsyncs.append(fd)
            if len(dir_fsyncs) == 1:
                gate.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    async def main() -> None:
        first = asyncio.ensure_future(spool.enqueue(envelope, CONTENT))
        for _ in range(5000):  # until the first commit's directory fsync is blocked
            if dir_fsyncs:
                break
            await asyncio.sleep(0.001)
        assert dir_fsyncs, "no directory fsync"
        rest = [asyncio.ensure_future(spool.enqueue(envelope, CONTENT)) for _ in range(19)]
        for _ in range(5000):  # until all 20 are renamed into msg/
            if len(os.listdir(spool.layout.msg_dir)) == 20:
                break
            await asyncio.sleep(0.001)
        assert len(os.listdir(spool.layout.msg_dir)) == 20
        assert len(dir_fsyncs) == 1
        gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert len(dir_fsyncs) == 2
    assert len(spool.list()) == 20


def test_a_large_message_holds_up_no_other_commit(spool: FileSpool, envelope: Envelope,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A message already streamed to its temporary file is flushed in a thread of its
    own: small commits made meanwhile complete without waiting for it."""
    real_fdatasync = os.fdatasync
    gate = threading.Event()
    big_flushing = threading.Event()
    big: list[str] = []

    def fdatasync(fd: int) -> None:
        if big and big[0] in os.readlink(f"/proc/self/fd/{fd}"):
            big_flushing.set()
            gate.wait(10)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)

    async def main() -> None:
        writer = spool.open_message(envelope)
        big.append(writer.qid)
        for _ in range(8):
            writer.write(b"x" * 65536)  # beyond the buffer: streamed to disk
        big_commit = asyncio.ensure_future(writer.commit())
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, big_flushing.wait, 10)
        small = await asyncio.wait_for(
            asyncio.gather(*(spool.enqueue(envelope, CONTENT) for _ in range(5))), 10)
        assert not big_commit.done() and all(spool.get(q) for q in small)
        gate.set()
        assert await big_commit == big[0]

    asyncio.run(main())
    assert len(spool.list()) == 6


def test_failed_file_sync_raises_and_leaves_nothing(spool: FileSpool, envelope: Envelope,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    log = SyscallLog(monkeypatch)
    log.fail_fdatasync = True
    with pytest.raises(StorageError):
        asyncio.run(spool.enqueue(envelope, CONTENT))
    assert os.listdir(spool.layout.tmp_dir) == []
    assert os.listdir(spool.layout.msg_dir) == []
    assert spool.list() == []


def test_failed_directory_sync_raises_and_removes_the_file(
        spool: FileSpool, envelope: Envelope, monkeypatch: pytest.MonkeyPatch) -> None:
    log = SyscallLog(monkeypatch)
    log.fail_dir_fsync = True
    with pytest.raises(StorageError):
        asyncio.run(spool.enqueue(envelope, CONTENT))
    assert os.listdir(spool.layout.msg_dir) == []
    assert spool.list() == []


def test_disk_full_while_streaming(spool: FileSpool, envelope: Envelope,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if len(data) > 100_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    w = spool.open_message(envelope)
    with pytest.raises(StorageError, match="disk full"):
        for _ in range(100):
            w.write(b"x" * 65536)
    w.abort()
    assert os.listdir(spool.layout.tmp_dir) == []


def test_abort_discards(spool: FileSpool, envelope: Envelope) -> None:
    w = spool.open_message(envelope)
    for _ in range(10):
        w.write(b"y" * 65536)  # spilled to a temporary file
    assert os.listdir(spool.layout.tmp_dir)
    w.abort()
    w.abort()
    assert os.listdir(spool.layout.tmp_dir) == []
    with pytest.raises(StorageError):
        w.write(b"more")
    with pytest.raises(StorageError):
        asyncio.run(w.commit())


def test_cancelled_commit_still_completes(spool: FileSpool, envelope: Envelope) -> None:
    """A commit shares its flushes with others, so cancelling the caller does not stop
    it half-way; abort() after that is a no-op and the message stays whole."""
    async def main() -> str:
        w = spool.open_message(envelope)
        w.write(CONTENT)
        task = asyncio.ensure_future(w.commit())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        w.abort()
        for _ in range(500):
            if spool.get(w.qid) is not None:
                break
            await asyncio.sleep(0.01)
        return w.qid

    qid = asyncio.run(main())
    assert spool.get(qid) is not None
    with spool.open_content(qid) as f:
        assert f.read() == CONTENT


def test_commit_works_across_event_loops(spool: FileSpool, envelope: Envelope) -> None:
    first = asyncio.run(spool.enqueue(envelope, CONTENT))
    second = asyncio.run(spool.enqueue(envelope, CONTENT))
    assert first < second
    assert {e.qid for e in spool.list()} == {first, second}


def test_qid_is_known_before_commit(spool: FileSpool, envelope: Envelope,
                                    tmp_path: Path) -> None:
    w = spool.open_message(envelope)
    assert len(w.qid) <= 20
    w.write(b"Received: by mx.example.org with ESMTP id " + w.qid.encode() + b"\r\n\r\n")
    assert asyncio.run(w.commit()) == w.qid


def test_failed_file_stage_fails_only_that_commit(spool: FileSpool, envelope: Envelope,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits share the directory fsync and the index insert, not each other's file
    errors: one fdatasync failing leaves the concurrent commits intact."""
    real_fdatasync = os.fdatasync
    failing: set[str] = set()

    def fdatasync(fd: int) -> None:
        if any(name in os.readlink(f"/proc/self/fd/{fd}") for name in failing):
            raise OSError(errno.EIO, "I/O error")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)

    async def main() -> list[str | BaseException]:
        writers = [spool.open_message(envelope) for _ in range(6)]
        failing.add(writers[2].qid)
        for w in writers:
            w.write(CONTENT)
        return await asyncio.gather(*(w.commit() for w in writers), return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[2], StorageError)
    committed = [r for r in results if isinstance(r, str)]
    assert len(committed) == 5
    assert {e.qid for e in spool.list()} == set(committed)
    assert os.listdir(spool.layout.tmp_dir) == []

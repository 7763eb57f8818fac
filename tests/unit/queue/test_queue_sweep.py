"""Crash recovery: a child process dies (os._exit) at each step of a commit or a
removal; the sweep then leaves either no message or a complete one, never a torn one,
and never re-queues a finished message."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from mailyard.queue.api import Outcome, RecipientState
from mailyard.queue.index import QueueIndex
from mailyard.queue.record import RecordMeta, encode_header, encode_trailer
from mailyard.queue.spool import FileSpool
from tests.support.envelopes import make_envelope
from tests.support.replies import reply

CONTENT = b"Subject: crash\r\n\r\n" + b"data line\r\n" * 300
BIG = b"z" * (1024 * 1024)
CRASH = 77


def run_child(root: Path, body: Callable[[FileSpool], None]) -> None:
    """Run ``body`` in a forked child with its own spool; it must die with CRASH."""
    def target() -> None:
        body(FileSpool(root, "mx.example.org"))
        os._exit(0)

    proc = multiprocessing.get_context("fork").Process(target=target)
    proc.start()
    proc.join(30)
    assert proc.exitcode == CRASH


def die(*_args: object, **_kwargs: object) -> None:
    os._exit(CRASH)


def commit_with(patch: Callable[[], None], content: bytes = CONTENT) -> Callable[[FileSpool], None]:
    def body(spool: FileSpool) -> None:
        patch()
        asyncio.run(spool.enqueue(make_envelope(), content))
    return body


def fresh_sweep(root: Path) -> tuple[FileSpool, object]:
    spool = FileSpool(root, "mx.example.org")
    return spool, spool.sweep()


def assert_empty(spool: FileSpool) -> None:
    assert spool.list() == []
    assert os.listdir(spool.layout.msg_dir) == []
    assert os.listdir(spool.layout.tmp_dir) == []


def assert_one_complete(spool: FileSpool, content: bytes = CONTENT) -> None:
    [entry] = spool.list()
    assert [r.state for r in entry.recipients] == [RecipientState.PENDING]
    with spool.open_content(entry.qid) as f:
        assert f.read() == content
    assert os.listdir(spool.layout.tmp_dir) == []


def test_crash_while_streaming(tmp_path: Path) -> None:
    def body(spool: FileSpool) -> None:
        w = spool.open_message(make_envelope())
        w.write(BIG)  # spilled to tmp/
        die()

    run_child(tmp_path, body)
    assert len(os.listdir(tmp_path / "tmp")) == 1
    spool, report = fresh_sweep(tmp_path)
    assert report.temp_removed == 1  # type: ignore[attr-defined]
    assert_empty(spool)


def test_crash_before_the_file_sync(tmp_path: Path) -> None:
    def patch() -> None:
        os.fdatasync = die  # type: ignore[assignment]

    run_child(tmp_path, commit_with(patch, BIG))
    spool, _ = fresh_sweep(tmp_path)
    assert_empty(spool)


def test_crash_before_the_rename(tmp_path: Path) -> None:
    def patch() -> None:
        os.rename = die  # type: ignore[assignment]

    run_child(tmp_path, commit_with(patch))
    spool, report = fresh_sweep(tmp_path)
    assert report.temp_removed == 1  # type: ignore[attr-defined]
    assert_empty(spool)


def test_crash_before_the_directory_sync(tmp_path: Path) -> None:
    real_fsync = os.fsync

    def patch() -> None:
        def fsync(fd: int) -> None:
            if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
                die()
            real_fsync(fd)
        os.fsync = fsync  # type: ignore[assignment]

    run_child(tmp_path, commit_with(patch))
    spool, report = fresh_sweep(tmp_path)
    # Never acknowledged, but complete: queued (the client may send it again).
    assert report.indexed == 1  # type: ignore[attr-defined]
    assert_one_complete(spool)


def test_crash_before_the_index_insert(tmp_path: Path) -> None:
    def patch() -> None:
        QueueIndex.insert = die  # type: ignore[method-assign]

    run_child(tmp_path, commit_with(patch))
    spool, report = fresh_sweep(tmp_path)
    assert report.indexed == 1  # type: ignore[attr-defined]
    assert_one_complete(spool)
    assert spool.sweep().indexed == 0  # idempotent


def test_crash_between_final_record_and_unlink(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    qid = asyncio.run(spool.enqueue(make_envelope(), CONTENT))

    def body(child: FileSpool) -> None:
        child.claim_due(time.time(), 10, 60)
        os.unlink = die  # type: ignore[assignment]
        child.record(qid, [Outcome(0, RecipientState.DELIVERED, reply(250, "", "ok"))])

    run_child(tmp_path, body)
    assert spool.layout.message_path(qid).exists()
    assert spool.get(qid) is None  # finished, even though the file is still there
    report = spool.sweep()
    assert report.finished_removed == 1 and report.indexed == 0
    assert_empty(spool)


def test_crash_after_unlink_before_purge(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    qid = asyncio.run(spool.enqueue(make_envelope(), CONTENT))
    spool.claim_due(time.time(), 10, 60)
    spool.record(qid, [Outcome(0, RecipientState.FAILED, reply(550, "", "no"))])
    assert spool.sweep().tombstones_purged == 1
    assert_empty(spool)


def test_torn_and_foreign_files_are_quarantined(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    good = asyncio.run(spool.enqueue(make_envelope(), CONTENT))
    data = spool.layout.message_path(good).read_bytes()
    torn = "1K1CA8Z883X9DRD8JB0"
    (spool.layout.msg_dir / torn).write_bytes(data[:len(data) // 2])
    (spool.layout.msg_dir / "README").write_bytes(b"not a record")
    (spool.layout.msg_dir / "subdir").mkdir()
    report = spool.sweep()
    assert report.quarantined == 3
    assert sorted(os.listdir(spool.layout.corrupt_dir)) == ["1K1CA8Z883X9DRD8JB0", "README",
                                                            "subdir"]
    assert [e.qid for e in spool.list()] == [good]


def test_indexed_file_damaged_later_is_quarantined(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    qid = asyncio.run(spool.enqueue(make_envelope(), CONTENT))
    path = spool.layout.message_path(qid)
    path.write_bytes(path.read_bytes()[:-3])
    assert spool.sweep().quarantined == 1
    assert spool.get(qid) is None
    assert os.listdir(spool.layout.corrupt_dir) == [qid]


def test_content_damage_found_by_full_verification(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    qid = asyncio.run(spool.enqueue(make_envelope(), CONTENT))
    path = spool.layout.message_path(qid)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    assert spool.sweep().quarantined == 0  # structure intact
    assert spool.sweep(verify_content=True).quarantined == 1


def test_unindexed_file_with_bad_content_is_not_queued(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    qid = "1K1CA8Z883X9DRD8JB0"
    meta = RecordMeta(qid, time.time(), make_envelope())
    record = encode_header(meta) + CONTENT + encode_trailer(len(CONTENT),
                                                            zlib.crc32(CONTENT) ^ 1)
    spool.layout.message_path(qid).write_bytes(record)
    report = spool.sweep()
    assert report.quarantined == 1 and report.indexed == 0


def test_file_under_another_name_is_quarantined(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    qid = asyncio.run(spool.enqueue(make_envelope(), CONTENT))
    spool.delete(qid)
    meta = RecordMeta(qid, time.time(), make_envelope())
    record = encode_header(meta) + CONTENT + encode_trailer(len(CONTENT), zlib.crc32(CONTENT))
    spool.layout.message_path("1K1CA8Z883X9DRD8JB0").write_bytes(record)
    assert spool.sweep().quarantined == 1


def test_index_row_without_file_is_dropped(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    qid = asyncio.run(spool.enqueue(make_envelope(), CONTENT))
    os.unlink(spool.layout.message_path(qid))
    assert spool.sweep().lost_rows == 1
    assert spool.list() == []


def test_temp_file_of_a_live_writer_is_kept(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    w = spool.open_message(make_envelope())
    w.write(BIG)
    other = FileSpool(tmp_path, "mx.example.org")
    assert other.sweep().temp_removed == 0
    assert len(os.listdir(spool.layout.tmp_dir)) == 1
    assert asyncio.run(w.commit()) == w.qid
    assert_one_complete(other, BIG)


@pytest.mark.parametrize("name", ["junk", "1K1CA8Z883X9DRD8JB0.0-1-2.tmp.partial"])
def test_unknown_temp_files_are_removed(tmp_path: Path, name: str) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    (spool.layout.tmp_dir / name).write_bytes(b"x")
    assert spool.sweep().temp_removed == 1


def test_lost_index_is_rebuilt_from_the_files(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    qids = [asyncio.run(spool.enqueue(make_envelope(f"r{i}@example.net"), CONTENT))
            for i in range(5)]
    spool.close()
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    spool, report = fresh_sweep(tmp_path)
    assert report.indexed == 5  # type: ignore[attr-defined]
    assert [e.qid for e in spool.list()] == sorted(qids)
    assert [e.envelope.recipients[0].address for e in spool.list()] == [
        f"r{i}@example.net" for i in range(5)]


def test_spool_used_before_a_fork_works_in_the_child(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    before = asyncio.run(spool.enqueue(make_envelope(), CONTENT))  # threads and connections

    def body(child_unused: FileSpool) -> None:
        qid = asyncio.run(spool.enqueue(make_envelope(), CONTENT))  # the inherited object
        assert spool.get(qid) is not None and spool.get(before) is not None
        os._exit(CRASH)

    run_child(tmp_path, body)
    after = asyncio.run(spool.enqueue(make_envelope(), CONTENT))
    assert len(spool.list()) == 3 and spool.get(after) is not None


def test_late_index_insert_does_not_bring_back_a_finished_message(tmp_path: Path) -> None:
    """A sweep running during a commit may index the file before the commit's own
    insert; if the message is delivered and purged in between, that insert must not
    bring it back as a row without a file."""
    from mailyard.queue.index import NewMessage

    spool = FileSpool(tmp_path, "mx.example.org")
    qid = asyncio.run(spool.enqueue(make_envelope(), CONTENT))
    entry = spool.get(qid)
    assert entry is not None
    spool.claim_due(time.time(), 10, 60)
    spool.record(qid, [Outcome(0, RecipientState.DELIVERED, reply(250, "", "ok"))])
    spool.sweep()  # tombstone purged
    late = NewMessage(qid, entry.created, entry.size, entry.envelope)
    spool._r._index([late])  # noqa: SLF001 - the commit's index stage, run late
    assert spool.get(qid) is None and spool.list() == []

"""The queue's seams: the prepend section of a record, the index schema version, typed
replies stored once as JSON (old plain-string rows still read), and the asynchronous
protocols served from one queue thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import zlib
from pathlib import Path

import pytest

from mailyard.ingest.api import Origin, Submission
from mailyard.ingest.pipeline import QueueIngest
from mailyard.queue.api import (
    CapacityProbe,
    DeliveryReply,
    FinishedEntry,
    Outcome,
    PostponedRecipient,
    QueueAdmin,
    QueueWriter,
    RecipientState,
    ReplyOrigin,
    StorageError,
    WorkQueue,
)
from mailyard.queue.index import SCHEMA_VERSION, QueueIndex
from mailyard.queue.record import (
    RecordError,
    RecordMeta,
    encode_header,
    encode_trailer,
    open_content,
    validate,
)
from mailyard.queue.spool import FileSpool
from mailyard.queue.threaded import ThreadedSpool
from tests.support.envelopes import make_envelope
from tests.support.replies import reply

BODY = b"From: a@example.org\r\nSubject: signed later\r\n\r\nbody\r\n"
SIGNATURE = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; b=abc\r\n"
NOW = 1_700_000_000.0


# --- prepend section -----------------------------------------------------------------
def test_prepend_is_read_in_front_of_the_content(spool: FileSpool) -> None:
    writer = spool.open_message(make_envelope("a@example.net"))
    writer.write(BODY)
    qid = asyncio.run(writer.commit(prepend=SIGNATURE))
    with spool.open_content(qid) as f:
        assert f.read() == SIGNATURE + BODY
    with spool.open_content(qid) as f:  # small reads cross the boundary unchanged
        assert b"".join(iter(lambda: f.read(7), b"")) == SIGNATURE + BODY
    info = validate(spool.layout.message_path(qid), verify_content=True)
    assert (info.prepend, info.content_length) == (SIGNATURE, len(BODY))
    assert spool.get(qid).size == len(SIGNATURE) + len(BODY)  # the size as delivered


def test_prepend_survives_the_sweep(spool: FileSpool, tmp_path: Path) -> None:
    writer = spool.open_message(make_envelope("a@example.net"))
    writer.write(BODY)
    qid = asyncio.run(writer.commit(prepend=SIGNATURE))
    spool.close()
    (tmp_path / "queue" / "index.db").unlink()
    again = FileSpool(tmp_path / "queue", "mx.example.org")
    try:
        again.sweep()
        assert again.get(qid).size == len(SIGNATURE) + len(BODY)
        with again.open_content(qid) as f:
            assert f.read() == SIGNATURE + BODY
    finally:
        again.close()


def _record(prepend: bytes) -> bytearray:
    meta = RecordMeta("0000000000000ABCDEFGH", NOW, make_envelope("x@example.net"))
    return bytearray(encode_header(meta) + BODY
                     + encode_trailer(len(BODY), zlib.crc32(BODY), prepend))


def test_damaged_prepend_is_detected(tmp_path: Path) -> None:
    data = _record(SIGNATURE)
    data[len(data) - 20 - 8 - 3] ^= 0x01  # a byte of the prepend section
    path = tmp_path / "rec"
    path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match="prepend checksum"):
        validate(path)
    with pytest.raises(RecordError):
        open_content(path)


def test_truncated_prepend_is_detected(tmp_path: Path) -> None:
    data = _record(SIGNATURE)
    path = tmp_path / "rec"
    path.write_bytes(bytes(data[:-20 - 8 - 5]) + bytes(data[-20 - 8:]))
    with pytest.raises(RecordError):
        validate(path)


def test_a_record_without_prepend_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "rec"
    path.write_bytes(bytes(_record(b"")))
    assert validate(path, verify_content=True).prepend == b""
    with open_content(path) as f:
        assert f.read() == BODY


def test_ingest_submits_forwards_and_bounces_into_the_queue(spool: FileSpool) -> None:
    queue = ThreadedSpool(spool)
    env = make_envelope("postmaster@example.net", sender="")
    ingest = QueueIngest(queue, "mx.example.test")
    qid = asyncio.run(ingest.submit(Submission(Origin.DSN, env), BODY))
    with spool.open_content(qid) as f:
        assert f.read() == BODY
    assert spool.get(qid).envelope.sender == ""


# --- schema version and stored replies -------------------------------------------------
def test_new_index_carries_the_schema_version(tmp_path: Path) -> None:
    index = QueueIndex(tmp_path / "index.db")
    index.close()
    db = sqlite3.connect(tmp_path / "index.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_newer_index_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "index.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageError, match="newer than this Mailyard"):
        QueueIndex(tmp_path / "index.db")


def test_version_0_rows_with_plain_string_replies_are_migrated(spool: FileSpool,
                                                               tmp_path: Path) -> None:
    qid = asyncio.run(spool.enqueue(make_envelope("a@example.net", "b@example.net", "c@x.net"),
                                    BODY))
    spool.close()
    db = sqlite3.connect(tmp_path / "queue" / "index.db")
    db.executemany("UPDATE recipients SET last_reply = ?, state = 'deferred' WHERE idx = ?",
                   [("451 4.4.1 Connection refused", 0), ("421 Service not available", 1),
                    ("local error text", 2)])
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    again = FileSpool(tmp_path / "queue", "mx.example.org")
    try:
        a, b, c = again.get(qid).recipients
        assert a.last_reply == reply(451, "4.4.1", "Connection refused")
        assert b.last_reply == reply(421, "", "Service not available")
        assert c.last_reply == reply(451, "", "local error text")
        assert a.last_reply.origin is ReplyOrigin.LOCAL  # who said it is not known
    finally:
        again.close()
    db = sqlite3.connect(tmp_path / "queue" / "index.db")
    stored = [row[0] for row in db.execute("SELECT last_reply FROM recipients ORDER BY idx")]
    assert all(s.startswith("{") for s in stored)  # migrated once, JSON from now on
    db.close()


def test_reply_origin_round_trips_through_the_index(spool: FileSpool) -> None:
    qid = asyncio.run(spool.enqueue(make_envelope("a@example.net", "b@example.net"), BODY))
    spool.claim_due(NOW, 10, 60)
    remote = reply(250, "2.0.0", "Ok: queued as X\nsecond line", "mx.example.net")
    local = reply(452, "4.2.2", "Mailbox full")
    spool.record(qid, [Outcome(0, RecipientState.DELIVERED, remote),
                       Outcome(1, RecipientState.DEFERRED, local, NOW + 60)])
    a, b = spool.get(qid).recipients
    assert a.last_reply == remote and a.last_reply.origin is ReplyOrigin.REMOTE
    assert str(a.last_reply) == "250 2.0.0 Ok: queued as X second line"
    assert b.last_reply == local and b.last_reply.origin is ReplyOrigin.LOCAL
    assert DeliveryReply.from_dict(a.last_reply.to_dict()) == remote


# --- the asynchronous protocols ------------------------------------------------------------
def test_threaded_spool_serves_every_role_from_one_queue_thread(spool: FileSpool) -> None:
    queue = ThreadedSpool(spool)
    writer: QueueWriter = queue
    work: WorkQueue = queue
    admin: QueueAdmin = queue
    probe: CapacityProbe = queue
    threads: set[str] = set()
    original = spool.claim_due

    def claim_due(*args: object, **kwargs: object) -> list:
        threads.add(threading.current_thread().name)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    spool.claim_due = claim_due  # type: ignore[method-assign]

    async def go() -> None:
        qid = await writer.enqueue(make_envelope("a@example.net"), BODY)
        [entry] = await work.claim_due(NOW, 10, 60)
        assert entry.qid == qid and await work.read_content(qid) == BODY
        assert await work.read_content(qid, 4) == BODY[:4]
        down = reply(451, "4.4.1", "down")
        assert await work.record_many([FinishedEntry(
            qid, [], [PostponedRecipient(0, NOW + 300, down)])]) == [False]
        assert (await admin.get(qid)).recipients[0].last_reply == down
        assert await work.postpone_domain("example.net", NOW + 600, down) == 1
        stats = await admin.stats()
        assert stats[RecipientState.PENDING] == 1 and set(stats) == set(RecipientState)
        assert await admin.hold(qid) and await admin.release(qid)
        await work.mark_delay_notified(qid, [0])
        await work.release_lease(qid)
        assert await admin.delete(qid) and await admin.list() == []

    asyncio.run(go())
    assert probe.free_bytes() > 0
    assert threads and all(name.startswith("queue-io") for name in threads)
    queue.close()


def test_no_getattr_probing_of_the_queue() -> None:
    """Every method the delivery side calls is declared on a protocol."""
    root = Path(__file__).resolve().parents[3] / "src" / "mailyard"
    for path in [*(root / "delivery").glob("*.py"), root / "daemon" / "supervisor.py",
                 root / "cli" / "queue.py"]:
        text = path.read_text()
        assert "getattr(self.spool" not in text and "getattr(spool" not in text, path
        assert "spool: Any" not in text, path


def test_content_reader_checks_crc_after_the_prepend(tmp_path: Path) -> None:
    data = _record(SIGNATURE)
    header_len = len(data) - len(BODY) - len(SIGNATURE) - 28
    data[header_len + 2] ^= 0x01  # a content byte
    path = tmp_path / "rec"
    path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match="content checksum"), open_content(path) as f:
        f.read()

"""Size and scale: a 50 MB message streams through in bounded memory, and claiming
stays an index range scan with 100,000 queued messages."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from mailyard.envelope import Envelope
from mailyard.queue.index import CLAIM_QUERY, NewMessage
from mailyard.queue.spool import FileSpool
from tests.support.envelopes import make_envelope

MESSAGE_SIZE = 50 * 1024 * 1024
CHUNK = 64 * 1024


def chunks(total: int) -> Iterator[bytes]:
    block = (b"0123456789abcdef" * (CHUNK // 16 - 1) + b"line end\r\n" + b"\r\n" * 3)[:CHUNK]
    sent = 0
    while sent < total:
        piece = block[: min(CHUNK, total - sent)]
        sent += len(piece)
        yield piece


@pytest.mark.timeout(120)
def test_50mb_message_streams_with_bounded_memory(spool: FileSpool,
                                                  envelope: Envelope) -> None:
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        async def commit() -> str:
            w = spool.open_message(envelope)
            for piece in chunks(MESSAGE_SIZE):
                digest.update(piece)
                w.write(piece)
            return await w.commit()

        qid = asyncio.run(commit())
        _, peak_write = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        back = hashlib.sha256()
        with spool.open_content(qid) as f:
            while piece := f.read(CHUNK):
                back.update(piece)
        _, peak_read = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert back.hexdigest() == digest.hexdigest()
    entry = spool.get(qid)
    assert entry is not None and entry.size == MESSAGE_SIZE
    assert peak_write < 2 * 1024 * 1024, peak_write
    assert peak_read < 2 * 1024 * 1024, peak_read


QUEUED = 100_000


@pytest.mark.timeout(180)
def test_claim_with_100k_queued_messages(spool: FileSpool) -> None:
    now = time.time()
    env = make_envelope("a@example.net", "b@example.net")
    index = spool._r.index  # noqa: SLF001 - bulk set-up without 100k fsyncs
    batch = []
    for i in range(QUEUED):
        batch.append(NewMessage(f"{i:019d}", now, 2048, env))
        if len(batch) == 5000:
            index.insert(batch)
            batch = []
    # Most recipients wait for a retry in the future; a spread-out few are due.
    db = sqlite3.connect(spool.layout.index_path)
    with db:
        db.execute("UPDATE recipients SET state = 'deferred', attempts = 1,"
                   " next_attempt = ? + (CAST(qid AS INTEGER) % 1000)", (now + 3600,))
        db.execute("UPDATE recipients SET next_attempt = ? - (CAST(qid AS INTEGER) % 97)"
                   " WHERE CAST(qid AS INTEGER) % 1000 = 7", (now,))
        db.execute("UPDATE messages SET next_due = (SELECT MIN(next_attempt) FROM recipients r"
                   " WHERE r.qid = messages.qid)")
        plan = " ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + CLAIM_QUERY,
                                                      (now, now, 200)))
    db.close()
    assert "messages_due" in plan and "TEMP B-TREE" not in plan, plan

    assert spool.stats()["deferred"] == 2 * QUEUED
    first = spool.claim_due(now, 50, 60)
    assert len(first) == 50
    due_times = [min(r.next_attempt for r in e.recipients) for e in first]
    assert due_times == sorted(due_times)
    assert all(int(e.qid) % 1000 == 7 for e in first)
    rest = spool.claim_due(now, 1000, 60)
    assert len(rest) == QUEUED // 1000 - 50  # only the due ones, none twice
    assert not {e.qid for e in first} & {e.qid for e in rest}
    assert spool.claim_due(now, 1000, 60) == []
    later = spool.claim_due(now + 3600 + 500, 1000, 60)  # leases expired too
    assert len(later) == 1000
    assert json.loads(json.dumps(spool.stats()))["deferred"] == 2 * QUEUED

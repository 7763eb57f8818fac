"""Claiming one named entry (end-to-end relaying claims the message it just queued)."""

from __future__ import annotations

import asyncio
import time

from mailyard.queue.api import Outcome, RecipientState
from tests.support.replies import reply


def test_claim_one_entry_once(spool, envelope):
    qid = asyncio.run(spool.enqueue(envelope, b"Subject: x\r\n\r\nbody\r\n"))
    now = time.time()
    entry = spool.claim(qid, now, 60)
    assert entry is not None and entry.qid == qid
    # Leased: neither a second claim nor the dispatcher's claim_due gets it.
    assert spool.claim(qid, now, 60) is None
    assert spool.claim_due(now, 10, 60) == []
    spool.release_lease(qid)
    assert [e.qid for e in spool.claim_due(now, 10, 60)] == [qid]


def test_claim_skips_entries_that_are_not_due(spool, envelope):
    qid = asyncio.run(spool.enqueue(envelope, b"Subject: x\r\n\r\nbody\r\n"))
    now = time.time()
    assert spool.claim(qid, now, 60) is not None
    later = reply(451, "4.0.0", "later")
    spool.record(qid, [Outcome(0, RecipientState.DEFERRED, later, now + 600),
                       Outcome(1, RecipientState.DEFERRED, later, now + 600)])
    assert spool.claim(qid, now, 60) is None
    assert spool.claim("nonexistent", now, 60) is None


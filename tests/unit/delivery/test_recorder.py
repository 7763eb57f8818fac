"""Outcomes written in batches: FileSpool.record_many, postponed recipients (no attempt
counted) and OutcomeRecorder's group commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailyard.delivery.recorder import FinishedEntry, OutcomeRecorder, PostponedRecipient
from mailyard.envelope import Envelope, Recipient
from mailyard.queue.api import Outcome, RecipientState
from mailyard.queue.spool import FileSpool
from mailyard.queue.threaded import ThreadedSpool
from tests.support.replies import reply

NOW = 1_700_000_000.0


def envelope(*recipients: str) -> Envelope:
    return Envelope("sender@example.org", tuple(Recipient(r) for r in recipients),
                    received_at=NOW)


@pytest.fixture
def spool(tmp_path: Path):
    s = FileSpool(tmp_path / "queue", "mx.example.org", clock=lambda: NOW)
    yield s
    s.close()


def queue(spool: FileSpool, *recipients: str) -> str:
    return asyncio.run(spool.enqueue(envelope(*recipients), b"Subject: t\r\n\r\nbody\r\n"))


def test_record_many_applies_each_entry_in_one_call(spool: FileSpool) -> None:
    done = queue(spool, "a@healthy.example")
    later = queue(spool, "b@healthy.example", "c@down.example")
    assert len(spool.claim_due(NOW, 10, 60)) == 2
    finished = spool.record_many([
        FinishedEntry(done, [Outcome(0, RecipientState.DELIVERED, reply(250, "", "ok"))]),
        FinishedEntry(later, [Outcome(0, RecipientState.DELIVERED, reply(250, "", "ok")),
                              Outcome(1, RecipientState.DEFERRED, reply(451, "", "later"),
                                      NOW + 60)]),
        FinishedEntry("nosuchqid"),
    ])
    assert finished == [True, False, None]
    assert spool.get(done) is None  # finished: gone, file removed
    kept = spool.get(later)
    assert kept is not None
    assert [(r.state, r.attempts) for r in kept.recipients] == [
        (RecipientState.DELIVERED, 1), (RecipientState.DEFERRED, 1)]
    assert spool.claim_due(NOW, 10, 60) == []  # lease given up, not due until NOW + 60
    assert [e.qid for e in spool.claim_due(NOW + 60, 10, 60)] == [later]


def test_postponed_recipient_waits_without_an_attempt(spool: FileSpool) -> None:
    qid = queue(spool, "a@down.example")
    spool.claim_due(NOW, 10, 60)
    down = reply(451, "4.4.1", "destination down")
    spool.record_many([FinishedEntry(qid, [], [PostponedRecipient(0, NOW + 300, down)])])
    rec = spool.get(qid).recipients[0]
    assert (rec.state, rec.attempts, rec.next_attempt) == (RecipientState.PENDING, 0, NOW + 300)
    assert rec.last_reply == down
    assert spool.claim_due(NOW + 299, 10, 60) == []
    assert [e.qid for e in spool.claim_due(NOW + 300, 10, 60)] == [qid]


def test_postpone_domain_skips_leased_messages_and_other_domains(spool: FileSpool) -> None:
    leased = queue(spool, "a@Down.Example")
    spool.claim_due(NOW, 10, 60)
    waiting = [queue(spool, f"r{i}@DOWN.example", "x@up.example") for i in range(5)]
    assert spool.postpone_domain("down.example", NOW + 600,
                                 reply(451, "4.4.1", "suspended")) == 5
    for qid in waiting:
        down, up = spool.get(qid).recipients
        assert (down.next_attempt, down.attempts, up.next_attempt) == (NOW + 600, 0, 0)
    assert spool.get(leased).recipients[0].next_attempt == 0
    # The messages are still due for their healthy recipient only.
    claimed = spool.claim_due(NOW, 10, 60)
    assert sorted(e.qid for e in claimed) == sorted(waiting)


def test_recorder_writes_entries_finished_together_in_one_batch(spool: FileSpool) -> None:
    qids = [queue(spool, f"r{i}@healthy.example") for i in range(20)]
    spool.claim_due(NOW, 100, 60)

    async def finish_all() -> OutcomeRecorder:
        recorder = OutcomeRecorder(ThreadedSpool(spool))
        await asyncio.gather(*(recorder.record(FinishedEntry(
            qid, [Outcome(0, RecipientState.DELIVERED, reply(250, "", "ok"))])) for qid in qids))
        return recorder

    recorder = asyncio.run(finish_all())
    assert recorder.batches == 1
    assert all(spool.get(qid) is None for qid in qids)


def test_recorder_reports_a_storage_error_to_every_entry_of_the_batch(spool: FileSpool) -> None:
    qid = queue(spool, "a@healthy.example")
    spool.claim_due(NOW, 10, 60)

    async def finish() -> list[BaseException | None]:
        recorder = OutcomeRecorder(ThreadedSpool(spool))
        bad = FinishedEntry(qid, [], [PostponedRecipient(7, NOW, reply(451))])
        return await asyncio.gather(recorder.record(bad), recorder.record(
            FinishedEntry(qid, [])), return_exceptions=True)

    errors = asyncio.run(finish())
    assert all(type(e).__name__ == "StorageError" for e in errors)


def test_record_many_finishes_a_message_whose_last_recipient_ends_later(
        spool: FileSpool) -> None:
    """The second batch makes the message final (one recipient delivered earlier, the
    other fails now): it becomes a tombstone, its file goes, and nothing is due."""
    qid = queue(spool, "a@healthy.example", "b@other.example")
    spool.claim_due(NOW, 10, 60)
    assert spool.record_many([FinishedEntry(qid, [
        Outcome(0, RecipientState.DELIVERED, reply(250, "", "ok")),
        Outcome(1, RecipientState.DEFERRED, reply(451, "", "later"), NOW + 60)])]) == [False]
    [entry] = spool.claim_due(NOW + 60, 10, 60)
    assert [r.index for r in entry.recipients
            if r.state is RecipientState.DEFERRED] == [1]
    assert spool.record_many([FinishedEntry(qid, [
        Outcome(1, RecipientState.FAILED, reply(550, "", "no"))])]) == [True]
    assert spool.get(qid) is None
    assert not (spool.layout.msg_dir / qid).exists()
    assert spool.claim_due(NOW + 10_000, 10, 60) == []

"""Per-recipient state, leases and the operator actions of the file spool."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time

import pytest

from mailyard.envelope import Envelope
from mailyard.queue.api import Outcome, RecipientState, StorageError
from mailyard.queue.spool import FileSpool
from tests.support.envelopes import make_envelope
from tests.support.replies import reply

NOW = time.time()
CONTENT = b"Subject: states\r\n\r\nhello\r\n"
D, F, W = RecipientState.DELIVERED, RecipientState.FAILED, RecipientState.DEFERRED


def enqueue(spool: FileSpool, envelope: Envelope, content: bytes = CONTENT) -> str:
    return asyncio.run(spool.enqueue(envelope, content))


def states(spool: FileSpool, qid: str) -> list[str]:
    entry = spool.get(qid)
    assert entry is not None
    return [r.state.value for r in entry.recipients]


def test_new_message_is_pending_and_due(spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    entry = spool.get(qid)
    assert entry is not None and entry.size == len(CONTENT)
    assert entry.envelope == envelope
    assert states(spool, qid) == ["pending", "pending"]
    assert spool.stats() == {"pending": 2, "deferred": 0, "delivered": 0, "failed": 0,
                             "held": 0}
    assert [e.qid for e in spool.claim_due(NOW, 10, 60)] == [qid]


def test_record_partial_then_final(spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    spool.claim_due(NOW, 10, 60)
    entry = spool.record(qid, [Outcome(0, D, reply(250, "2.0.0", "ok")),
                               Outcome(1, W, reply(451, "4.3.0", "later"), NOW + 600)])
    assert entry is not None and not entry.is_done
    r0, r1 = entry.recipients
    assert (r0.state, r0.attempts, r0.last_reply) == (D, 1, reply(250, "2.0.0", "ok"))
    assert (r1.state, r1.attempts, r1.next_attempt) == (W, 1, NOW + 600)
    assert spool.get(qid) == entry
    assert spool.claim_due(NOW, 10, 60) == []  # nothing due before NOW + 600
    [again] = spool.claim_due(NOW + 601, 10, 60)
    final = spool.record(qid, [Outcome(1, F, reply(550, "5.1.1", "no such user"))])
    assert final is not None and final.is_done
    assert final.recipients[1].attempts == 2
    assert spool.get(qid) is None
    assert not spool.layout.message_path(qid).exists()
    assert spool.record(qid, [Outcome(1, F, "x")]) is None
    with pytest.raises(StorageError):
        spool.open_content(qid)


def test_claim_is_bounded_and_in_due_order(spool: FileSpool) -> None:
    qids = [enqueue(spool, make_envelope(f"r{i}@example.net")) for i in range(6)]
    for i, qid in enumerate(qids):  # due times in reverse arrival order
        spool.claim_due(NOW, 100, 0.001)
        spool.record(qid, [Outcome(0, W, reply(451), NOW + 100 - i)])
    claimed = spool.claim_due(NOW + 1000, 4, 60)
    assert [e.qid for e in claimed] == list(reversed(qids))[:4]
    assert [e.qid for e in spool.claim_due(NOW + 1000, 4, 60)] == qids[:2][::-1]


def test_leased_entries_are_not_claimed_twice_until_the_lease_expires(
        spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    [entry] = spool.claim_due(NOW, 10, 60)
    assert not any(r.interrupted for r in entry.recipients)
    assert spool.claim_due(NOW + 59, 10, 60) == []
    [again] = spool.claim_due(NOW + 61, 10, 60)  # the lease expired: attempt lost
    assert all(r.interrupted for r in again.recipients)
    entry = spool.record(qid, [Outcome(0, W, reply(451), NOW),
                               Outcome(1, W, reply(451), NOW + 500)])
    assert entry is not None
    assert not any(r.interrupted for r in entry.recipients)


def test_release_lease_makes_it_claimable_without_interruption(
        spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    spool.claim_due(NOW, 10, 60)
    spool.release_lease(qid)
    [entry] = spool.claim_due(NOW, 10, 60)
    assert not any(r.interrupted for r in entry.recipients)


def _claim_and_die(root: str) -> None:
    s = FileSpool(root, "mx.example.org")  # type: ignore[arg-type]
    s.claim_due(time.time(), 10, 3600)
    os._exit(0)  # dies mid-delivery, no record()


def test_dead_owner_lease_is_reclaimed(spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_claim_and_die, args=(spool.layout.root,))
    proc.start()
    proc.join()
    assert proc.exitcode == 0
    # The hour-long lease is still running, but its owner is gone.
    [entry] = spool.claim_due(time.time(), 10, 60)
    assert entry.qid == qid
    assert all(r.interrupted for r in entry.recipients)


def test_sweep_releases_dead_owner_leases(spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_claim_and_die, args=(spool.layout.root,))
    proc.start()
    proc.join()
    assert spool.sweep().leases_released == 1
    entry = spool.get(qid)
    assert entry is not None and all(r.interrupted for r in entry.recipients)


def test_hold_and_release(spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    spool.claim_due(NOW, 10, 0.001)
    spool.record(qid, [Outcome(0, W, reply(451), NOW + 900)])
    assert spool.hold(qid)
    assert states(spool, qid) == ["held", "held"]
    assert spool.claim_due(NOW + 10_000, 10, 60) == []
    assert spool.stats()["held"] == 2
    assert spool.release(qid)
    entry = spool.get(qid)
    assert entry is not None
    assert [(r.state, r.next_attempt) for r in entry.recipients] == [
        (W, 0.0), (RecipientState.PENDING, 0.0)]  # due now
    assert [e.qid for e in spool.claim_due(NOW, 10, 60)] == [qid]
    assert not spool.hold("0000000000000000000") and not spool.release("nope")


def test_hold_during_an_attempt_keeps_deferred_recipients_held(
        spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    spool.claim_due(NOW, 10, 60)
    spool.hold(qid)
    entry = spool.record(qid, [Outcome(0, W, reply(451), NOW + 10), Outcome(1, D, reply(250))])
    assert entry is not None
    assert [r.state for r in entry.recipients] == [RecipientState.HELD, D]
    assert entry.recipients[0].attempts == 1


def test_flush(spool: FileSpool) -> None:
    a = enqueue(spool, make_envelope("a@example.net", "b@example.net"))
    b = enqueue(spool, make_envelope("c@example.net"))
    spool.claim_due(NOW, 10, 0.001)
    spool.record(a, [Outcome(0, W, reply(451), NOW + 900), Outcome(1, W, reply(451), NOW + 900)])
    spool.record(b, [Outcome(0, W, reply(451), NOW + 900)])
    assert spool.claim_due(NOW + 1, 10, 60) == []
    assert spool.flush(b) == 1
    assert [e.qid for e in spool.claim_due(NOW + 1, 10, 60)] == [b]
    assert spool.flush() == 3
    assert [e.qid for e in spool.claim_due(NOW + 1, 10, 60)] == [a]
    assert spool.flush("0000000000000000000") == 0


def test_delete(spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    other = enqueue(spool, envelope)
    assert spool.delete(qid)
    assert not spool.delete(qid)
    assert spool.get(qid) is None
    assert [e.qid for e in spool.list()] == [other]
    assert os.listdir(spool.layout.msg_dir) == [other]
    assert spool.stats()["pending"] == 2


def test_mark_delay_notified(spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    spool.mark_delay_notified(qid, [1])
    entry = spool.get(qid)
    assert entry is not None
    assert [r.delay_notified for r in entry.recipients] == [False, True]


def test_record_rejects_bad_outcomes(spool: FileSpool, envelope: Envelope) -> None:
    qid = enqueue(spool, envelope)
    with pytest.raises(StorageError):
        spool.record(qid, [Outcome(7, D, reply(250))])
    with pytest.raises(StorageError):
        spool.record(qid, [Outcome(0, RecipientState.HELD, "x")])
    assert states(spool, qid) == ["pending", "pending"]  # rolled back


def test_state_survives_reopening(tmp_path: os.PathLike[str], envelope: Envelope) -> None:
    root = tmp_path / "queue"  # type: ignore[operator]
    first = FileSpool(root, "mx.example.org")
    qid = enqueue(first, envelope)
    first.claim_due(NOW, 10, 60)
    first.record(qid, [Outcome(0, D, reply(250, "", "ok"))])
    second = FileSpool(root, "mx.example.org")
    assert second.sweep().indexed == 0
    assert states(second, qid) == ["delivered", "pending"]
    with second.open_content(qid) as f:
        assert f.read() == CONTENT
    first.close()
    second.close()


def test_free_bytes(spool: FileSpool) -> None:
    st = os.statvfs(spool.layout.root)
    assert abs(spool.free_bytes() - st.f_bavail * st.f_frsize) < 64 * 1024 * 1024


def test_purge_forgets_finished_messages_without_unlinking_them_twice(
        spool: FileSpool, envelope: Envelope, monkeypatch: pytest.MonkeyPatch) -> None:
    finished = enqueue(spool, envelope)
    spool.claim_due(NOW, 10, 60)
    spool.record(finished, [Outcome(0, D, reply(250, "2.0.0", "ok")),
                            Outcome(1, D, reply(250, "2.0.0", "ok"))])
    deleted = enqueue(spool, envelope)
    unlinked: list[str] = []
    real_unlink = os.unlink
    monkeypatch.setattr(os, "unlink", lambda path: (unlinked.append(str(path)),
                                                     real_unlink(path))[1])
    assert spool.delete(deleted)  # removes its file, then purges both tombstones
    assert unlinked == [str(spool.layout.message_path(deleted))]
    assert spool._r.index.tombstones(10) == []
    assert not spool.layout.message_path(finished).exists()

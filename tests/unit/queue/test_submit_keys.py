"""Submit keys (``Envelope.submit_key``): the index remembers which key was committed
under which queue id, after the message is delivered and removed, and after a crash
between the commit and the index insert (the sweep indexes the key from the record)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from test_queue_sweep import CONTENT, die, run_child

from mailyard.envelope import Envelope
from mailyard.queue.api import Outcome, RecipientState
from mailyard.queue.index import QueueIndex
from mailyard.queue.spool import FileSpool
from mailyard.queue.sweep import SUBMIT_KEY_SECONDS
from tests.support.envelopes import make_envelope
from tests.support.replies import reply


def keyed(key: str) -> Envelope:
    return dataclasses.replace(make_envelope("a@example.net"), submit_key=key)


def test_key_round_trips_in_the_envelope() -> None:
    env = keyed("campaign:1:2")
    assert Envelope.from_dict(env.to_dict()) == env
    assert "submit_key" not in make_envelope().to_dict()


def test_key_outlives_the_delivery(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path, "mx.example.org")
    qid = asyncio.run(spool.enqueue(keyed("campaign:1:2"), CONTENT))
    assert spool.submitted("campaign:1:2") == qid
    assert spool.submitted("campaign:1:3") is None
    spool.claim_due(time.time(), 10, 60)
    spool.record(qid, [Outcome(0, RecipientState.DELIVERED, reply(250, "2.0.0", "ok"))])
    spool.sweep()  # purges the finished message
    assert spool.get(qid) is None
    assert spool.submitted("campaign:1:2") == qid


def test_crash_before_the_index_insert_keeps_the_key(tmp_path: Path) -> None:
    def body(spool: FileSpool) -> None:
        QueueIndex.insert = die  # type: ignore[method-assign]
        asyncio.run(spool.enqueue(keyed("campaign:7:9"), CONTENT))

    run_child(tmp_path, body)
    spool = FileSpool(tmp_path, "mx.example.org")
    assert spool.submitted("campaign:7:9") is None  # committed, not indexed yet
    spool.sweep()
    [entry] = spool.list()
    assert spool.submitted("campaign:7:9") == entry.qid


def test_old_keys_are_forgotten_by_the_sweep(tmp_path: Path) -> None:
    long_ago = time.time() - SUBMIT_KEY_SECONDS - 60
    spool = FileSpool(tmp_path, "mx.example.org", clock=lambda: long_ago)
    asyncio.run(spool.enqueue(keyed("campaign:1:1"), CONTENT))
    assert spool.sweep().keys_forgotten == 1
    assert spool.submitted("campaign:1:1") is None


def test_gathered_commits_are_each_durable_and_keyed(tmp_path: Path) -> None:
    """``gather_commits`` (the campaign worker's spool): a burst of commits shares sync
    stages, and every message is on disk, indexed and its key known once its commit
    returns."""
    spool = FileSpool(tmp_path, "mx.example.org", gather_commits=True)

    async def burst() -> list[str]:
        return list(await asyncio.gather(*(spool.enqueue(keyed(f"campaign:1:{n}"), CONTENT)
                                           for n in range(20))))

    qids = asyncio.run(burst())
    assert [spool.submitted(f"campaign:1:{n}") for n in range(20)] == qids
    assert all((tmp_path / "msg" / qid).exists() for qid in qids)
    assert sorted(e.qid for e in spool.claim_due(time.time(), 100, 60)) == sorted(qids)
    spool.close()

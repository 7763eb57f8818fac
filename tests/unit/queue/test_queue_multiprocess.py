"""Several processes on one spool: two SMTP-worker-like producers commit while a
scheduler-like process claims and records, and an operator process reads the queue.
Every committed message is claimed exactly once and none is lost."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from mailyard.queue.api import Outcome, RecipientState
from mailyard.queue.spool import FileSpool
from tests.support.envelopes import make_envelope
from tests.support.replies import reply

PER_PRODUCER = 300
WRITERS = 10


def producer(root: Path, tag: str, conn) -> None:  # type: ignore[no-untyped-def]
    spool = FileSpool(root, "mx.example.org")

    async def writer(n: int) -> list[str]:
        qids = []
        for i in range(n):
            env = make_envelope(f"{tag}{i}@example.net", f"{tag}{i}b@example.net")
            w = spool.open_message(env)
            w.write(b"Subject: " + tag.encode() + b"\r\n\r\n" + os.urandom(512).hex().encode())
            qids.append(await w.commit())
        return qids

    async def main() -> list[str]:
        parts = await asyncio.gather(*(writer(PER_PRODUCER // WRITERS) for _ in range(WRITERS)))
        return [q for part in parts for q in part]

    conn.send(asyncio.run(main()))
    spool.close()


def scheduler(root: Path, producers_done, conn) -> None:  # type: ignore[no-untyped-def]
    spool = FileSpool(root, "mx.example.org")
    claimed: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        finished = producers_done.is_set()  # read before the claim: nothing may follow
        entries = spool.claim_due(time.time(), 37, 60)
        for entry in entries:
            claimed.append(entry.qid)
            with spool.open_content(entry.qid) as f:
                assert f.read().startswith(b"Subject: ")
            first = [Outcome(0, RecipientState.DELIVERED, reply(250, "", "ok"))]
            assert spool.record(entry.qid, first) is not None
            final = spool.record(entry.qid,
                                 [Outcome(1, RecipientState.FAILED, reply(550, "", "no"))])
            assert final is not None and final.is_done
        if not entries:
            if finished:
                break
            time.sleep(0.005)
    conn.send(claimed)
    spool.close()


def operator(root: Path, producers_done, conn) -> None:  # type: ignore[no-untyped-def]
    spool = FileSpool(root, "mx.example.org")
    listings = 0
    while not producers_done.is_set():
        for entry in spool.list():
            assert len(entry.recipients) == 2
        spool.stats()
        listings += 1
    conn.send(listings)


@pytest.mark.timeout(120)
def test_two_producers_one_scheduler(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    FileSpool(root, "mx.example.org").close()
    ctx = multiprocessing.get_context("fork")
    done = ctx.Event()
    pipes = [ctx.Pipe(duplex=False) for _ in range(4)]
    procs = [ctx.Process(target=producer, args=(root, "a", pipes[0][1])),
             ctx.Process(target=producer, args=(root, "b", pipes[1][1])),
             ctx.Process(target=scheduler, args=(root, done, pipes[2][1])),
             ctx.Process(target=operator, args=(root, done, pipes[3][1]))]
    for proc in procs:
        proc.start()
    committed = pipes[0][0].recv() + pipes[1][0].recv()
    done.set()
    claimed = pipes[2][0].recv()
    listings = pipes[3][0].recv()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert len(committed) == len(set(committed)) == 2 * PER_PRODUCER
    counts = Counter(claimed)
    assert set(counts) == set(committed)  # none lost, none invented
    assert max(counts.values()) == 1  # none claimed twice
    assert listings > 0
    spool = FileSpool(root, "mx.example.org")
    assert spool.list() == []
    report = spool.sweep()
    assert report.indexed == report.quarantined == report.lost_rows == 0
    assert os.listdir(spool.layout.msg_dir) == []

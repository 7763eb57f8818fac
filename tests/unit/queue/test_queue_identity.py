"""Queue ids and lease owner identities."""

from __future__ import annotations

import multiprocessing
import os
import time

from mailyard.queue.identity import (
    QID_LENGTH,
    ProcessIdentity,
    QueueIdGenerator,
    is_qid,
    owner_is_dead,
    qid_time,
)


def test_qids_are_short_safe_sorted_and_unique() -> None:
    gen = QueueIdGenerator()
    before = time.time()
    qids = [gen.next() for _ in range(10_000)]
    assert len(set(qids)) == len(qids)
    assert qids == sorted(qids)
    assert all(len(q) == QID_LENGTH <= 20 and is_qid(q) and q.isalnum() for q in qids)
    assert before - 1 <= qid_time(qids[0]) <= time.time() + 1


def _child_qids(conn) -> None:  # type: ignore[no-untyped-def]
    conn.send([GEN.next() for _ in range(1000)])


GEN = QueueIdGenerator()


def test_forked_processes_get_distinct_qids() -> None:
    parent = [GEN.next() for _ in range(1000)]
    ctx = multiprocessing.get_context("fork")
    a, b = ctx.Pipe()
    proc = ctx.Process(target=_child_qids, args=(b,))
    proc.start()
    child = a.recv()
    proc.join()
    assert not set(parent) & set(child)
    assert {q[-8:] for q in parent} != {q[-8:] for q in child}  # another nonce


def test_current_process_is_alive() -> None:
    me = ProcessIdentity.current()
    assert ProcessIdentity.parse(me.token) == me
    assert not owner_is_dead(me.token)


def test_exited_process_is_dead() -> None:
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=os._exit, args=(0,))
    proc.start()
    pid = proc.pid
    assert pid is not None
    start = ProcessIdentity.current().start  # any value: the pid is gone after join
    proc.join()
    me = ProcessIdentity.current()
    assert owner_is_dead(f"{me.boot}-{pid}-{start}")


def test_reused_pid_and_other_boot_are_dead() -> None:
    me = ProcessIdentity.current()
    assert owner_is_dead(f"{me.boot}-{me.pid}-{me.start + 12345}")  # same pid, other process
    assert owner_is_dead(f"0000deadbeef-{me.pid}-{me.start}")  # before a reboot


def test_unparsable_owner_is_not_declared_dead() -> None:
    assert not owner_is_dead("some-other-machine-lease")

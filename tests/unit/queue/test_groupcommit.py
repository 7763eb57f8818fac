"""GroupCommit ordering with fake stages: file stages run side by side, a batch's
sync stage only ever holds commits whose file stage had finished before it started,
sync stages never overlap, the next batch's file stages go on during a sync stage,
and a commit is answered only after the sync stage that covered it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailyard.queue.groupcommit import GATHER_MAX, GroupCommit

WAIT = 10  # seconds before a gate counts as a deadlock (never reached when correct)


class Recorder:
    """The fake stages: every event in one list, in the order the threads ran them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.in_sync = 0
        self.overlapping_syncs = 0
        self.batches: list[list[int]] = []
        self.sync_gate: threading.Event | None = None  # holds up the first sync stage
        self.sync_entered = threading.Event()
        self.fail_sync = False

    def add(self, kind: str, n: int) -> None:
        with self.lock:
            self.events.append((kind, n))

    def file_stage(self, n: int, before: Callable[[], None] = lambda: None,
                   fail: bool = False) -> Callable[[], None]:
        def run() -> None:
            self.add("file-start", n)
            before()
            if fail:
                raise OSError(f"file {n} failed")
            self.add("file-done", n)
        return run

    def sync(self, items: list[int]) -> None:
        with self.lock:
            self.in_sync += 1
            self.overlapping_syncs += self.in_sync > 1
            self.events.append(("sync-start", len(self.batches)))
            self.batches.append(list(items))
        self.sync_entered.set()
        gate, self.sync_gate = self.sync_gate, None
        if gate is not None:
            assert gate.wait(WAIT)
        with self.lock:
            self.in_sync -= 1
        if self.fail_sync:
            raise OSError("directory fsync failed")

    def position(self, kind: str, n: int) -> int:
        return self.events.index((kind, n))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def group(recorder: Recorder) -> GroupCommit[int]:
    files = ThreadPoolExecutor(2)
    g: GroupCommit[int] = GroupCommit(files, recorder.sync, threads=3)
    yield g
    files.shutdown()
    g.close()


def test_file_stages_of_concurrent_commits_run_side_by_side(
        group: GroupCommit[int], recorder: Recorder) -> None:
    barrier = threading.Barrier(3, timeout=WAIT)  # broken unless three wait at once

    async def main() -> None:
        await asyncio.gather(*(group.submit(n, recorder.file_stage(n, barrier.wait))
                               for n in range(3)))

    asyncio.run(main())
    assert sorted(n for batch in recorder.batches for n in batch) == [0, 1, 2]


def test_a_batch_holds_only_commits_whose_file_stage_had_finished(
        group: GroupCommit[int], recorder: Recorder) -> None:
    answered: list[int] = []

    async def commit(n: int) -> None:
        await group.submit(n, recorder.file_stage(n))
        recorder.add("answered", n)
        answered.append(n)

    async def main() -> None:
        await asyncio.gather(*(commit(n) for n in range(60)))

    asyncio.run(main())
    assert sorted(answered) == list(range(60))
    assert recorder.overlapping_syncs == 0
    seen = [n for batch in recorder.batches for n in batch]
    assert sorted(seen) == list(range(60))  # each commit in exactly one batch
    for b, batch in enumerate(recorder.batches):
        sync_start = recorder.position("sync-start", b)
        for n in batch:
            assert recorder.position("file-done", n) < sync_start
            assert sync_start < recorder.position("answered", n)


def test_file_stages_go_on_during_a_sync_stage_and_join_the_next_batch(
        group: GroupCommit[int], recorder: Recorder) -> None:
    gate = threading.Event()
    recorder.sync_gate = gate

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = group.submit(0, recorder.file_stage(0))
        assert await loop.run_in_executor(None, recorder.sync_entered.wait, WAIT)
        done = [threading.Event() for _ in range(5)]
        rest = [group.submit(n, recorder.file_stage(n, after(done[n - 1])))
                for n in range(1, 6)]
        for event in done:  # every file stage finishes while the first sync is held
            assert await loop.run_in_executor(None, event.wait, WAIT)
        assert not first.done() and not any(f.done() for f in rest)
        gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    # Which commit thread joins first is not fixed: one batch, any order inside it.
    assert [sorted(batch) for batch in recorder.batches] == [[0], [1, 2, 3, 4, 5]]
    assert sorted(recorder.batches[1]) == [1, 2, 3, 4, 5]


def after(event: threading.Event) -> Callable[[], None]:
    """A ``before`` hook that reports the file stage as reached (it then finishes)."""
    return event.set


def test_a_failed_file_stage_fails_only_its_commit(
        group: GroupCommit[int], recorder: Recorder) -> None:
    async def main() -> list[object]:
        return await asyncio.gather(
            *(group.submit(n, recorder.file_stage(n, fail=n == 2)) for n in range(5)),
            return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[2], OSError)
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 4
    assert 2 not in [n for batch in recorder.batches for n in batch]


def test_a_failed_sync_stage_fails_its_whole_batch(
        group: GroupCommit[int], recorder: Recorder) -> None:
    recorder.fail_sync = True

    async def main() -> list[object]:
        return await asyncio.gather(
            *(group.submit(n, recorder.file_stage(n)) for n in range(4)),
            return_exceptions=True)

    assert all(isinstance(r, OSError) for r in asyncio.run(main()))


def test_slow_file_stages_run_in_the_file_pool_and_join_a_batch(
        group: GroupCommit[int], recorder: Recorder) -> None:
    names: list[str] = []

    def note_thread() -> None:
        names.append(threading.current_thread().name)

    async def main() -> None:
        await asyncio.gather(group.submit(0, recorder.file_stage(0, note_thread), slow=True),
                             group.submit(1, recorder.file_stage(1, note_thread)))

    asyncio.run(main())
    assert sorted(n for batch in recorder.batches for n in batch) == [0, 1]
    assert len(names) == 2 and sum(n.startswith("spool-commit") for n in names) == 1


def test_close_finishes_what_was_submitted(recorder: Recorder) -> None:
    files = ThreadPoolExecutor(1)
    group: GroupCommit[int] = GroupCommit(files, recorder.sync, threads=2)

    async def main() -> None:
        futures = [group.submit(n, recorder.file_stage(n)) for n in range(10)]
        await asyncio.gather(*futures)
        group.close()
        with pytest.raises(RuntimeError):
            group.submit(10, recorder.file_stage(10))

    asyncio.run(main())
    files.shutdown()
    assert sorted(n for batch in recorder.batches for n in batch) == list(range(10))


def test_a_ready_commit_waits_for_file_stages_under_way(
        group: GroupCommit[int], recorder: Recorder) -> None:
    """Commits 0 and 1 finish their file stages while 2's is still under way: one batch
    holds all three (one directory fsync instead of two or three)."""
    started = threading.Barrier(3, timeout=WAIT)
    two_may_finish = threading.Event()

    def first_two() -> None:
        started.wait()

    def third() -> None:
        started.wait()
        assert two_may_finish.wait(WAIT)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = [group.submit(0, recorder.file_stage(0, first_two)),
                   group.submit(1, recorder.file_stage(1, first_two)),
                   group.submit(2, recorder.file_stage(2, third))]
        while sum(e[0] == "file-done" for e in recorder.events) < 2:
            await loop.run_in_executor(None, threading.Event().wait, 0.001)
        two_may_finish.set()
        await asyncio.gather(*futures)

    asyncio.run(main())
    assert [sorted(b) for b in recorder.batches] == [[0, 1, 2]]


def test_a_full_batch_does_not_wait_for_a_file_stage_under_way(
        recorder: Recorder) -> None:
    """Three commit threads, one file stage held up: as soon as three other commits
    are ready (a full batch) they are synced and answered."""
    files = ThreadPoolExecutor(1)
    group: GroupCommit[int] = GroupCommit(files, recorder.sync, threads=3)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        held.set()
        assert release.wait(WAIT)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        slow = group.submit(0, recorder.file_stage(0, hold))
        assert await loop.run_in_executor(None, held.wait, WAIT)
        await asyncio.gather(*(group.submit(n, recorder.file_stage(n)) for n in (1, 2, 3)))
        assert not slow.done()
        release.set()
        await slow

    asyncio.run(main())
    files.shutdown()
    group.close()
    assert 0 not in recorder.batches[0] and sorted(recorder.batches[-1]) == [0]


def _burst(recorder: Recorder, count: int, *, gather: bool) -> None:
    """``count`` commits submitted at once to one commit thread, the first file stage
    held until all are submitted."""
    files = ThreadPoolExecutor(1)
    group: GroupCommit[int] = GroupCommit(files, recorder.sync, threads=1, gather=gather)
    all_submitted = threading.Event()

    def first() -> None:
        assert all_submitted.wait(WAIT)

    async def main() -> None:
        futures = [group.submit(n, recorder.file_stage(n, first if n == 0 else lambda: None))
                   for n in range(count)]
        all_submitted.set()
        await asyncio.gather(*futures)

    asyncio.run(main())
    files.shutdown()
    group.close()


def test_gather_syncs_a_burst_of_commits_once(recorder: Recorder) -> None:
    """With ``gather``, commits waiting for a commit thread join the batch of those
    ready: five commits submitted together, one sync stage, after every file stage."""
    _burst(recorder, 5, gather=True)
    assert recorder.batches == [[0, 1, 2, 3, 4]]
    assert recorder.position("sync-start", 0) > recorder.position("file-done", 4)


def test_without_gather_a_ready_commit_does_not_wait_for_waiting_ones(
        recorder: Recorder) -> None:
    """The default: a commit is synced as soon as no file stage is under way, even if
    others wait for a commit thread (their submitter waits for an answer)."""
    _burst(recorder, 5, gather=False)
    assert recorder.batches[0] == [0] and len(recorder.batches) > 1


def test_gather_syncs_a_full_batch_without_waiting_for_the_rest(recorder: Recorder) -> None:
    """A burst larger than GATHER_MAX is synced GATHER_MAX commits at a time."""
    _burst(recorder, GATHER_MAX + 3, gather=True)
    assert [len(b) for b in recorder.batches] == [GATHER_MAX, 3]
    assert sorted(n for b in recorder.batches for n in b) == list(range(GATHER_MAX + 3))

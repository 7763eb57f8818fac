"""LocalBatcher: the local deliveries asked for in one pass of the event loop go to
the delivery threads in at most ``threads`` batches, each message's results come
back to its own caller, and one failing message fails only its own delivery."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from mailyard.delivery.local_batch import LocalBatcher


class FakeAgent:
    """deliver_many answers with the entry's name per recipient, noting the thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def deliver_many(self, entry: Any, recipients: Any, open_content: Any) -> list[str]:
        with self.lock:
            self.calls.append((entry, threading.current_thread().name))
        if entry == "bad":
            raise OSError("store failed")
        return [f"{entry}:{r}" for r in recipients]


class CountingPool(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(4, thread_name_prefix="local-delivery")
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def pool() -> CountingPool:
    p = CountingPool()
    yield p
    p.shutdown()


def test_one_pass_of_deliveries_goes_out_in_at_most_threads_batches(pool: CountingPool) -> None:
    agent = FakeAgent()
    batcher = LocalBatcher(agent, pool, threads=3)  # type: ignore[arg-type]

    async def main() -> list[Any]:
        futures = [batcher.deliver(f"m{i}", ["a", "b"], lambda: None)  # type: ignore[arg-type]
                   for i in range(10)]
        return await asyncio.gather(*futures)

    results = asyncio.run(main())
    assert results == [[f"m{i}:a", f"m{i}:b"] for i in range(10)]
    assert pool.submitted == batcher.batches == 3
    assert sorted(e for e, _ in agent.calls) == sorted(f"m{i}" for i in range(10))


def test_deliveries_of_later_passes_make_batches_of_their_own(pool: CountingPool) -> None:
    agent = FakeAgent()
    batcher = LocalBatcher(agent, pool, threads=8)  # type: ignore[arg-type]

    async def main() -> None:
        assert await batcher.deliver("first", ["a"], lambda: None) == ["first:a"]  # type: ignore[arg-type]
        assert await batcher.deliver("second", ["a"], lambda: None) == ["second:a"]  # type: ignore[arg-type]

    asyncio.run(main())
    assert pool.submitted == 2


def test_a_failing_delivery_fails_only_its_own_caller(pool: CountingPool) -> None:
    agent = FakeAgent()
    batcher = LocalBatcher(agent, pool, threads=1)  # type: ignore[arg-type]

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(batcher.deliver(name, ["a"], lambda: None)  # type: ignore[arg-type]
              for name in ("ok1", "bad", "ok2")),
            return_exceptions=True)

    ok1, bad, ok2 = asyncio.run(main())
    assert ok1 == ["ok1:a"] and ok2 == ["ok2:a"]
    assert isinstance(bad, OSError)
    assert [e for e, _ in agent.calls] == ["ok1", "bad", "ok2"]  # one batch, in order


def test_a_stopped_pool_fails_the_deliveries_instead_of_hanging() -> None:
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    batcher = LocalBatcher(FakeAgent(), pool, threads=2)  # type: ignore[arg-type]

    async def main() -> None:
        with pytest.raises(RuntimeError):
            await batcher.deliver("m", ["a"], lambda: None)  # type: ignore[arg-type]

    asyncio.run(main())


def test_before_batch_runs_once_per_batch_in_its_thread(pool: CountingPool) -> None:
    agent = FakeAgent()
    refreshed: list[str] = []

    def refresh() -> None:
        refreshed.append(threading.current_thread().name)
        if len(refreshed) == 1:
            raise OSError("database is locked")  # the batch goes on all the same

    batcher = LocalBatcher(agent, pool, threads=2, before_batch=refresh)  # type: ignore[arg-type]

    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.deliver(f"m{i}", ["a"], lambda: None)  # type: ignore[arg-type]
                                      for i in range(6)))

    assert asyncio.run(main()) == [[f"m{i}:a"] for i in range(6)]
    assert len(refreshed) == 2
    assert set(refreshed) <= {name for _, name in agent.calls}

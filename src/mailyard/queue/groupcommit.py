"""Group commit: one blocking job covers every request made before it started.

Many SMTP sessions in one process commit at the same time.  Each has already written,
fsync'd and renamed its own message file (those run in parallel in a thread pool);
what remains is the directory fsync that makes the renames durable, and the index
insert.  Doing those once per message would serialise every commit on one disk
flush; here, a request joins the *next* batch, a batch starts as soon as the previous
one finished, and every request in a batch is answered when its job has run.  Since a
request only joins after its rename is done, the directory fsync of its batch (which
starts later) covers that rename.  Under load a batch holds every commit that arrived
during the previous flush; when idle, a lone commit starts its own batch at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Batch(Generic[T]):
    done: asyncio.Future[None]
    items: list[T] = field(default_factory=list)


class GroupCommit(Generic[T]):
    """Runs ``job(items)`` in ``executor``, one batch at a time, for one event loop
    (a new loop, e.g. another ``asyncio.run``, starts afresh)."""

    def __init__(self, executor: Executor, job: Callable[[list[T]], None]) -> None:
        self._executor = executor
        self._job = job
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._next: _Batch[T] | None = None
        self.batches = 0  # for tests and benchmarks: how many jobs ran

    async def submit(self, item: T) -> None:
        """Wait until a job that started after this call has processed ``item``.
        Cancelling the caller does not cancel the job (other requests share it)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._running, self._next = loop, False, None
        if self._next is None:
            self._next = _Batch(loop.create_future())
            self._next.done.add_done_callback(_consume_exception)
        batch = self._next
        batch.items.append(item)
        if not self._running:
            self._start(loop)
        await asyncio.shield(batch.done)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._next = self._next, None
        assert batch is not None
        self._running = True
        self.batches += 1
        work = loop.run_in_executor(self._executor, self._job, batch.items)
        work.add_done_callback(lambda f: self._finished(loop, batch, f))

    def _finished(self, loop: asyncio.AbstractEventLoop, batch: _Batch[T],
                  work: asyncio.Future[None]) -> None:
        self._running = False
        exc = work.exception() if not work.cancelled() else asyncio.CancelledError()
        if exc is None:
            batch.done.set_result(None)
        else:
            batch.done.set_exception(exc)
        if self._next is not None and self._loop is loop:
            self._start(loop)


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True)
class CommitStages(Generic[T]):
    """The two group-commit stages of a message commit: the directory fsync, then the
    index insert.  Separate threads, so consecutive batches overlap."""

    directory: GroupCommit[T]
    index: GroupCommit[T]

    @property
    def batches(self) -> int:
        return self.directory.batches

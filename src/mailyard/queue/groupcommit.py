"""Group commit: the blocking half of a message commit, with one event-loop hop per batch.

A commit has two stages.  The *file stage* is per message: write the rest of the
record, fdatasync, close, rename into ``msg/``.  These run in parallel in a small
thread pool (the disk serves concurrent flushes much faster than one at a time).  The
*sync stage* is shared: fsync the ``msg/`` directory once, so every rename before it
is durable, then insert the messages into the index in one transaction.

A message goes straight from its file thread to the sync stage, without a detour
through the event loop.  A single sync thread takes every message whose file stage
has finished, runs the sync stage for them all, and answers them with one call into
their event loop.  While it works, finished files pile up for the next batch, so
under load a batch holds every commit that finished during the previous flush; when
idle, a lone commit is synced at once.  Since a message joins only after its rename,
the directory fsync of its batch (which starts later) covers that rename.

Each commit costs the event loop one hand-off to the pool, and each batch one wake-up;
thread switches and interpreter-lock hand-overs, not the disk, were what the earlier
three-hop design (file, directory, index: each a round trip through the loop) spent
its time on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class PendingCommit(Generic[T]):
    """One message on its way through the two stages."""

    item: T
    finish_file: Callable[[], None]  # the file stage; raises on failure
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]


class GroupCommit(Generic[T]):
    """Runs ``finish_file`` of each commit in ``files``, then ``sync(items)`` for every
    batch of finished commits in ``sync_executor`` (one thread, one batch at a time)."""

    def __init__(self, files: Executor, sync_executor: Executor,
                 sync: Callable[[list[T]], None]) -> None:
        self._files = files
        self._sync_executor = sync_executor
        self._sync = sync
        self._lock = threading.Lock()
        self._ready: list[PendingCommit[T]] = []
        self._syncing = False
        self.batches = 0  # for tests and benchmarks: how many sync stages ran

    def submit(self, item: T, finish_file: Callable[[], None]) -> asyncio.Future[None]:
        """Start committing ``item``; the future is done once its batch's sync stage
        ran (or carries the error).  Cancelling it does not stop the commit."""
        loop = asyncio.get_running_loop()
        pending = PendingCommit(item, finish_file, loop, loop.create_future())
        pending.done.add_done_callback(_consume_exception)
        self._files.submit(self._file_stage, pending)
        return pending.done

    def _file_stage(self, pending: PendingCommit[T]) -> None:
        try:
            pending.finish_file()
        except BaseException as exc:  # answered to the committing coroutine, which raises it
            _answer([pending], exc)
            return
        with self._lock:
            self._ready.append(pending)
            if self._syncing:
                return
            self._syncing = True
        self._sync_executor.submit(self._drain)

    def _drain(self) -> None:
        """The sync thread: one batch after another until nothing is ready."""
        while True:
            with self._lock:
                batch, self._ready = self._ready, []
                if not batch:
                    self._syncing = False
                    return
            self.batches += 1
            error: BaseException | None = None
            try:
                self._sync([p.item for p in batch])
            except BaseException as exc:  # answered to every commit of the batch
                error = exc
            _answer(batch, error)


def _answer(batch: list[PendingCommit[T]], error: BaseException | None) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for pending in batch:
        by_loop.setdefault(pending.loop, []).append(pending.done)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures, error)
        except RuntimeError:
            pass  # that event loop is closed: nobody waits any more


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()

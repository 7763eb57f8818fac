"""Group commit: the blocking half of a message commit, with one event-loop hop per batch.

A commit has two stages.  The *file stage* is per message: write the rest of the
record, fdatasync, close, rename into ``msg/``.  The *sync stage* is shared: fsync the
``msg/`` directory once, so every rename before it is durable, then insert the
messages into the index in one transaction.

One sync thread does the work.  It takes every commit that is ready, runs the file
stage of each small one itself (in line, one after the other), then the sync stage for
them all, and answers them with one call into their event loop.  While it works, new
commits pile up for the next batch, so under load a batch holds every commit that
arrived during the previous one; when idle, a lone commit is synced at once.  The
file stage of a large message (one already streamed to its temporary file, so its
flush takes long) runs in a small thread pool instead, so it holds up nobody, and joins
the next batch when done.  Either way a message joins a batch only after its rename,
so the directory fsync of its batch covers that rename.

Why small messages are finished in line rather than in a pool of threads, in parallel:
each hand-over between threads costs a wake-up and a contended interpreter lock, and
that, not the disk, was what commits spent their time on (CPU per accepted message
fell by a fifth, throughput rose; see the commit history).  Each commit costs the event
loop one hand-over to the sync thread (none while it is busy anyway) and each batch
one wake-up of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    file_done: bool = False


class GroupCommit(Generic[T]):
    """Runs the file stage of each commit (in line in the sync thread, or in ``files``
    when asked), then ``sync(items)`` once per batch in ``sync_executor`` (one thread,
    one batch at a time)."""

    def __init__(self, files: Executor, sync_executor: Executor,
                 sync: Callable[[list[T]], None]) -> None:
        self._files = files
        self._sync_executor = sync_executor
        self._sync = sync
        self._lock = threading.Lock()
        self._ready: list[PendingCommit[T]] = []
        self._syncing = False
        self.batches = 0  # for tests and benchmarks: how many sync stages ran

    def submit(self, item: T, finish_file: Callable[[], None], *,
               slow: bool = False) -> asyncio.Future[None]:
        """Start committing ``item``; the future is done once its batch's sync stage
        ran (or carries the error).  ``slow``: run the file stage in the pool (a large
        file to flush).  Cancelling the future does not stop the commit."""
        loop = asyncio.get_running_loop()
        pending = PendingCommit(item, finish_file, loop, loop.create_future())
        pending.done.add_done_callback(_consume_exception)
        if slow:
            self._files.submit(self._file_stage, pending)
        else:
            self._join(pending)
        return pending.done

    def _file_stage(self, pending: PendingCommit[T]) -> None:
        if _finish(pending):
            self._join(pending)

    def _join(self, pending: PendingCommit[T]) -> None:
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
                ready, self._ready = self._ready, []
                if not ready:
                    self._syncing = False
                    return
            batch = [p for p in ready if p.file_done or _finish(p)]
            if not batch:
                continue
            self.batches += 1
            error: BaseException | None = None
            try:
                self._sync([p.item for p in batch])
            except BaseException as exc:  # answered to every commit of the batch
                error = exc
            _answer(batch, error)


def _finish(pending: PendingCommit[T]) -> bool:
    """Run the file stage; a failure is answered at once (the others go on)."""
    try:
        pending.finish_file()
    except BaseException as exc:  # answered to the committing coroutine, which raises it
        _answer([pending], exc)
        return False
    pending.file_done = True
    return True


def _answer(batch: list[PendingCommit[T]], error: BaseException | None) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for pending in batch:
        by_loop.setdefault(pending.loop, []).append(pending.done)
    for loop, futures in by_loop.items():
        # RuntimeError: that event loop is closed, nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, futures, error)


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

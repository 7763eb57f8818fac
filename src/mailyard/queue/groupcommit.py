"""Group commit: the blocking half of a message commit, several in flight at once.

A commit has two stages.  The *file stage* is per message: write the rest of the
record, fdatasync, close, rename into ``msg/``.  The *sync stage* is shared: fsync the
``msg/`` directory once, so every rename before it is durable, then insert the
messages into the index in one transaction.

Why file stages run in parallel: the commit of a small message is bound by disk
latency, not CPU.  One fdatasync of a fresh 2 KB file costs about 1.3 ms on a virtio
disk when done one after the other (so one thread commits at most ~800 messages/s),
while several threads doing it at once share the file system's journal commits (2, 4
and 8 threads: about 3.2x, 4.1x and 6.8x the files per second).  So a few commit
threads (``threads``, created when first needed) take the file stages of waiting
commits, each thread one at a time, and the disk sees several requests at once.
How many is the spool's choice (``queue.spool.COMMIT_THREADS``): a journaled file
system merges flushes that arrive together into one journal commit, so more of them
in flight lifts the accept rate there (bench/README.md).

Why the sync stage needs no thread of its own: the thread that finishes a file stage
appends the commit to the *ready* list and, when no sync stage is running, runs one
itself for everything ready, again and again until the list is empty.  Meanwhile the
other threads go on with file stages, so a batch's directory fsync and index insert
overlap the next batch's file stages, and under load a batch holds every commit that
became ready during the previous one.  One sync stage at a time (one index
connection, one transaction per batch).  A commit joins the ready list only after its
rename, so the directory fsync of its batch, which starts later, covers that rename.

Hand-overs between threads cost CPU (a wake-up, a contended interpreter lock), so
there are few: a commit wakes an idle commit thread only when one is idle (a busy
thread takes the next waiting commit without one); each batch costs one wake-up per
event loop that waits on it.  A message already streamed to its temporary file (a
large one, whose flush takes long) runs its file stage in ``files`` instead, so it
holds up no commit thread, and joins the ready list the same way.

A producer that commits many messages at once and answers nobody while they wait (the
campaign worker) asks for ``gather``: a sync stage then also waits for the commits
submitted but not started yet, up to ``GATHER_MAX`` ready ones, so a burst of commits
shares one directory fsync, one index transaction and one wake-up of the event loop
instead of one per ``threads`` commits.  Durability is the same: a commit is still
answered only after the sync stage that covers its rename.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: With ``gather``, the most ready commits a sync stage waits for.
GATHER_MAX = 64


@dataclass
class PendingCommit(Generic[T]):
    """One message on its way through the two stages."""

    item: T
    finish_file: Callable[[], None]  # the file stage; raises on failure
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]


class GroupCommit(Generic[T]):
    """Runs the file stage of each commit in one of ``threads`` commit threads (or in
    ``files`` when asked), then ``sync(items)`` once per batch of ready commits, never
    two at once."""

    def __init__(self, files: Executor, sync: Callable[[list[T]], None], *,
                 threads: int, name: str = "spool-commit", gather: bool = False) -> None:
        self._files = files
        self._sync = sync
        self._max_threads = max(1, threads)
        self._gather = gather
        self._full_batch = GATHER_MAX if gather else self._max_threads
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._waiting: deque[PendingCommit[T]] = deque()  # file stage not started
        self._ready: list[PendingCommit[T]] = []  # renamed, waiting for a sync stage
        self._threads: list[threading.Thread] = []
        self._idle = 0  # commit threads asleep and not yet woken
        self._running = 0  # file stages under way in the commit threads
        self._syncing = False
        self._closed = False
        self.batches = 0  # for tests and benchmarks: how many sync stages ran

    def submit(self, item: T, finish_file: Callable[[], None], *,
               slow: bool = False) -> asyncio.Future[None]:
        """Start committing ``item``; the future is done once its batch's sync stage
        ran (or carries the error).  ``slow``: run the file stage in ``files`` (a large
        file to flush).  Cancelling the future does not stop the commit."""
        loop = asyncio.get_running_loop()
        pending = PendingCommit(item, finish_file, loop, loop.create_future())
        pending.done.add_done_callback(_consume_exception)
        if slow:
            self._files.submit(self._file_stage, pending)
            return pending.done
        with self._cond:
            if self._closed:
                raise RuntimeError("group commit closed")
            self._waiting.append(pending)
            if self._idle:
                self._idle -= 1  # this one is taken: the next commit wakes another
                self._cond.notify()
            elif len(self._threads) < self._max_threads:
                self._start_thread()
        return pending.done

    def close(self) -> None:
        """Let the commit threads finish what was submitted, then stop them."""
        with self._cond:
            self._closed = True
            self._idle = 0
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, daemon=True,
                                  name=f"{self._name}-{len(self._threads)}")
        self._threads.append(thread)
        thread.start()

    def _run(self) -> None:
        """A commit thread: file stages one after another, a sync stage when due."""
        while True:
            with self._cond:
                while not self._waiting:
                    if self._closed:
                        return
                    self._idle += 1
                    self._cond.wait()
                pending = self._waiting.popleft()
                self._running += 1
            self._file_stage(pending, counted=True)

    def _file_stage(self, pending: PendingCommit[T], counted: bool = False) -> None:
        failed: BaseException | None = None
        try:
            pending.finish_file()
        except BaseException as exc:  # answered to the committing coroutine, which raises it
            failed = exc
        with self._cond:
            self._running -= counted
            if failed is None:
                self._ready.append(pending)
            # Otherwise the running sync stage, or a file stage under way, takes it.
            sync_now = not self._syncing and self._batch_due()
            self._syncing = self._syncing or sync_now
        if failed is not None:
            _answer([pending], failed)
        if sync_now:
            self._sync_ready()

    def _batch_due(self) -> bool:
        """Whether the ready commits should be synced now rather than after the file
        stages under way (which end within one flush and join the batch) and, with
        ``gather``, the ones waiting for a commit thread; a full batch goes at once, so
        a steady stream cannot hold a commit up for longer."""
        if not self._ready:
            return False
        if len(self._ready) >= self._full_batch:
            return True
        return not self._running and not (self._gather and self._waiting)

    def _sync_ready(self) -> None:
        """Sync stages while a batch is due (only one thread at a time runs this)."""
        while True:
            with self._cond:
                if not self._batch_due():
                    self._syncing = False
                    return
                batch, self._ready = self._ready, []
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

"""Local deliveries handed to the delivery threads in batches, not one by one.

A claim round starts a task per queued message; for a message with local recipients
each task used to make its own trip into the ``local-delivery`` thread pool and back
(a wake-up of a pool thread, then one of the event loop, and the interpreter lock
passed around for both).  For small messages those trips cost about as much CPU as
the delivery itself.  :class:`LocalBatcher` collects the deliveries asked for during
one pass of the event loop (a claim round's tasks all ask in the same pass), splits
them into at most ``threads`` batches, and runs each batch in one pool thread, one
message after the other; the results of a batch come back to the loop in one call.

Why several batches and not one: each Maildir file is fsynced before its rename, and
one thread can only wait for one fsync at a time; batches in parallel keep several in
flight (the ``new/`` directory fsyncs of concurrent deliveries are shared, see
:class:`~mailyard.fs.DirectorySyncer`).  A delivery's result is reported only after
its own copy is durable, exactly as when it ran alone.

``before_batch`` runs in the thread before each batch: the dispatcher passes the
directory's ``refresh``, so the directory looks for changes (``PRAGMA data_version``)
once per batch in each thread instead of at every lookup; a user added before a
message was queued is seen by its delivery.  If the refresh fails, the batch goes on:
a lookup that misses the cache asks the database and reports its error itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import BinaryIO

from mailyard.delivery.local import LocalDeliveryAgent, LocalDeliveryResult
from mailyard.queue.api import QueuedRecipient, QueueEntry

Results = list[LocalDeliveryResult]


@dataclass
class _Job:
    entry: QueueEntry
    recipients: Sequence[QueuedRecipient]
    open_content: Callable[[], BinaryIO]
    done: asyncio.Future[Results]


class LocalBatcher:
    """``deliver`` is :meth:`LocalDeliveryAgent.deliver_many`, awaited on the event
    loop, run in ``executor`` (at most ``threads`` batches at a time per loop pass)."""

    def __init__(self, agent: LocalDeliveryAgent, executor: Executor, threads: int, *,
                 before_batch: Callable[[], None] = lambda: None) -> None:
        self.agent = agent
        self.before_batch = before_batch
        self.executor = executor
        self.threads = max(1, threads)
        self._jobs: list[_Job] = []
        self.batches = 0  # for tests and benchmarks: batches handed to the pool

    def deliver(self, entry: QueueEntry, recipients: Sequence[QueuedRecipient],
                open_content: Callable[[], BinaryIO]) -> asyncio.Future[Results]:
        loop = asyncio.get_running_loop()
        job = _Job(entry, recipients, open_content, loop.create_future())
        if not self._jobs:
            loop.call_soon(self._flush, loop)  # after every task ready in this pass
        self._jobs.append(job)
        return job.done

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs, self._jobs = self._jobs, []
        n = min(len(jobs), self.threads)
        for i in range(n):
            batch = jobs[i::n]  # round robin: the round's messages spread evenly
            self.batches += 1
            try:
                self.executor.submit(self._run, loop, batch)
            except RuntimeError as exc:  # the pool is shut down: the server is stopping
                _resolve([(job.done, exc) for job in batch])

    def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Job]) -> None:
        """In a delivery thread: the batch's messages one after the other."""
        outcomes: list[tuple[asyncio.Future[Results], Results | BaseException]] = []
        with contextlib.suppress(Exception):  # see the module docstring
            self.before_batch()
        for job in batch:
            try:
                outcome: Results | BaseException = self.agent.deliver_many(
                    job.entry, job.recipients, job.open_content)
            except Exception as exc:  # the task awaiting it raises it
                outcome = exc
            outcomes.append((job.done, outcome))
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(_resolve, outcomes)


def _resolve(outcomes: list[tuple[asyncio.Future[Results], Results | BaseException]]) -> None:
    for future, outcome in outcomes:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

"""Recording delivery outcomes in batches.

Every finished queue entry ends with an index update (attempt results, postponed
recipients, the lease given up) and, when all its recipients are final, the removal of
its file.  Done one entry at a time, that is an SQLite transaction (which may wait for
an SMTP worker's insert to finish) and a thread hand-off per message.  The
:class:`OutcomeRecorder` instead batches them: entries that finish while one batch is
being written wait together for the next, which is written in one transaction
(:meth:`~mailyard.queue.api.WorkQueue.record_many`; the embedded queue runs it in its
``queue-io`` thread).  Under load that is one transaction and one thread hand-off per
few hundred messages; when idle, an entry is written at once.
"""

from __future__ import annotations

import asyncio

from mailyard.queue.api import FinishedEntry, PostponedRecipient, WorkQueue

__all__ = ["FinishedEntry", "OutcomeRecorder", "PostponedRecipient"]

MAX_BATCH = 500  # entries per transaction (bounds the SQL IN list and the lock hold)


class OutcomeRecorder:
    """Writes :class:`FinishedEntry` items to the queue in batches (group commit)."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue
        self.batches = 0  # transactions written (for tests and benchmarks)
        self._pending: list[tuple[FinishedEntry, asyncio.Future[None]]] = []
        self._writing = False

    def record(self, item: FinishedEntry) -> asyncio.Future[None]:
        """Queue ``item`` for the next batch; the future is done once it is written
        (or carries the StorageError)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((item, future))
        if not self._writing:
            self._writing = True
            loop.call_soon(self._start)  # entries finishing in this loop turn join in
        return future

    def _start(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self.batches += 1
        job = asyncio.ensure_future(self.queue.record_many([item for item, _ in batch]))
        job.add_done_callback(lambda done: self._written(batch, done))

    def _written(self, batch: list[tuple[FinishedEntry, asyncio.Future[None]]],
                 job: asyncio.Future[list[bool | None]]) -> None:
        error = None if job.cancelled() else job.exception()
        for _, future in batch:
            if future.done():
                continue
            if job.cancelled():
                future.cancel()
            elif error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        if self._pending:
            self._start()
        else:
            self._writing = False

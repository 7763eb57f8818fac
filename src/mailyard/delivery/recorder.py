"""Recording delivery outcomes in batches, off the event loop.

Every finished queue entry ends with an index update (attempt results, postponed
recipients, the lease given up) and, when all its recipients are final, the removal of
its file.  Done one entry at a time on the event loop, that is an SQLite transaction
(which may wait for an SMTP worker's insert to finish) and an unlink per message,
during which no SMTP session moves.  The :class:`OutcomeRecorder` instead hands the
work to the dispatcher's queue thread: entries that finish while one batch is being
written wait together for the next, which is written in one transaction
(:meth:`~mailyard.queue.spool.FileSpool.record_many`).  Under load that is one
transaction and one thread hand-off per few hundred messages; when idle, an entry is
written at once.

A spool without ``record_many`` (another :class:`~mailyard.queue.api.Spool`
implementation) is called once per entry, in the same thread.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from mailyard.queue.api import Outcome

MAX_BATCH = 500  # entries per transaction (bounds the SQL IN list and the lock hold)


@dataclass(frozen=True)
class Postponement:
    """A recipient that waits for its destination without an attempt being counted."""

    index: int
    until: float
    reason: str


@dataclass
class FinishedEntry:
    qid: str
    outcomes: list[Outcome] = field(default_factory=list)
    postponed: list[Postponement] = field(default_factory=list)


class OutcomeRecorder:
    """Writes :class:`FinishedEntry` items to the spool in batches (group commit)."""

    def __init__(self, spool: Any, executor: Executor) -> None:
        self.spool = spool
        self.executor = executor
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
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self.executor, self._write, [item for item, _ in batch])
        job.add_done_callback(lambda done: self._written(batch, done))

    def _write(self, items: list[FinishedEntry]) -> None:
        """In the queue thread: one transaction for the whole batch."""
        self.batches += 1
        record_many = getattr(self.spool, "record_many", None)
        if record_many is not None:
            record_many([(i.qid, i.outcomes,
                          [(p.index, p.until, p.reason) for p in i.postponed])
                         for i in items])
            return
        for item in items:
            if item.postponed:
                raise NotImplementedError("this spool cannot postpone recipients")
            if item.outcomes:
                self.spool.record(item.qid, item.outcomes)
            else:
                self.spool.release_lease(item.qid)

    def _written(self, batch: list[tuple[FinishedEntry, asyncio.Future[None]]],
                 job: asyncio.Future[None]) -> None:
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

"""The embedded queue behind the asynchronous protocols of :mod:`mailyard.queue.api`.

:class:`ThreadedSpool` serves :class:`~mailyard.queue.api.QueueWriter`,
:class:`~mailyard.queue.api.CapacityProbe`, :class:`~mailyard.queue.api.WorkQueue` and
:class:`~mailyard.queue.api.QueueAdmin` over one :class:`~mailyard.queue.spool.FileSpool`.
Every call that touches the index or reads a file runs in the spool's own single
``queue-io`` thread, so no SQLite transaction, unlink or record read ever blocks the
event loop of the process (the supervisor's dispatcher runs there), and index writes
from this process never contend with each other.  Producing needs no hop: a writer
buffers in memory and its commit already runs in the spool's commit threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, ParamSpec, TypeVar

from mailyard.envelope import Envelope
from mailyard.queue.api import (
    LEASE_SECONDS,
    DeliveryReply,
    FinishedEntry,
    MessageWriter,
    Outcome,
    QueueEntry,
    RecipientState,
)
from mailyard.queue.spool import FileSpool
from mailyard.queue.sweep import SweepReport

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ThreadedSpool:
    def __init__(self, spool: FileSpool) -> None:
        self.spool = spool
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue-io")

    async def _run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: fn(*args, **kwargs))

    def shutdown(self) -> None:
        """Finish the calls under way; the spool stays open (for a view over a spool
        that someone else owns and closes)."""
        self._io.shutdown(wait=True)

    def close(self) -> None:
        """Finish the calls under way, then close the spool."""
        self.shutdown()
        self.spool.close()

    # --- QueueWriter, CapacityProbe ---------------------------------------------
    def open_message(self, envelope: Envelope) -> MessageWriter:
        return self.spool.open_message(envelope)

    async def enqueue(self, envelope: Envelope, content: bytes) -> str:
        return await self.spool.enqueue(envelope, content)

    def free_bytes(self) -> int:
        return self.spool.free_bytes()

    # --- WorkQueue --------------------------------------------------------------
    async def claim_due(self, now: float, limit: int,
                        lease_seconds: float = LEASE_SECONDS) -> list[QueueEntry]:
        return await self._run(self.spool.claim_due, now, limit, lease_seconds)

    async def claim(self, qid: str, now: float,
                    lease_seconds: float = LEASE_SECONDS) -> QueueEntry | None:
        return await self._run(self.spool.claim, qid, now, lease_seconds)

    def open_content(self, qid: str) -> BinaryIO:
        return self.spool.open_content(qid)

    async def read_content(self, qid: str, limit: int | None = None) -> bytes:
        def read() -> bytes:
            with self.spool.open_content(qid) as f:
                return f.read() if limit is None else f.read(limit)
        return await self._run(read)

    async def record(self, qid: str, outcomes: Iterable[Outcome]) -> QueueEntry | None:
        return await self._run(self.spool.record, qid, list(outcomes))

    async def record_many(self, items: Sequence[FinishedEntry]) -> list[bool | None]:
        return await self._run(self.spool.record_many, items)

    async def postpone_domain(self, domain: str, until: float, reason: DeliveryReply) -> int:
        return await self._run(self.spool.postpone_domain, domain, until, reason)

    async def release_lease(self, qid: str) -> None:
        await self._run(self.spool.release_lease, qid)

    async def mark_delay_notified(self, qid: str, indexes: Iterable[int]) -> None:
        await self._run(self.spool.mark_delay_notified, qid, list(indexes))

    async def recover(self) -> None:
        await self.sweep()

    # --- QueueAdmin -------------------------------------------------------------
    async def get(self, qid: str) -> QueueEntry | None:
        return await self._run(self.spool.get, qid)

    async def list(self) -> list[QueueEntry]:
        return await self._run(self.spool.list)

    async def hold(self, qid: str) -> bool:
        return await self._run(self.spool.hold, qid)

    async def release(self, qid: str) -> bool:
        return await self._run(self.spool.release, qid)

    async def delete(self, qid: str) -> bool:
        return await self._run(self.spool.delete, qid)

    async def flush(self, qid: str | None = None) -> int:
        return await self._run(self.spool.flush, qid)

    async def stats(self) -> dict[RecipientState, int]:
        return await self._run(self.spool.stats)

    # --- maintenance ------------------------------------------------------------
    async def sweep(self, *, verify_content: bool = False) -> SweepReport:
        return await self._run(self.spool.sweep, verify_content=verify_content)

"""The dispatcher: takes due work from the queue and hands it to the delivery agents.

It runs in the supervisor process.  Each round it claims a bounded batch of due entries
(so a million queued messages never sit in memory: at most ``delivery.active_window``
are in flight), splits each entry's due recipients into local ones (the Maildir agent)
and remote ones grouped by domain (routing, then the SMTP client under a
per-destination and a global concurrency limit), turns the results into queue states
(retry schedule, lifetime), sends bounces and delay warnings, and records the outcome.

Ordering rule that keeps mail from being lost: a bounce is enqueued (durably) *before*
the failed recipient is recorded; a crash in between can at worst send one bounce
twice, never none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Callable

from mailyard.config import Config
from mailyard.delivery.attempt import AttemptResult, Finalizer
from mailyard.delivery.destinations import Sweep
from mailyard.delivery.recorder import FinishedEntry, OutcomeRecorder
from mailyard.envelope import split_address
from mailyard.metrics import (DELIVERY_ACTIVE, DELIVERY_ATTEMPTS, DELIVERY_POSTPONED,
                              QUEUE_RECIPIENTS)
from mailyard.obs import Metrics, log_event
from mailyard.queue.api import QueuedRecipient, QueueEntry, RecipientState, StorageError

log = logging.getLogger("mailyard.delivery")

LEASE_SECONDS = 900.0
CLAIM_BATCH = 200
IDLE_POLL = 1.0


class Dispatcher:
    def __init__(self, config: Config, spool: Any, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        from mailyard.delivery.local import LocalDeliveryAgent
        from mailyard.delivery.outbound import OutboundDelivery
        from mailyard.directory.sqlite import SqliteDirectory

        self.config = config
        self.spool = spool
        self.metrics = metrics
        self.clock = clock
        self.directory = SqliteDirectory(config.data_path / "directory.db", config)
        self.local_agent = LocalDeliveryAgent(config, self.directory)
        self.outbound = OutboundDelivery(config, clock=clock)
        self.finalizer = Finalizer(config, spool, clock)
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="local-delivery")
        # Claims and outcome batches: index transactions never block the event loop.
        self.queue_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue-io")
        self.recorder = OutcomeRecorder(spool, self.queue_io)
        self.sweeping: set[asyncio.Task[None]] = set()
        self.active: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._running = True

    # --- loop ------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        if self.config.delivery.defer_all:
            log_event(log, "delivery deferred by configuration (delivery.defer_all)")
        while self._running:
            self._wake.clear()
            claimed = 0
            if not self.config.delivery.defer_all:
                claimed = await self.claim_round()
            if claimed < CLAIM_BATCH or len(self.active) >= self.config.delivery.active_window:
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
                except asyncio.TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)

    async def claim_round(self) -> int:
        room = self.config.delivery.active_window - len(self.active)
        if room <= 0:
            return 0
        entries = await asyncio.get_running_loop().run_in_executor(
            self.queue_io, self.spool.claim_due, self.clock(), min(room, CLAIM_BATCH),
            LEASE_SECONDS)
        for entry in entries:
            if entry.qid in self.active:  # still working on it (lease renewed)
                continue
            task = asyncio.create_task(self.process(entry))
            self.active[entry.qid] = task
            task.add_done_callback(lambda t, q=entry.qid: self._done(q, t))
        return len(entries)

    def _done(self, qid: str, task: asyncio.Task[None]) -> None:
        self.active.pop(qid, None)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log_event(log, "delivery task failed", level=logging.ERROR, exc_info=exc,
                      qid=qid, error=f"{type(exc).__name__}: {exc}")
            try:
                self.spool.release_lease(qid)
            except Exception as release_exc:  # noqa: BLE001 - logged; the lease expires anyway
                log_event(log, "cannot release lease", level=logging.ERROR, qid=qid,
                          error=str(release_exc))

    async def stop(self) -> None:
        self._running = False
        self._wake.set()
        if self.active:
            await asyncio.wait(list(self.active.values()), timeout=10)
        if self.sweeping:
            await asyncio.wait(list(self.sweeping), timeout=10)
        for task in self.active.values():
            task.cancel()
        await self.outbound.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.queue_io.shutdown(wait=True)

    def update_gauges(self) -> None:
        self.metrics.set(DELIVERY_ACTIVE, len(self.active))
        stats = getattr(self.spool, "stats", None)
        if stats is not None:
            for state, count in stats().items():
                self.metrics.set(QUEUE_RECIPIENTS, count, state=str(state))

    # --- one entry -------------------------------------------------------------
    async def process(self, entry: QueueEntry) -> None:
        now = self.clock()
        due = [r for r in entry.recipients
               if r.state in (RecipientState.PENDING, RecipientState.DEFERRED)
               and r.next_attempt <= now]
        local: list[QueuedRecipient] = []
        remote: dict[str, list[QueuedRecipient]] = {}
        for r in due:
            domain = split_address(r.address)[1]
            if self.directory.is_local_domain(domain):
                local.append(r)
            else:
                remote.setdefault(domain, []).append(r)
        jobs = [self.deliver_local(entry, local)] if local else []
        jobs += [self.outbound.deliver(entry, domain, rcpts, self.open_content(entry.qid))
                 for domain, rcpts in remote.items()]
        results: list[AttemptResult] = []
        for batch in ([await jobs[0]] if len(jobs) == 1 else await asyncio.gather(*jobs)):
            results.extend(batch)
        self.start_sweeps()
        results, postponed = self.finalizer.postponements(entry, results)
        if postponed:
            self.metrics.inc(DELIVERY_POSTPONED, len(postponed))
        outcomes = await self.finalizer.finish(entry, results)
        for result in results:
            self.metrics.inc(DELIVERY_ATTEMPTS, result=result.kind,
                             transport=result.transport)
            log_event(log, "delivery attempt", qid=entry.qid, sender=entry.envelope.sender,
                      to=result.address, size=entry.size, transport=result.transport,
                      relay=result.relay, result=result.kind, reply=result.reply)
        await self.recorder.record(FinishedEntry(entry.qid, outcomes, postponed))

    def start_sweeps(self) -> None:
        """Postpone the queued mail of destinations that were just suspended or went
        over their share (see :mod:`mailyard.delivery.destinations`)."""
        postpone_domain = getattr(self.spool, "postpone_domain", None)
        for sweep in self.outbound.destinations.take_sweeps():
            if postpone_domain is None:
                continue
            task = asyncio.create_task(self.sweep(postpone_domain, sweep))
            self.sweeping.add(task)
            task.add_done_callback(self.sweeping.discard)

    async def sweep(self, postpone_domain: Callable[[str, float, str], int],
                    sweep: Sweep) -> None:
        loop = asyncio.get_running_loop()
        try:
            n = await loop.run_in_executor(self.queue_io, postpone_domain, sweep.domain,
                                           sweep.until, sweep.reason)
        except StorageError as exc:
            log_event(log, "cannot postpone queued mail", level=logging.ERROR,
                      domain=sweep.domain, error=str(exc))
            return
        log_event(log, "destination postponed", domain=sweep.domain, recipients=n,
                  until=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(sweep.until)),
                  reason=sweep.reason)

    def open_content(self, qid: str) -> Callable[[], BinaryIO]:
        return lambda: self.spool.open_content(qid)

    async def deliver_local(self, entry: QueueEntry,
                            recipients: list[QueuedRecipient]) -> list[AttemptResult]:
        loop = asyncio.get_running_loop()
        out: list[AttemptResult] = []
        written: set[str] = set()  # one copy per mailbox per message, whatever the aliases
        for r in recipients:
            result = await loop.run_in_executor(
                self.executor, self.local_agent.deliver, entry, r, self.open_content(entry.qid),
                written)
            forwarded = await self.forward(entry, r, getattr(result, "external", ()))
            out.append(AttemptResult.from_local(r, result, forwarded))
        return out

    async def forward(self, entry: QueueEntry, r: QueuedRecipient,
                      targets: tuple[str, ...] | list[str]) -> str:
        """Queue a copy for alias targets outside our domains (same envelope sender, so
        bounces go back to the original sender)."""
        if not targets:
            return ""
        from dataclasses import replace

        from mailyard.envelope import Recipient

        env = replace(entry.envelope, recipients=tuple(Recipient(t) for t in targets),
                      received_at=self.clock())
        writer = self.spool.open_message(env)
        try:
            with self.spool.open_content(entry.qid) as f:
                while chunk := f.read(262144):
                    writer.write(chunk)
            qid = await writer.commit()
        except BaseException:
            writer.abort()
            raise
        log_event(log, "forwarded", qid=entry.qid, to=r.address, new_qid=qid,
                  targets=",".join(targets))
        self.wake()
        return qid

"""The dispatcher: takes due work from the queue and hands it to the delivery agents.

It runs in the supervisor process.  Each round it claims a bounded batch of due entries
(so a million queued messages never sit in memory: at most ``delivery.active_window``
are in flight), splits each entry's due recipients into local ones (the Maildir agent)
and remote ones grouped by domain (routing, then the SMTP client under a
per-destination and a global concurrency limit), turns the results into queue states
(retry schedule, lifetime), sends bounces and delay warnings, and records the outcome.

Everything it needs comes in through the constructor: the work queue, ingest (the
one way into the queue, for bounces, delay notices and alias forwards), the directory
(which domains are ours, aliases) and the metrics.  Nothing it calls blocks the event
loop: queue calls are ``async`` (the embedded queue runs them in its own thread),
directory lookups and the local agent run in the ``local-delivery`` threads (local
deliveries in batches, :mod:`mailyard.delivery.local_batch`).

Ordering rule that keeps mail from being lost: a bounce is enqueued (durably) *before*
the failed recipient is recorded; a crash in between can at worst send one bounce
twice, never none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from mailyard.arc.chain import ArcSealer
from mailyard.arc.forward import forward_seal
from mailyard.config import Config
from mailyard.delivery.attempt import TRANSPORT_LOCAL, AttemptPolicy, AttemptResult
from mailyard.delivery.destinations import DestinationSweep
from mailyard.delivery.feedback import DeliveryResults, FeedbackAgent, FeedbackThread, open_service
from mailyard.delivery.local import LocalDeliveryAgent, LocalDeliveryResult
from mailyard.delivery.local_batch import LocalBatcher
from mailyard.delivery.outbound import OutboundDelivery
from mailyard.delivery.recorder import OutcomeRecorder
from mailyard.directory.api import Directory
from mailyard.dkim.keys import DkimKey, KeyAlgorithm, KeyStore, KeyStoreError
from mailyard.envelope import Recipient, split_address
from mailyard.ingest.api import Ingest, Origin, Submission
from mailyard.ingest.pipeline import srs_for
from mailyard.metrics import DELIVERY_ACTIVE, DELIVERY_ATTEMPTS, DELIVERY_POSTPONED
from mailyard.obs import Metrics, log_event
from mailyard.queue.api import (
    LEASE_SECONDS,
    AttemptStatus,
    DeliveryReply,
    FinishedEntry,
    PostponedRecipient,
    QueuedRecipient,
    QueueEntry,
    RecipientState,
    StorageError,
    WorkQueue,
)
from mailyard.services.setup import feedback_addresses
from mailyard.tlsrpt.sender import ReportSender

if TYPE_CHECKING:
    from mailyard.dmarc.sender import DmarcReportSender

log = logging.getLogger("mailyard.delivery")

CLAIM_BATCH = 200
IDLE_POLL = 1.0
LOCAL_THREADS = 8
DOMAIN_ANSWERS_TTL = 1.0  # seconds a local-domain answer is used without asking again
_COPY_CHUNK = 256 * 1024


def _dmarc_sender(config: Config, outbound: OutboundDelivery, ingest: Ingest,
                  clock: Callable[[], float]) -> DmarcReportSender | None:
    """The DMARC report sender when ``[dmarc] reports`` is on."""
    if not (config.dmarc.enabled and config.dmarc.reports):
        return None
    from mailyard.dmarc.evalstore import EvaluationStore
    from mailyard.dmarc.sender import DmarcReportSender

    return DmarcReportSender(config, EvaluationStore.in_data_dir(config.data_path),
                             outbound.resolver, ingest, clock)


class Dispatcher:
    def __init__(self, config: Config, queue: WorkQueue, ingest: Ingest, directory: Directory,
                 metrics: Metrics, clock: Callable[[], float] = time.time, *,
                 outbound: OutboundDelivery | None = None) -> None:
        self.config = config
        self.queue = queue
        self.ingest = ingest
        self.directory = directory
        self.metrics = metrics
        self.clock = clock
        self.local_agent = LocalDeliveryAgent(config, directory)
        self.srs = srs_for(config)
        self.dkim_keys = KeyStore(config.data_dir)
        self.outbound = outbound or OutboundDelivery(config, clock=clock)
        outcomes = self.outbound.tls_outcomes
        if outcomes is not None:
            outcomes.metrics = metrics
        self.tls_reports = (ReportSender(config, outcomes, self.outbound.resolver, ingest, clock)
                            if outcomes is not None and config.tls_rpt.send_reports else None)
        self.dmarc_reports = _dmarc_sender(config, self.outbound, ingest, clock)
        self.policy = AttemptPolicy(config, queue, ingest, clock)
        self.executor = ThreadPoolExecutor(max_workers=LOCAL_THREADS,
                                           thread_name_prefix="local-delivery")
        self.local_batches = LocalBatcher(self.local_agent, self.executor, LOCAL_THREADS,
                                          before_batch=directory.refresh)
        self.recorder = OutcomeRecorder(queue)
        # Bounces, complaints and unsubscribes to the feedback addresses, and the
        # results of VERP-sender messages (mailyard.delivery.feedback).
        addresses = feedback_addresses(config)
        self.feedback_thread = FeedbackThread(partial(open_service, config))
        self.feedback = FeedbackAgent(addresses, self.feedback_thread, metrics)
        self.delivery_results = DeliveryResults(addresses, self.feedback_thread, metrics)
        self.sweeping: set[asyncio.Task[None]] = set()
        self.active: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._running = True
        self._domain_answers: dict[str, bool] = {}  # see local_domains
        self._domains_asked = -DOMAIN_ANSWERS_TTL

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
            if self.tls_reports is not None and self.tls_reports.due():
                self._spawn(self._send_tls_reports(self.tls_reports))
            if self.dmarc_reports is not None and self.dmarc_reports.due():
                self._spawn(self._send_dmarc_reports(self.dmarc_reports))
            if claimed < CLAIM_BATCH or len(self.active) >= self.config.delivery.active_window:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
            else:
                await asyncio.sleep(0)

    async def claim_round(self) -> int:
        room = self.config.delivery.active_window - len(self.active)
        if room <= 0:
            return 0
        entries = await self.queue.claim_due(self.clock(), min(room, CLAIM_BATCH),
                                             LEASE_SECONDS)
        entries = [e for e in entries if e.qid not in self.active]  # still at work on those
        if not entries:
            return 0
        local = await self.local_domains(r.address for e in entries for r in e.recipients)
        for entry in entries:
            task = asyncio.create_task(self.process(entry, local))
            self.active[entry.qid] = task
            task.add_done_callback(partial(self._done, entry.qid))
        return len(entries)

    async def local_domains(self, addresses: Iterable[str]) -> frozenset[str]:
        """Which of the addresses' domains are ours.  The answers are kept for
        :data:`DOMAIN_ANSWERS_TTL` seconds: a round whose domains were all asked
        about within that time makes no thread trip.  Otherwise one directory call for
        the whole batch, in a delivery thread (the directory may read its database),
        after a check for changes (a directory built with ``refresh_each_lookup=False``
        sees them once per call); a domain added or removed is seen within a second."""
        domains = {split_address(a)[1] for a in addresses}
        answers = self._domain_answers
        if time.monotonic() - self._domains_asked >= DOMAIN_ANSWERS_TTL:
            answers.clear()
        elif all(d in answers for d in domains):
            return frozenset(d for d in domains if answers[d])

        def ours() -> dict[str, bool]:
            self.directory.refresh()
            return {d: self.directory.is_local_domain(d) for d in domains}

        found = await asyncio.get_running_loop().run_in_executor(self.executor, ours)
        if not answers:
            self._domains_asked = time.monotonic()
        answers.update(found)
        return frozenset(d for d, local in found.items() if local)

    def _done(self, qid: str, task: asyncio.Task[None]) -> None:
        self.active.pop(qid, None)
        self._wake.set()
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log_event(log, "delivery task failed", level=logging.ERROR, exc_info=exc,
                  qid=qid, error=f"{type(exc).__name__}: {exc}")
        self._spawn(self._release(qid))

    async def _release(self, qid: str) -> None:
        try:
            await self.queue.release_lease(qid)
        except StorageError as exc:  # logged; the lease expires anyway
            log_event(log, "cannot release lease", level=logging.ERROR, qid=qid, error=str(exc))

    def _spawn(self, job: Coroutine[None, None, None]) -> None:
        """Background work that :meth:`stop` waits for."""
        task = asyncio.create_task(job)
        self.sweeping.add(task)
        task.add_done_callback(self.sweeping.discard)

    async def _send_tls_reports(self, sender: ReportSender) -> None:
        """The daily TLS-RPT reports (RFC 8460), through ingest like any mail."""
        try:
            await sender.send_due()
        except (sqlite3.Error, OSError, StorageError) as exc:
            log_event(log, "TLS reports not sent", level=logging.WARNING,
                      error=f"{type(exc).__name__}: {exc}")

    async def _send_dmarc_reports(self, sender: DmarcReportSender) -> None:
        """The DMARC aggregate reports (RFC 7489 7.2), through ingest like any mail."""
        try:
            await sender.send_due()
        except (sqlite3.Error, OSError, StorageError) as exc:
            log_event(log, "DMARC reports not sent", level=logging.WARNING,
                      error=f"{type(exc).__name__}: {exc}")

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
        self.feedback_thread.close()

    def update_gauges(self) -> None:
        self.metrics.set(DELIVERY_ACTIVE, len(self.active))

    # --- one entry -------------------------------------------------------------
    async def process(self, entry: QueueEntry, local_domains: frozenset[str]) -> None:
        now = self.clock()
        due = [r for r in entry.recipients
               if r.state in (RecipientState.PENDING, RecipientState.DEFERRED)
               and r.next_attempt <= now]
        local: list[QueuedRecipient] = []
        feedback: list[QueuedRecipient] = []
        remote: dict[str, list[QueuedRecipient]] = {}
        for r in due:
            domain = split_address(r.address)[1]
            if domain in self.feedback.addresses.domains and self.feedback.owns(r.address):
                feedback.append(r)
            elif domain in local_domains:
                local.append(r)
            else:
                remote.setdefault(domain, []).append(r)
        results: list[AttemptResult]
        if not local and not feedback and len(remote) == 1:  # the common case: no gather
            [(domain, rcpts)] = remote.items()
            results = await self.outbound.deliver(entry, domain, rcpts,
                                                  self.open_content(entry.qid))
        else:
            jobs = [self.deliver_local(entry, local)] if local else []
            if feedback:
                jobs.append(self.feedback.deliver(entry, feedback,
                                                  self.open_content(entry.qid)))
            jobs += [self.outbound.deliver(entry, domain, rcpts, self.open_content(entry.qid))
                     for domain, rcpts in remote.items()]
            results = (await jobs[0] if len(jobs) == 1
                       else [r for batch in await asyncio.gather(*jobs) for r in batch])
        self.start_sweeps()
        postponed: list[PostponedRecipient] = []
        if any(r.status is AttemptStatus.POSTPONED for r in results):
            results, postponed = self.policy.postponements(entry, results)
            if postponed:
                self.metrics.inc(DELIVERY_POSTPONED, len(postponed))
        outcomes = await self.policy.finish(entry, results)
        if self.delivery_results.observe(entry, results, outcomes):
            self._spawn(self.delivery_results.flush())
        for result in results:
            self.metrics.inc(DELIVERY_ATTEMPTS, result=result.status.value,
                             transport=result.transport)
            log_event(log, "delivery attempt", qid=entry.qid, sender=entry.envelope.sender,
                      to=result.address, size=entry.size, transport=result.transport,
                      relay=result.relay, result=result.status.value, reply=str(result.reply),
                      reply_origin=result.reply.origin.value)
        await self.recorder.record(FinishedEntry(entry.qid, outcomes, postponed))

    def start_sweeps(self) -> None:
        """Postpone the queued mail of destinations that were just suspended or went
        over their share (see :mod:`mailyard.delivery.destinations`)."""
        for sweep in self.outbound.destinations.take_sweeps():
            self._spawn(self.sweep(sweep))

    async def sweep(self, sweep: DestinationSweep) -> None:
        try:
            n = await self.queue.postpone_domain(sweep.domain, sweep.until, sweep.reason)
        except StorageError as exc:
            log_event(log, "cannot postpone queued mail", level=logging.ERROR,
                      domain=sweep.domain, error=str(exc))
            return
        log_event(log, "destination postponed", domain=sweep.domain, recipients=n,
                  until=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(sweep.until)),
                  reason=str(sweep.reason))

    def open_content(self, qid: str) -> Callable[[], BinaryIO]:
        return lambda: self.queue.open_content(qid)

    async def deliver_local(self, entry: QueueEntry,
                            recipients: list[QueuedRecipient]) -> list[AttemptResult]:
        # All of the message's local recipients in one delivery thread call: one copy
        # per mailbox per message, whatever the aliases (with the round's other
        # messages, in batches: see local_batch); then the forwards, if any.
        results = await self.local_batches.deliver(entry, recipients,
                                                   self.open_content(entry.qid))
        out: list[AttemptResult] = []
        reports = False
        for r, result in zip(recipients, results, strict=True):
            forwarded = await self.forward(entry, r, result.external)
            out.append(_local_attempt(r, result, forwarded))
            reports = reports or (result.status is AttemptStatus.DELIVERED
                                  and self.config.dmarc.is_report_address(r.address))
        if reports:  # before the entry is finished: its content is still there
            await self.import_dmarc_reports(entry)
        return out

    async def import_dmarc_reports(self, entry: QueueEntry) -> None:
        """Aggregate reports delivered to ``[dmarc] report_mailbox`` go into the
        report store as well (the message stays in the mailbox)."""
        from mailyard.dmarc.reports import MAX_ATTACHMENT
        from mailyard.services.dmarc_reports import import_dmarc_reports

        if entry.size > 2 * MAX_ATTACHMENT:  # base64 of the largest attachment we read
            log_event(log, "DMARC report too large to import", qid=entry.qid, size=entry.size)
            return

        def run() -> None:
            with self.queue.open_content(entry.qid) as content:
                data = content.read(2 * MAX_ATTACHMENT + 1)
            (outcome,) = import_dmarc_reports(self.config.data_path, [(entry.qid, data)],
                                              self.clock())
            log_event(log, "DMARC reports imported", qid=entry.qid, sender=entry.envelope.sender,
                      stored=outcome.stored, duplicates=outcome.duplicates,
                      errors="; ".join(outcome.errors))

        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, run)
        except (sqlite3.Error, OSError, StorageError) as exc:
            log_event(log, "DMARC reports not imported", level=logging.WARNING, qid=entry.qid,
                      error=f"{type(exc).__name__}: {exc}")

    def arc_sealer(self, domain: str) -> ArcSealer | None:
        """The sealer of forwards from ``domain`` (``[forwarding] arc``): its active RSA
        DKIM key (RFC 8617 uses rsa-sha256), None when it has none or ARC is off."""
        if not self.config.forwarding.arc:
            return None
        key = _first_rsa_key(self.dkim_keys, domain)
        if key is None:
            return None
        return ArcSealer(key.domain, key.selector, key.key,
                         self.config.auth_results.authserv_id or self.config.hostname)

    def read_content(self, qid: str) -> bytes:
        with self.queue.open_content(qid) as f:
            return f.read()

    async def forward(self, entry: QueueEntry, r: QueuedRecipient,
                      targets: tuple[str, ...]) -> str:
        """Queue a copy for alias targets outside our domains, through ingest.  Its
        envelope sender is the original one, or with ``[forwarding] srs`` an SRS address
        of the alias's domain that bounces come back through to the original sender."""
        if not targets:
            return ""
        now = self.clock()
        sender = entry.envelope.sender
        if self.srs is not None and sender:
            sender = self.srs().forward(sender, split_address(r.address)[1], now)
        env = replace(entry.envelope, sender=sender,
                      recipients=tuple(Recipient(t) for t in targets), received_at=now)
        sealer = self.arc_sealer(split_address(r.address)[1])
        seal = b""
        if sealer is not None:
            content = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.read_content, entry.qid)
            seal = await forward_seal(content, sealer, self.outbound.resolver, now)
        writer = self.ingest.open(Submission(Origin.FORWARD, env))

        def copy() -> None:
            writer.write(seal)
            with self.queue.open_content(entry.qid) as f:
                while chunk := f.read(_COPY_CHUNK):
                    writer.write(chunk)

        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, copy)
            qid = await writer.commit()
        except BaseException:
            writer.abort()
            raise
        log_event(log, "forwarded", qid=entry.qid, to=r.address, new_qid=qid, sender=sender,
                  targets=",".join(targets))
        self.wake()
        return qid


def _first_rsa_key(keys: KeyStore, domain: str) -> DkimKey | None:
    try:
        found = keys.signing_keys(domain)
    except KeyStoreError as exc:
        log_event(log, "cannot read DKIM key for ARC", level=logging.ERROR, domain=domain,
                  error=str(exc))
        return None
    return next((k for k in found if k.algorithm is KeyAlgorithm.RSA), None)


def _local_attempt(r: QueuedRecipient, result: LocalDeliveryResult,
                   forwarded_qid: str = "") -> AttemptResult:
    """The local agent's result as an attempt; notes a forwarded copy's queue id."""
    reply = result.reply
    if forwarded_qid:
        reply = DeliveryReply(reply.reply.with_text(
            f"{reply.reply.text} (forwarded as {forwarded_qid})"))
    return AttemptResult(r.index, r.address, result.status, reply, TRANSPORT_LOCAL)

"""The sending engine: moves due campaigns to ``sending`` and sends them, a bounded
batch at a time, through ingest into the queue.

**Exactly one message per recipient, across a crash at any point.**  Each message's
envelope carries a submit key (``campaign:<id>:<contact>``) that the queue index
records in the same transaction that indexes the message, and keeps after delivery
(:meth:`mailyard.queue.spool.FileSpool.submitted`).  A batch is marked ``sending`` in
``bulk.db`` before its first message is handed to ingest, and ``queued`` (with its
``queued`` events) in one transaction after the last commit.  When the engine takes a
campaign over (at start, or from a dead process), it first sweeps the queue (a message
made durable but not indexed when the process died is indexed then, key included)
and settles every ``sending`` recipient: queued if the queue knows its key, pending
again otherwise.  So a message is never queued twice, and none is lost.

**One sender per campaign.**  ``scheduled -> sending`` is a compare-and-set of the
campaign store, so two processes never both start a campaign; while sending, the
process holds a lease in ``campaign_progress`` (owner token with its pid, renewed every
batch), so two never send the same campaign after a restart either.  A lease of a
process that is gone (same node) is taken over at once, another node's when it expires.

**Pause and cancel** are seen between batches (the state is read before each one), so
they take effect within a batch's time (about a second).

Rates, caps, the A/B test and message composition are decided in
:mod:`~mailyard.bulk.campaigns.sender` and :mod:`~mailyard.bulk.campaigns.compose`;
this module only reads, decides through them and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from mailyard.bulk.campaigns.audience import Audience, AudienceError
from mailyard.bulk.campaigns.compose import CampaignMailer, Composed, SendSettings
from mailyard.bulk.campaigns.model import Campaign, CampaignState
from mailyard.bulk.campaigns.recipients import BatchResult, Progress, Recipient, RecipientStore
from mailyard.bulk.campaigns.renderpool import (
    MAX_POOLED_LINKS,
    ComposeJob,
    RenderPool,
    RenderSigning,
    compose_chunk,
)
from mailyard.bulk.campaigns.sender import (
    PACE_HISTORY,
    AbSpecError,
    Pacer,
    Phase,
    admit,
    choose_winner,
    normalise_caps,
    remaining,
    submit_key,
    winner_due,
)
from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
from mailyard.bulk.campaigns.store import CampaignConflict
from mailyard.bulk.templates.render import RenderFailure, TemplateSyntaxProblem
from mailyard.envelope import Envelope
from mailyard.envelope import Recipient as EnvelopeRecipient
from mailyard.ingest.api import Ingest, IngestRefused, Origin, Submission
from mailyard.obs import log_event
from mailyard.queue.api import StorageError

log = logging.getLogger("mailyard.campaigns")

LEASE_SECONDS = 30.0
BATCH = 100  # recipients marked, rendered and queued together
CONCURRENCY = 16  # submits in flight at once (their fsyncs are group-committed)
SELECT_BATCH = 1000
SLICE = 1.0  # seconds spent on one campaign before the others get a turn
CHUNK = 10  # recipients per job of a render process
LOOKAHEAD = 4  # chunks handed to the render processes beyond the one being queued
HOUR = 3600.0


@dataclass
class Queue:
    """What the engine needs of the queue beside ingest."""

    submitted: Callable[[str], str | None]  # submit key -> queue id of a committed message
    recover: Callable[[], object]  # index messages committed by a process that died
    notify: Callable[[str], None]  # a message was queued (wakes the dispatcher)


@dataclass
class _Batch:
    """One batch of recipients on its way to the queue."""

    audience: Audience
    suppressed: set[str]
    winner: int | None  # the A/B winner every recipient gets, else their own variant
    now: float
    result: BatchResult = field(default_factory=BatchResult)
    failed: list[int] = field(default_factory=list)  # not stored: pending again
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENCY))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class CampaignRunner:
    def __init__(self, campaigns: SqliteCampaignStore, recipients: RecipientStore,
                 digest: Callable[[str], str], ingest: Ingest, queue: Queue,
                 settings: SendSettings, owner: str, is_dead: Callable[[str], bool], *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 batch: int = BATCH, render_workers: int = 0,
                 render_signing: RenderSigning | None = None) -> None:
        self.campaigns = campaigns
        self.recipients = recipients
        self.digest = digest
        self.ingest = ingest
        self.queue = queue
        self.settings = settings
        self.owner = owner
        self.is_dead = is_dead
        self.clock = clock
        self.sleep = sleep
        self.batch = batch
        self._mailers: dict[int, CampaignMailer] = {}
        self._pacers: dict[int, Pacer] = {}
        self.pool = RenderPool(render_workers, render_signing) if render_workers > 0 else None

    # --- the loop -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        while not stop.is_set():
            busy = await self.tick(stop)
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll)
        for campaign_id in list(self._mailers):
            self.recipients.release(campaign_id, self.owner)
        if self.pool is not None:
            self.pool.close()

    async def tick(self, stop: asyncio.Event | None = None) -> bool:
        """One round over the due and sending campaigns; True if there is more to do
        at once."""
        now = self.clock()
        for campaign in self.campaigns.due(now):
            with contextlib.suppress(CampaignConflict):  # another process was first
                self.campaigns.move(campaign.id, CampaignState.SCHEDULED,
                                    CampaignState.SENDING, now)
                log_event(log, "campaign sending", campaign=campaign.id)
        busy = False
        sending = self.campaigns.campaigns(state=CampaignState.SENDING)
        for campaign_id in set(self._mailers) - {c.id for c in sending}:
            self._forget(campaign_id)
        for campaign in sending:
            if stop is not None and stop.is_set():
                break
            busy |= await self.work(campaign, stop)
        return busy

    def _forget(self, campaign_id: int) -> None:
        self.recipients.release(campaign_id, self.owner)
        self._mailers.pop(campaign_id, None)
        self._pacers.pop(campaign_id, None)

    def _stop(self, campaign: Campaign, to: CampaignState, reason: str) -> None:
        log_event(log, f"campaign {to.value}", level=logging.WARNING, campaign=campaign.id,
                  reason=reason)
        with contextlib.suppress(CampaignConflict):
            self.campaigns.move(campaign.id, CampaignState.SENDING, to, self.clock())
        self._forget(campaign.id)

    # --- one campaign -------------------------------------------------------------------
    async def work(self, campaign: Campaign, stop: asyncio.Event | None = None) -> bool:
        try:
            mailer = self._mailer(campaign)
            progress = self._claim(campaign)
            if progress is None:
                return False
            # Between this process's batches no recipient is left "sending": any found
            # here were left by a process that died (or lost its lease).
            await self._settle(campaign.id)
            if not progress.selected:
                self._select(campaign, progress, mailer)
                return True
            deadline = self.clock() + SLICE
            while self.clock() < deadline:
                if stop is not None and stop.is_set():
                    return False
                current = self.campaigns.get_campaign(campaign.id)
                if current is None or current.state is not CampaignState.SENDING:
                    self._forget(campaign.id)
                    return False
                progress = self._claim(campaign)
                if progress is None:
                    return False
                sent = await self._step(campaign, progress, mailer)
                if sent is None:
                    return True  # finished or phase changed: the next round goes on
                if sent == 0:
                    return False
            return True
        except (AudienceError, AbSpecError, TemplateSyntaxProblem) as exc:
            self._stop(campaign, CampaignState.PAUSED, str(exc))
            return False

    def _claim(self, campaign: Campaign) -> Progress | None:
        now = self.clock()
        first = Phase.SAMPLE if self._mailer(campaign).test is not None else Phase.ALL
        return self.recipients.claim(campaign.id, self.owner, now, now + LEASE_SECONDS,
                                     self.is_dead, first)

    def _mailer(self, campaign: Campaign) -> CampaignMailer:
        found = self._mailers.get(campaign.id)
        if found is None:
            found = CampaignMailer(campaign, self.settings, self.campaigns.links(campaign.id))
            # TemplateSyntaxProblem now, not in the middle of a batch.
            found.template(None)
            for variant in range(len(found.test.subjects) if found.test else 0):
                found.template(variant)
            self._mailers[campaign.id] = found
        return found

    async def _settle(self, campaign_id: int) -> None:
        """Recipients left ``sending`` by a process that died: queued if the queue has
        their message, else pending again."""
        in_flight = self.recipients.in_flight(campaign_id)
        if not in_flight:
            return
        await asyncio.to_thread(self.queue.recover)
        queued = []
        for contact, domain, variant in in_flight:
            qid = self.queue.submitted(submit_key(campaign_id, contact))
            if qid is not None:
                queued.append((contact, qid, domain, variant))
        self.recipients.settle(campaign_id, queued, self.clock())
        log_event(log, "campaign recipients settled", campaign=campaign_id,
                  in_flight=len(in_flight), queued=len(queued))

    def _select(self, campaign: Campaign, progress: Progress, mailer: CampaignMailer) -> None:
        """A slice of the audience walk: its batches become pending recipients."""
        conn = self.recipients.db.conn()
        audience = Audience(conn, campaign.spec, self.digest, self.clock())
        cursor = progress.cursor
        deadline = self.clock() + SLICE
        while True:
            members = audience.batch(cursor, SELECT_BATCH)
            done = len(members) < SELECT_BATCH
            suppressed = audience.suppressed([m.address for m in members])
            self.recipients.select(campaign.id, members, suppressed, mailer.test,
                                   self.clock(), done=done)
            if done:
                log_event(log, "campaign audience selected", campaign=campaign.id,
                          counts=_counts(self.recipients.counts(campaign.id)))
                return
            cursor = members[-1].contact_id
            if self.clock() >= deadline:
                return

    async def _step(self, campaign: Campaign, progress: Progress,
                    mailer: CampaignMailer) -> int | None:
        """One batch: how many were handed to the queue; None when the phase changed
        (or the campaign finished)."""
        test = mailer.test
        now = self.clock()
        phase = progress.phase
        if phase is Phase.WAITING:
            assert test is not None
            if not winner_due(progress.phase_at, test, now):
                return 0
            results = self.recipients.variant_results(campaign.id, test.metric,
                                                      len(test.subjects))
            winner = choose_winner(results)
            self.recipients.set_phase(campaign.id, Phase.REST, now, winner)
            log_event(log, "campaign A/B winner", campaign=campaign.id, winner=winner,
                      results=";".join(f"{r.variant}:{r.engaged}/{r.sent}" for r in results))
            return None
        sample = {Phase.SAMPLE: True, Phase.REST: False}.get(phase)
        caps = normalise_caps(campaign.spec.domain_caps)
        left = remaining(caps, self.recipients.sent_since(campaign.id, caps, now - HOUR))
        full = {d for d, n in left.items() if n <= 0}
        # Without a capped domain the first candidates are the batch; with one, more
        # are read so those of other domains can fill the batch.
        candidates = self.recipients.candidates(campaign.id, sample=sample, full=full,
                                                limit=self.batch * 4 if left else self.batch)
        if not candidates:
            if self.recipients.left(campaign.id, sample=sample):
                return 0  # everything left waits for a domain's hour to pass
            self._phase_done(campaign, phase, now)
            return None
        pacer = self._pacers.get(campaign.id)
        if pacer is None:
            pacer = self._pacers[campaign.id] = Pacer.resume(
                campaign.spec.rate_per_minute, now,
                self.recipients.queued_since(campaign.id, now - PACE_HISTORY)
                if campaign.spec.rate_per_minute > 0 else [])
        allowance = pacer.allowance(now, self.batch)
        if allowance <= 0:
            await self.sleep(min(max(pacer.wait(now), 0.01), SLICE))
            return 0 if pacer.wait(self.clock()) > 0 else 1
        chosen = admit(candidates, left, allowance)
        chosen_subject = progress.winner if phase is Phase.REST else None
        sent = await self._send(campaign, mailer, [c.contact_id for c in chosen],
                                chosen_subject)
        pacer.spend(sent)
        return sent

    def _phase_done(self, campaign: Campaign, phase: Phase, now: float) -> None:
        """Every recipient of the phase is settled: wait for the A/B winner, or the
        campaign is finished."""
        if phase is Phase.SAMPLE:
            self.recipients.set_phase(campaign.id, Phase.WAITING, now)
            log_event(log, "campaign A/B sample queued", campaign=campaign.id)
            return
        self.campaigns.move(campaign.id, CampaignState.SENDING, CampaignState.FINISHED, now)
        log_event(log, "campaign finished", campaign=campaign.id,
                  counts=_counts(self.recipients.counts(campaign.id)))
        self._forget(campaign.id)

    async def _send(self, campaign: Campaign, mailer: CampaignMailer,
                    contact_ids: list[int], winner: int | None) -> int:
        now = self.clock()
        self.recipients.mark_sending(campaign.id, contact_ids, now)
        audience = Audience(self.recipients.db.conn(), campaign.spec, self.digest, now)
        found = self.recipients.recipients(campaign.id, contact_ids, audience.list_ids)
        batch = _Batch(audience, audience.suppressed([r.address for r in found]), winner, now)
        seen = {r.contact_id for r in found}
        batch.result.excluded += [(c, "erased") for c in contact_ids if c not in seen]
        try:
            await self._compose_and_submit(campaign, mailer, found, batch)
        finally:
            # Even when the batch fails, the messages handed to ingest are waited for,
            # so no commit happens after the batch's rows were given up.
            await asyncio.gather(*batch.tasks, return_exceptions=True)
        for task in batch.tasks:
            task.result()  # an unexpected error of a submit ends the process
        self.recipients.finish_batch(campaign.id, batch.result, self.clock())
        if batch.failed:
            self.recipients.unsent(campaign.id, batch.failed, self.clock())
        for _, qid, _ in batch.result.queued:
            self.queue.notify(qid)
        return len(batch.result.queued)

    async def _compose_and_submit(self, campaign: Campaign, mailer: CampaignMailer,
                                  found: list[Recipient], batch: _Batch) -> None:
        """Each message goes to ingest as soon as it is made, so its commit (fsync, in
        the spool's threads) overlaps with rendering the next ones (in the render
        processes, when there are any)."""
        result = batch.result
        jobs: list[tuple[Recipient, ComposeJob]] = []
        for r in found:
            if not r.active:
                result.excluded.append((r.contact_id, "blocked"))
            elif not r.lists:
                result.excluded.append((r.contact_id, "not confirmed"))
            elif r.address in batch.suppressed:
                result.excluded.append((r.contact_id, "suppressed"))
            else:
                variant = batch.winner if batch.winner is not None else r.variant
                list_name = next(name for i, name in batch.audience.list_names.items()
                                 if i in r.lists)
                jobs.append((r, ComposeJob(r.contact_id, r.address, r.name, r.attributes,
                                           list_name, variant)))
        if self.pool is None or len(mailer.links) > MAX_POOLED_LINKS:
            for r, job in jobs:
                await self._queue_one(campaign, mailer, r, job, None, batch)
            return
        loop = asyncio.get_running_loop()
        pool, links = self.pool, mailer.links.urls()
        chunks = [jobs[i:i + CHUNK] for i in range(0, len(jobs), CHUNK)]
        futures: list[asyncio.Future[list[Composed | RenderFailure | None]] | None] = []
        broken = False

        def ahead(upto: int) -> None:
            """Chunks handed to the render processes up to ``upto`` (the messages made
            but not yet queued stay few, however large the batch); after a render
            process died, the rest of the batch is composed here (None)."""
            while len(futures) < min(upto, len(chunks)):
                chunk = chunks[len(futures)]
                futures.append(None if broken else loop.run_in_executor(
                    pool.executor(), compose_chunk, campaign, self.settings, links,
                    [j for _, j in chunk], batch.now))

        try:
            for i, chunk in enumerate(chunks):
                ahead(i + 1 + LOOKAHEAD)
                future = futures[i]
                made: list[Composed | RenderFailure | None] = [None] * len(chunk)
                if future is not None:
                    answer = await _rendered(future)
                    if answer is not None:
                        made = answer
                    elif not broken:  # a render process died: compose here
                        broken = True
                        pool.reset()
                for (r, job), built in zip(chunk, made, strict=True):
                    await self._queue_one(campaign, mailer, r, job, built, batch)
        finally:
            for future in futures:
                if future is not None:
                    future.cancel()

    async def _queue_one(self, campaign: Campaign, mailer: CampaignMailer, r: Recipient,
                         job: ComposeJob, built: Composed | RenderFailure | None,
                         batch: _Batch) -> None:
        """Compose (unless a render process did) and hand to ingest."""
        if built is None:
            built = mailer.compose(job.contact_id, job.address, job.name, job.attributes,
                                   job.list_name, job.variant, batch.now)
        if isinstance(built, RenderFailure):
            batch.result.skipped.append((r.contact_id, str(built)))
            return
        first, urls = mailer.new_links()
        if urls:  # stored before any message that carries them is queued
            self.campaigns.add_links(campaign.id, first, urls)
        await batch.slots.acquire()
        batch.tasks.append(asyncio.create_task(
            self._submit(campaign, r, built, job.variant, batch)))
        await asyncio.sleep(0)  # let it run up to its commit

    async def _submit(self, campaign: Campaign, r: Recipient, composed: Composed,
                      variant: int | None, batch: _Batch) -> None:
        """Hands one message to ingest; a refusal skips the contact, a storage failure
        leaves it for a later batch."""
        try:
            qid = await self.ingest.submit(self._submission(campaign, r, composed),
                                           composed.message.data)
        except IngestRefused as exc:
            batch.result.skipped.append((r.contact_id, f"refused: {exc.reply}"))
            return
        except StorageError as exc:
            log_event(log, "campaign message not queued", level=logging.ERROR,
                      campaign=campaign.id, contact=r.contact_id, error=str(exc))
            batch.failed.append(r.contact_id)
            return
        finally:
            batch.slots.release()
        batch.result.queued.append((r, qid, variant))

    def _submission(self, campaign: Campaign, r: Recipient, composed: Composed) -> Submission:
        data = composed.message
        envelope = Envelope(
            sender=composed.sender, recipients=(EnvelopeRecipient(r.address),),
            body_type="7BIT" if data.data.isascii() else "8BITMIME",
            smtputf8=data.smtputf8 or not r.address.isascii(), client_ip="127.0.0.1",
            client_helo="localhost", received_at=self.clock(),
            submit_key=submit_key(campaign.id, r.contact_id))
        return Submission(Origin.CAMPAIGN, envelope, pool=campaign.spec.pool,
                          dkim=composed.dkim)


async def _rendered(future: asyncio.Future[list[Composed | RenderFailure | None]]
                    ) -> list[Composed | RenderFailure | None] | None:
    """A render call's messages; None when a render process died (its call failed, or
    was cancelled by the pool's reset before a process took it)."""
    await asyncio.wait([future])  # a cancelled call is not this task's cancellation
    if future.cancelled():
        return None
    try:
        return future.result()
    except BrokenProcessPool:
        return None


def _counts(counts: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in counts.items() if v)

"""Turning delivery attempts into queue states, bounces and delay notices.

Agents report an :class:`AttemptResult` per recipient (an :class:`AttemptStatus`:
delivered, deferred or failed, with the reply; or postponed: not tried, because its
destination is suspended or busy, see :mod:`mailyard.delivery.destinations`).  The
:class:`AttemptPolicy` applies the retry schedule and the queue lifetime, queues the
DSNs the senders asked for (RFC 3461 NOTIFY; never for a null sender) through ingest,
and returns the :class:`Outcome` list the queue records.

A message with the null sender (a bounce) is never answered by a DSN to its sender.
When one cannot be delivered to a local recipient (the original sender's mailbox
does not exist, say), it is not silently dropped: a report with the failed bounce
attached goes to ``postmaster@<that recipient's domain>`` (a double bounce, as
Postfix sends to ``2bounce_notice_recipient``), itself with the null sender.  Only
when the failed recipient is postmaster is the message logged and dropped.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from mailyard.config import Config
from mailyard.delivery.retry import RetryPolicy
from mailyard.directory.addresses import address_key, base_address, split_key
from mailyard.directory.expand import ROLE_POSTMASTER
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.api import Ingest, Origin, Submission
from mailyard.message import dsn
from mailyard.obs import log_event
from mailyard.queue.api import (
    AttemptStatus,
    DeliveryReply,
    Outcome,
    PostponedRecipient,
    QueuedRecipient,
    QueueEntry,
    RecipientState,
    WorkQueue,
)

log = logging.getLogger("mailyard.delivery")

TRANSPORT_LOCAL, TRANSPORT_SMTP = "local", "smtp"


@dataclass(frozen=True)
class AttemptResult:
    index: int
    address: str
    status: AttemptStatus
    reply: DeliveryReply
    transport: str = TRANSPORT_SMTP  # local | smtp
    relay: str = ""  # remote host tried, for logs and DSN Remote-MTA
    until: float = 0.0  # POSTPONED: when to try
    dsn_passed_on: bool = False  # the next hop took NOTIFY; success reports are its to give

    @classmethod
    def for_recipient(cls, r: QueuedRecipient, status: AttemptStatus, reply: DeliveryReply,
                      transport: str, relay: str = "", until: float = 0.0) -> AttemptResult:
        return cls(r.index, r.address, status, reply, transport, relay, until)


Pair = tuple[QueuedRecipient, AttemptResult]


class AttemptPolicy:
    """Retry, lifetime and notification policy over a finished attempt."""

    def __init__(self, config: Config, queue: WorkQueue, ingest: Ingest,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.queue = queue
        self.ingest = ingest
        self.clock = clock
        self.retry = RetryPolicy.from_config(config.delivery)

    def postponements(self, entry: QueueEntry, results: list[AttemptResult]
                      ) -> tuple[list[AttemptResult], list[PostponedRecipient]]:
        """Take the postponed results out: they wait without an attempt, unless the
        message's lifetime is over (then they go on as deferred, and :meth:`finish`
        fails them with the expiry reply and the bounce)."""
        expired = self.retry.expired(entry.created, self.clock())
        tried: list[AttemptResult] = []
        postponed: list[PostponedRecipient] = []
        for res in results:
            if res.status is not AttemptStatus.POSTPONED:
                tried.append(res)
            elif expired:
                tried.append(replace(res, status=AttemptStatus.DEFERRED))
            else:
                postponed.append(PostponedRecipient(res.index, res.until, res.reply))
        return tried, postponed

    async def finish(self, entry: QueueEntry, results: list[AttemptResult]) -> list[Outcome]:
        now = self.clock()
        by_index = {r.index: r for r in entry.recipients}
        outcomes: list[Outcome] = []
        failed: list[Pair] = []
        delayed: list[Pair] = []
        delivered: list[Pair] = []
        for res in results:
            rcpt = by_index[res.index]
            if res.status is AttemptStatus.DELIVERED:
                outcomes.append(Outcome(res.index, RecipientState.DELIVERED, res.reply))
                delivered.append((rcpt, res))
            elif res.status is AttemptStatus.FAILED:
                outcomes.append(Outcome(res.index, RecipientState.FAILED, res.reply))
                failed.append((rcpt, res))
            else:
                outcome = self.retry.after_temporary_failure(
                    res.index, res.reply, entry.created, rcpt.attempts + 1, now)
                outcomes.append(outcome)
                if outcome.state is RecipientState.FAILED:  # the lifetime is over
                    failed.append((rcpt, replace(res, status=AttemptStatus.FAILED,
                                                 reply=outcome.reply)))
                elif (not rcpt.delay_notified
                        and self.retry.delay_warning_due(entry.created, now)):
                    delayed.append((rcpt, res))
        if entry.envelope.sender:
            await self.notify(entry, failed, dsn.Notify.FAILURE)
        else:
            await self.double_bounce(entry, failed)
        await self.notify(entry, [(r, res) for r, res in delivered if not res.dsn_passed_on],
                          dsn.Notify.SUCCESS)
        if await self.notify(entry, delayed, dsn.Notify.DELAY):
            await self.queue.mark_delay_notified(entry.qid, [r.index for r, _ in delayed])
        return outcomes

    async def _original(self, entry: QueueEntry) -> io.BytesIO:
        """What a report may return of the original, read off the event loop."""
        return io.BytesIO(await self.queue.read_content(entry.qid, dsn.ORIGINAL_READ_LIMIT))

    async def _submit(self, envelope: Envelope, content: bytes) -> str:
        return await self.ingest.submit(Submission(Origin.DSN, envelope), content)

    async def notify(self, entry: QueueEntry, items: list[Pair], kind: dsn.Notify) -> bool:
        """Queue one DSN of ``kind`` covering ``items`` (those whose NOTIFY asks for it)."""
        if not items or not entry.envelope.sender:
            return False
        env = entry.envelope
        wanted = [(r, res) for r, res in items
                  if dsn.should_notify(env.recipients[r.index], kind)]
        if not wanted:
            return False
        reports = [self.report(env.recipients[r.index], res) for r, res in wanted]
        bounce_env, bounce = dsn.build_report(
            self.config.hostname, env, reports, await self._original(entry), entry.size,
            entry.created, now=self.clock(),
            retry_until=entry.created + self.config.delivery.max_lifetime)
        qid = await self._submit(bounce_env, bounce)
        log_event(log, "dsn queued", qid=entry.qid, dsn_qid=qid, kind=kind.value,
                  to=env.sender, recipients=",".join(res.address for _, res in wanted))
        return True

    async def double_bounce(self, entry: QueueEntry, failed: list[Pair]) -> int:
        """Report a bounce (null sender) that failed for local recipients to the
        postmaster of their domain; returns how many reports were queued."""
        env = entry.envelope
        by_domain: dict[str, list[AttemptResult]] = {}
        for _, res in failed:
            if res.transport != TRANSPORT_LOCAL:
                continue
            local, domain = split_key(base_address(address_key(res.address)))
            if local == ROLE_POSTMASTER:
                log_event(log, "undeliverable bounce to postmaster dropped",
                          level=logging.ERROR, qid=entry.qid, to=res.address,
                          reply=str(res.reply))
                continue
            by_domain.setdefault(domain, []).append(res)
        queued = 0
        for domain, results in by_domain.items():
            postmaster = f"{ROLE_POSTMASTER}@{domain}"
            reports = [self.report(env.recipients[res.index], res) for res in results]
            bounce_env, bounce = dsn.build_report(
                self.config.hostname, replace(env, sender=postmaster), reports,
                await self._original(entry), entry.size, entry.created, now=self.clock(),
                qid=entry.qid,
                trusted=True)  # to our own postmaster: the failed bounce whole
            qid = await self._submit(bounce_env, bounce)
            log_event(log, "double bounce queued", qid=entry.qid, dsn_qid=qid, to=postmaster,
                      recipients=",".join(res.address for res in results))
            queued += 1
        return queued

    def report(self, recipient: Recipient, res: AttemptResult) -> dsn.RecipientReport:
        """One recipient's DSN block (mail handed on over SMTP was relayed)."""
        return dsn.RecipientReport.from_attempt(
            recipient, res.status, res.reply, res.relay, self.clock(),
            relayed=res.transport == TRANSPORT_SMTP)

"""Turning delivery attempts into queue states, bounces and delay notices.

Agents report an :class:`AttemptResult` per recipient (delivered, deferred or failed,
with the reply; or postponed: not tried, because its destination is suspended or busy,
see :mod:`mailyard.delivery.destinations`).  The :class:`Finalizer` applies the retry schedule and the queue
lifetime, queues the DSNs the senders asked for (RFC 3461 NOTIFY; never for a null
sender), and returns the :class:`Outcome` list the spool records.

A message with the null sender (a bounce) is never answered by a DSN to its sender.
When one cannot be delivered to a local recipient (the original sender's mailbox
does not exist, say), it is not silently dropped: a report with the failed bounce
attached goes to ``postmaster@<that recipient's domain>`` (a double bounce, as
Postfix sends to ``2bounce_notice_recipient``), itself with the null sender.  Only
when the failed recipient is postmaster is the message logged and dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from mailyard.config import Config
from mailyard.directory.addresses import address_key, base_address, split_key
from mailyard.directory.expand import ROLE_POSTMASTER
from mailyard.envelope import Recipient
from mailyard.obs import log_event
from mailyard.queue.api import Outcome, QueuedRecipient, QueueEntry, RecipientState

if TYPE_CHECKING:
    from mailyard.delivery.recorder import Postponement

log = logging.getLogger("mailyard.delivery")

DELIVERED, DEFERRED, FAILED = "delivered", "deferred", "failed"
POSTPONED = "postponed"  # not tried: waits until ``until``, no attempt counted


@dataclass(frozen=True)
class AttemptResult:
    index: int
    address: str
    kind: str  # delivered | deferred | failed
    reply: str
    transport: str = "smtp"  # local | smtp
    relay: str = ""  # remote host that answered, for logs and DSN Remote-MTA
    until: float = 0.0  # POSTPONED: when to try
    dsn_passed_on: bool = False  # the next hop took NOTIFY; success reports are its to give

    @classmethod
    def for_recipient(cls, r: QueuedRecipient, kind: str, reply: str, transport: str,
                      relay: str = "", until: float = 0.0) -> AttemptResult:
        return cls(r.index, r.address, kind, reply, transport, relay, until)

    @classmethod
    def from_local(cls, r: QueuedRecipient, result: Any, forwarded_qid: str = "") -> AttemptResult:
        """From a LocalDeliveryResult (kind, reply); notes a forwarded copy's queue id."""
        reply = f"{result.reply} (forwarded as {forwarded_qid})" if forwarded_qid else result.reply
        return cls(r.index, r.address, result.kind, reply, "local")


class Finalizer:
    def __init__(self, config: Config, spool: Any, clock: Callable[[], float]) -> None:
        from mailyard.delivery.retry import RetryPolicy

        self.config = config
        self.spool = spool
        self.clock = clock
        self.retry = RetryPolicy.from_config(config.delivery)

    def postponements(self, entry: QueueEntry, results: list[AttemptResult]
                      ) -> tuple[list[AttemptResult], list[Postponement]]:
        """Take the postponed results out: they wait without an attempt, unless the
        message's lifetime is over (then they go on as deferred, and :meth:`finish`
        fails them with the expiry reply and the bounce)."""
        from mailyard.delivery.recorder import Postponement

        expired = self.retry.expired(entry.created, self.clock())
        tried: list[AttemptResult] = []
        postponed: list[Postponement] = []
        for res in results:
            if res.kind != POSTPONED:
                tried.append(res)
            elif expired:
                tried.append(replace(res, kind=DEFERRED))
            else:
                postponed.append(Postponement(res.index, res.until, res.reply))
        return tried, postponed

    async def finish(self, entry: QueueEntry, results: list[AttemptResult]) -> list[Outcome]:
        now = self.clock()
        by_index = {r.index: r for r in entry.recipients}
        outcomes: list[Outcome] = []
        failed: list[tuple[QueuedRecipient, AttemptResult]] = []
        delayed: list[tuple[QueuedRecipient, AttemptResult]] = []
        delivered: list[tuple[QueuedRecipient, AttemptResult]] = []
        for res in results:
            rcpt = by_index[res.index]
            if res.kind == DELIVERED:
                outcomes.append(Outcome(res.index, RecipientState.DELIVERED, res.reply))
                delivered.append((rcpt, res))
            elif res.kind == FAILED:
                outcomes.append(Outcome(res.index, RecipientState.FAILED, res.reply))
                failed.append((rcpt, res))
            elif self.retry.expired(entry.created, now):
                reply = self.retry.expired_reply(res.reply)
                expired = AttemptResult(res.index, res.address, FAILED, reply, res.transport,
                                        res.relay)
                outcomes.append(Outcome(res.index, RecipientState.FAILED, reply))
                failed.append((rcpt, expired))
            else:
                next_at = self.retry.next_attempt(rcpt.attempts + 1, now, arrival=entry.created)
                outcomes.append(Outcome(res.index, RecipientState.DEFERRED, res.reply, next_at))
                if (not rcpt.delay_notified
                        and self.retry.delay_warning_due(entry.created, now)):
                    delayed.append((rcpt, res))
        if entry.envelope.sender:
            await self.notify(entry, failed, "failure")
        else:
            await self.double_bounce(entry, failed)
        await self.notify(entry, [(r, res) for r, res in delivered if not res.dsn_passed_on],
                          "success")
        if await self.notify(entry, delayed, "delay"):
            self.spool.mark_delay_notified(entry.qid, [r.index for r, _ in delayed])
        return outcomes

    async def notify(self, entry: QueueEntry, items: list[tuple[QueuedRecipient, AttemptResult]],
                     kind: str) -> bool:
        """Queue one DSN of ``kind`` covering ``items`` (those whose NOTIFY asks for it)."""
        from mailyard.message import dsn

        if not items or not entry.envelope.sender:
            return False
        env = entry.envelope
        wanted = [(r, res) for r, res in items
                  if dsn.should_notify(env.recipients[r.index], kind)]
        if not wanted:
            return False
        reports = [self.report(env.recipients[r.index], res, kind) for r, res in wanted]
        with self.spool.open_content(entry.qid) as content:
            bounce_env, bounce = dsn.build_report(
                self.config.hostname, env, reports, content, entry.size, entry.created,
                now=self.clock(), retry_until=entry.created + self.config.delivery.max_lifetime)
        qid = await self.spool.enqueue(bounce_env, bounce)
        log_event(log, "dsn queued", qid=entry.qid, dsn_qid=qid, kind=kind,
                  to=env.sender, recipients=",".join(res.address for _, res in wanted))
        return True

    async def double_bounce(self, entry: QueueEntry,
                            failed: list[tuple[QueuedRecipient, AttemptResult]]) -> int:
        """Report a bounce (null sender) that failed for local recipients to the
        postmaster of their domain; returns how many reports were queued."""
        from mailyard.message import dsn

        env = entry.envelope
        by_domain: dict[str, list[AttemptResult]] = {}
        for _, res in failed:
            if res.transport != "local":
                continue
            local, domain = split_key(base_address(address_key(res.address)))
            if local == ROLE_POSTMASTER:
                log_event(log, "undeliverable bounce to postmaster dropped",
                          level=logging.ERROR, qid=entry.qid, to=res.address, reply=res.reply)
                continue
            by_domain.setdefault(domain, []).append(res)
        queued = 0
        for domain, results in by_domain.items():
            postmaster = f"{ROLE_POSTMASTER}@{domain}"
            reports = [dsn.RecipientReport.from_attempt(env.recipients[res.index], res.kind,
                                                        "failure", res.reply, res.relay,
                                                        self.clock()) for res in results]
            with self.spool.open_content(entry.qid) as content:
                bounce_env, bounce = dsn.build_report(
                    self.config.hostname, replace(env, sender=postmaster), reports, content,
                    entry.size, entry.created, now=self.clock(), qid=entry.qid,
                    trusted=True)  # to our own postmaster: the failed bounce whole
            qid = await self.spool.enqueue(bounce_env, bounce)
            log_event(log, "double bounce queued", qid=entry.qid, dsn_qid=qid, to=postmaster,
                      recipients=",".join(res.address for res in results))
            queued += 1
        return queued

    def report(self, recipient: Recipient, res: AttemptResult, kind: str) -> Any:
        """One recipient's DSN block.  Mail handed to another MTA over SMTP was relayed,
        not delivered (RFC 3464 2.3.3, RFC 3461 5.2.2)."""
        from mailyard.message import dsn

        if kind == "success" and res.transport == "smtp":
            return dsn.RecipientReport.from_reply(recipient, dsn.DsnAction.RELAYED, res.reply,
                                                  res.relay, self.clock())
        return dsn.RecipientReport.from_attempt(recipient, res.kind, kind, res.reply, res.relay,
                                                self.clock())

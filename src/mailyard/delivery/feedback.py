"""The delivery side of bounce, complaint and unsubscribe handling.

**The feedback agent.**  Mail to a feedback address (``bounces+<token>``,
``unsubscribe+<token>``, the complaint address: :mod:`mailyard.feedback.addresses`)
is not stored in a mailbox: the dispatcher hands those recipients to
:class:`FeedbackAgent`, a delivery agent beside the Maildir one.  It reads the message
(up to :data:`mailyard.feedback.mime.MAX_INPUT`), classifies it once
(:func:`mailyard.feedback.classify.classify`), plans the actions
(:mod:`mailyard.feedback.actions`) and applies them (:mod:`mailyard.services.feedback`),
in its own thread.  Why an agent and not an ingest hook: the message is durably queued
before the 250, so a report is never lost when the contact database is busy (the
attempt is deferred and retried like any delivery), the SMTP worker never parses a
report or writes the database while the client waits, and the DSNs Mailyard itself
makes for campaign messages (queued to ``bounces+<token>@bounce_domain``) take the very
same path without a network hop.  A report that leads to nothing (an auto-reply, a
person's answer, an unreadable message) is logged and counted as delivered: nothing
here is ever answered with mail, so there is no bounce of a bounce.  A recipient whose
token does not verify (refused at RCPT on every listener, so it comes only from local
submission) fails with 550 5.1.1; its transport is not ``local``, so a failed report
with the null sender is dropped with a log line, not sent to postmaster.

**Delivery results.**  When a message's envelope sender is a VERP address of ours, the
results of its attempts are what the campaign's report shows: :class:`DeliveryResults`
turns them into delivered, deferred and bounced actions (the bounce's severity from
the reply, :func:`mailyard.feedback.status.severity`: ``550 5.1.1`` is hard and
suppresses the address at once, ``552 5.2.2`` or a ``5.7.x`` policy refusal is soft, an
expiry after temporary failures is soft) and writes them in batches, in the feedback
thread, off the event loop.  For a transactional message (a token naming a message
id) its recipients' delivered and bounced results are kept by address, so its soft
bounces count toward suppression as a campaign's do (a delivery shows the address
works); its deferrals are not recorded.  A sender that does not start with the bounce
prefix costs one string comparison; a VERP sender's token is verified once (cached by
sender).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, TypeVar

from mailyard.bulk.store import StoreConflict
from mailyard.config import Config
from mailyard.daemon.secret import ServerSecretError
from mailyard.delivery.attempt import AttemptResult
from mailyard.feedback import mime
from mailyard.feedback.actions import ActionKind, FeedbackAction, Plan, Source, plan
from mailyard.feedback.addresses import FeedbackAddress, FeedbackAddresses
from mailyard.feedback.classify import classify
from mailyard.feedback.model import Feedback, Severity
from mailyard.feedback.policy import SoftBouncePolicy
from mailyard.feedback.status import severity
from mailyard.feedback.verp import CampaignRecipient, VerpTarget
from mailyard.metrics import FEEDBACK_ACTIONS, FEEDBACK_REPORTS
from mailyard.obs import Metrics, log_event
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import (
    AttemptStatus,
    DeliveryReply,
    Outcome,
    QueuedRecipient,
    QueueEntry,
    RecipientState,
)
from mailyard.services.feedback import FeedbackService

log = logging.getLogger("mailyard.feedback")

TRANSPORT_FEEDBACK = "feedback"
MAX_BATCH = 1000  # delivery results per write
SENDER_CACHE = 4096

REPLY_PROCESSED = Reply(250, "2.0.0", "Report processed")
REPLY_BAD_TOKEN = Reply(550, "5.1.1", "Recipient address rejected: user unknown")
REPLY_STORE_BUSY = Reply(451, "4.3.0", "Feedback store unavailable, try again later")

_T = TypeVar("_T")
_STORE_ERRORS = (sqlite3.Error, OSError, ServerSecretError, StoreConflict)


def open_service(config: Config) -> FeedbackService:
    from mailyard.services.setup import open_campaign_store, open_contacts

    contacts = open_contacts(config)
    return FeedbackService(contacts.store, open_campaign_store(contacts), SoftBouncePolicy(
        config.bulk.soft_bounce_threshold, config.bulk.soft_bounce_window_days))


class FeedbackThread:
    """One thread for every feedback write (SQLite writes are serialised anyway), with
    the service opened in it the first time it is needed."""

    def __init__(self, open_: Callable[[], FeedbackService]) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")
        self._open = open_
        self._service: FeedbackService | None = None

    def service(self) -> FeedbackService:
        """In the feedback thread only."""
        if self._service is None:
            self._service = self._open()
        return self._service

    async def run(self, job: Callable[[FeedbackService], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: job(self.service()))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class FeedbackAgent:
    def __init__(self, addresses: FeedbackAddresses, thread: FeedbackThread,
                 metrics: Metrics) -> None:
        self.addresses = addresses
        self.thread = thread
        self.metrics = metrics

    def owns(self, address: str) -> FeedbackAddress | None:
        return self.addresses.match(address)

    async def deliver(self, entry: QueueEntry, recipients: Sequence[QueuedRecipient],
                      open_content: Callable[[], BinaryIO]) -> list[AttemptResult]:
        try:
            return await self.thread.run(
                lambda service: self._process(service, entry, recipients, open_content))
        except _STORE_ERRORS as exc:
            log_event(log, "feedback store unavailable", level=logging.ERROR, qid=entry.qid,
                      error=f"{type(exc).__name__}: {exc}")
            return [_result(r, AttemptStatus.DEFERRED, REPLY_STORE_BUSY) for r in recipients]

    def _process(self, service: FeedbackService, entry: QueueEntry,
                 recipients: Sequence[QueuedRecipient],
                 open_content: Callable[[], BinaryIO]) -> list[AttemptResult]:
        feedback: Feedback | None = None
        out = []
        for r in recipients:
            where = self.addresses.match(r.address)
            if where is None or not where.valid:
                self.metrics.inc(FEEDBACK_REPORTS, kind=where.kind.value if where else "none",
                                 verdict="bad-token")
                log_event(log, "feedback address with a bad token", qid=entry.qid,
                          to=r.address, sender=entry.envelope.sender)
                out.append(_result(r, AttemptStatus.FAILED, REPLY_BAD_TOKEN))
                continue
            if feedback is None:
                with open_content() as f:
                    feedback = classify(f.read(mime.MAX_INPUT + 1))
            todo = plan(where, feedback, self.addresses.locate)
            notes = [service.apply(action) for action in todo.actions]
            self._count(where, feedback, todo)
            log_event(log, "feedback processed", qid=entry.qid, to=r.address,
                      sender=entry.envelope.sender, kind=where.kind.value,
                      verdict=feedback.verdict.value, format=feedback.format.value,
                      result="; ".join(notes) or todo.note)
            out.append(_result(r, AttemptStatus.DELIVERED, REPLY_PROCESSED))
        return out

    def _count(self, where: FeedbackAddress, feedback: Feedback, todo: Plan) -> None:
        self.metrics.inc(FEEDBACK_REPORTS, kind=where.kind.value,
                         verdict=feedback.verdict.value)
        for action in todo.actions:
            self.metrics.inc(FEEDBACK_ACTIONS, action=action.kind.value,
                             source=action.source.value)


class DeliveryResults:
    """Delivery results of messages with a VERP sender, recorded in batches."""

    def __init__(self, addresses: FeedbackAddresses, thread: FeedbackThread,
                 metrics: Metrics) -> None:
        self.thread = thread
        self.metrics = metrics
        self.target_of: Callable[[str], VerpTarget | None] = functools.lru_cache(
            maxsize=SENDER_CACHE)(addresses.sender_target)
        self._verp_prefixed = addresses.verp_prefixed
        self._pending: list[FeedbackAction] = []
        self._flushing = False

    def observe(self, entry: QueueEntry, results: Sequence[AttemptResult],
                outcomes: Sequence[Outcome]) -> bool:
        """Note the results of one attempt; True when a flush should be started
        (:meth:`flush`, which the caller runs as a background task)."""
        sender = entry.envelope.sender
        if not self._verp_prefixed(sender):
            return False
        target = self.target_of(sender)
        if target is None:
            return False
        final = {o.index: o for o in outcomes}
        for res in results:
            action = result_action(target, res, final.get(res.index))
            if action is not None:
                self._pending.append(action)
        if self._flushing or not self._pending:
            return False
        self._flushing = True
        return True

    async def flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    await self.thread.run(functools.partial(_apply_many, batch))
                except _STORE_ERRORS as exc:
                    log_event(log, "delivery results not recorded", level=logging.ERROR,
                              results=len(batch), error=f"{type(exc).__name__}: {exc}")
                    continue
                for action in batch:
                    self.metrics.inc(FEEDBACK_ACTIONS, action=action.kind.value,
                                     source=action.source.value)
        finally:
            self._flushing = False


def _apply_many(batch: list[FeedbackAction], service: FeedbackService) -> list[str]:
    return service.apply_many(batch)


def result_action(target: VerpTarget, res: AttemptResult,
                  outcome: Outcome | None) -> FeedbackAction | None:
    """What one attempt result of a VERP-sender message means for its contact."""
    if res.transport == TRANSPORT_FEEDBACK:
        return None
    reply = outcome.reply if outcome is not None else res.reply
    expired = (res.status is AttemptStatus.DEFERRED and outcome is not None
               and outcome.state is RecipientState.FAILED)
    if res.status is AttemptStatus.DELIVERED:
        kind = ActionKind.DELIVERED
    elif res.status is AttemptStatus.FAILED:
        hard = severity(reply.status or None, str(reply)) is Severity.HARD
        kind = ActionKind.HARD_BOUNCE if hard else ActionKind.SOFT_BOUNCE
    elif expired:
        kind = ActionKind.SOFT_BOUNCE
    elif res.status is AttemptStatus.DEFERRED:
        kind = ActionKind.DEFERRED
    else:
        return None
    if kind is ActionKind.DEFERRED and not isinstance(target, CampaignRecipient):
        return None  # a transactional message has no campaign to record it for
    return FeedbackAction(kind, target, Source.DELIVERY, res.address, reply.status or None,
                          str(reply))


def _result(r: QueuedRecipient, status: AttemptStatus, reply: Reply) -> AttemptResult:
    return AttemptResult(r.index, r.address, status, DeliveryReply(reply), TRANSPORT_FEEDBACK)

"""The delivery side of feedback (mailyard.delivery.feedback): the agent for mail to
the feedback addresses, and the results of VERP-sender messages as campaign actions."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

from mailyard.delivery.attempt import TRANSPORT_LOCAL, TRANSPORT_SMTP, AttemptResult
from mailyard.delivery.feedback import (
    TRANSPORT_FEEDBACK,
    DeliveryResults,
    FeedbackAgent,
    FeedbackThread,
    result_action,
)
from mailyard.envelope import Envelope, Recipient
from mailyard.feedback.actions import ActionKind, FeedbackAction, Source
from mailyard.feedback.addresses import FeedbackAddresses
from mailyard.feedback.verp import CampaignRecipient, TransactionalMessage, verp_address, verp_key
from mailyard.metrics import FEEDBACK_ACTIONS, FEEDBACK_REPORTS, Metrics
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import (
    AttemptStatus,
    DeliveryReply,
    Outcome,
    QueuedRecipient,
    QueueEntry,
    RecipientState,
)

SAMPLES = Path(__file__).parents[1] / "feedback" / "samples"
KEY = verp_key(b"s" * 32)
TARGET = CampaignRecipient(5, 77)
VERP = verp_address(TARGET, KEY, "bounce.example.org")
TOKEN = VERP.partition("+")[2].partition("@")[0]


class FakeService:
    def __init__(self, fail: bool = False) -> None:
        self.applied: list[FeedbackAction] = []
        self.batches: list[list[FeedbackAction]] = []
        self.fail = fail

    def apply(self, action: FeedbackAction) -> str:
        if self.fail:
            raise sqlite3.OperationalError("database is locked")
        self.applied.append(action)
        return action.kind.value

    def apply_many(self, actions: list[FeedbackAction]) -> list[str]:
        if self.fail:
            raise sqlite3.OperationalError("database is locked")
        self.batches.append(list(actions))
        return [a.kind.value for a in actions]


def addresses() -> FeedbackAddresses:
    return FeedbackAddresses("bounce.example.org", lambda: KEY)


def entry(sender: str, *rcpts: str) -> QueueEntry:
    env = Envelope(sender, tuple(Recipient(r) for r in rcpts))
    return QueueEntry("q1", env, 100, 0.0, tuple(
        QueuedRecipient(i, r, RecipientState.PENDING) for i, r in enumerate(rcpts)))


def reply(code: int, status: str, text: str, host: str = "mx.example.net") -> DeliveryReply:
    return DeliveryReply(Reply(code, status, text), host)


def res(i: int, status: AttemptStatus, r: DeliveryReply,
        transport: str = TRANSPORT_SMTP) -> AttemptResult:
    return AttemptResult(i, f"r{i}@example.net", status, r, transport)


# --- results of VERP-sender messages ----------------------------------------------------

def test_results_become_actions_by_reply() -> None:
    ok = reply(250, "2.0.0", "queued")
    unknown = reply(550, "5.1.1", "no such user")
    full = reply(552, "5.2.2", "mailbox full")
    blocked = reply(554, "5.7.1", "blocked by policy")
    later = reply(451, "4.7.1", "greylisted")
    expired = reply(451, "4.4.7", "delivery time expired")

    def kind(result, outcome=None):
        action = result_action(TARGET, result, outcome)
        return action.kind if action else None

    assert kind(res(0, AttemptStatus.DELIVERED, ok)) is ActionKind.DELIVERED
    assert kind(res(0, AttemptStatus.FAILED, unknown)) is ActionKind.HARD_BOUNCE
    # RFC 3463: 5.2.2 mailbox full and 5.7.x policy are not the address's fault.
    assert kind(res(0, AttemptStatus.FAILED, full)) is ActionKind.SOFT_BOUNCE
    assert kind(res(0, AttemptStatus.FAILED, blocked)) is ActionKind.SOFT_BOUNCE
    assert kind(res(0, AttemptStatus.DEFERRED, later),
                Outcome(0, RecipientState.DEFERRED, later, 10.0)) is ActionKind.DEFERRED
    # Deferred past the lifetime: the queue fails it; a soft bounce.
    assert kind(res(0, AttemptStatus.DEFERRED, later),
                Outcome(0, RecipientState.FAILED, expired)) is ActionKind.SOFT_BOUNCE
    assert kind(res(0, AttemptStatus.FAILED, unknown, TRANSPORT_FEEDBACK)) is None
    # A transactional message: deliveries and failures are kept by address (they
    # decide suppression); a deferral is not recorded.
    tx = TransactionalMessage("m-1")
    assert result_action(tx, res(0, AttemptStatus.DELIVERED, ok), None).kind is \
        ActionKind.DELIVERED
    assert result_action(tx, res(0, AttemptStatus.DEFERRED, later),
                         Outcome(0, RecipientState.DEFERRED, later, 10.0)) is None
    assert result_action(tx, res(0, AttemptStatus.DEFERRED, later),
                         Outcome(0, RecipientState.FAILED, expired)).kind is \
        ActionKind.SOFT_BOUNCE
    assert result_action(tx, res(0, AttemptStatus.FAILED, unknown), None).kind is \
        ActionKind.HARD_BOUNCE
    action = result_action(TARGET, res(0, AttemptStatus.FAILED, unknown), None)
    assert action == FeedbackAction(ActionKind.HARD_BOUNCE, TARGET, Source.DELIVERY,
                                    "r0@example.net", "5.1.1", "550 5.1.1 no such user")


def test_other_senders_cost_no_token_check_and_are_not_recorded() -> None:
    def no_key() -> bytes:
        raise AssertionError("token verified for a non-VERP sender")

    thread = FeedbackThread(FakeService)
    results = DeliveryResults(FeedbackAddresses("bounce.example.org", no_key), thread,
                              Metrics())
    ok = [res(0, AttemptStatus.DELIVERED, reply(250, "2.0.0", "ok"))]
    for sender in ("", "alice@example.org", "bounces@bounce.example.org",
                   "bouncesx@bounce.example.org"):
        assert results.observe(entry(sender, "r0@example.net"), ok, []) is False
    thread.close()


def test_results_are_written_in_batches_in_the_feedback_thread() -> None:
    service = FakeService()
    thread = FeedbackThread(lambda: service)
    metrics = Metrics()
    results = DeliveryResults(addresses(), thread, metrics)
    e = entry(VERP, "r0@example.net", "r1@example.net")
    attempt = [res(0, AttemptStatus.DELIVERED, reply(250, "2.0.0", "ok")),
               res(1, AttemptStatus.FAILED, reply(550, "5.1.1", "unknown"))]

    async def go() -> None:
        assert results.observe(e, attempt, []) is True
        assert results.observe(e, attempt[:1], []) is False  # joins the pending flush
        await results.flush()

    asyncio.run(go())
    thread.close()
    [batch] = service.batches
    assert [a.kind for a in batch] == [ActionKind.DELIVERED, ActionKind.HARD_BOUNCE,
                                       ActionKind.DELIVERED]
    assert metrics.get(FEEDBACK_ACTIONS, action="hard-bounce", source="delivery") == 1


def test_a_store_failure_loses_the_batch_but_not_the_loop() -> None:
    thread = FeedbackThread(lambda: FakeService(fail=True))
    results = DeliveryResults(addresses(), thread, Metrics())
    e = entry(VERP, "r0@example.net")

    async def go() -> bool:
        results.observe(e, [res(0, AttemptStatus.DELIVERED, reply(250, "2.0.0", "ok"))], [])
        await results.flush()
        return results.observe(e, [res(0, AttemptStatus.DELIVERED,
                                       reply(250, "2.0.0", "ok"))], [])

    assert asyncio.run(go()) is True  # a new flush may start
    thread.close()


# --- the agent -------------------------------------------------------------------------

def deliver(agent: FeedbackAgent, e: QueueEntry, content: bytes) -> list[AttemptResult]:
    opened = []

    def open_content():
        opened.append(1)
        return io.BytesIO(content)

    async def go():
        return await agent.deliver(e, list(e.recipients), open_content)

    out = asyncio.run(go())
    assert len(opened) <= 1  # read and classified once per message
    return out


def test_agent_processes_a_dsn_and_never_answers_with_mail() -> None:
    service = FakeService()
    metrics = Metrics()
    thread = FeedbackThread(lambda: service)
    agent = FeedbackAgent(addresses(), thread, metrics)
    dsn = (SAMPLES / "postfix-dsn.eml").read_bytes().replace(b"TOKEN", TOKEN.encode())
    [out] = deliver(agent, entry("", VERP), dsn)
    assert (out.status, out.transport, out.reply.code) == (AttemptStatus.DELIVERED,
                                                           TRANSPORT_FEEDBACK, 250)
    [action] = service.applied
    assert (action.kind, action.target) == (ActionKind.HARD_BOUNCE, TARGET)
    assert metrics.get(FEEDBACK_REPORTS, kind="bounce", verdict="hard-bounce") == 1
    # An auto-reply: processed (nothing to do), delivered: no bounce of a bounce.
    ooo = (SAMPLES / "ooo-rfc3834.eml").read_bytes()
    [out] = deliver(agent, entry("", VERP), ooo)
    assert out.status is AttemptStatus.DELIVERED and len(service.applied) == 1
    thread.close()


def test_agent_fails_a_bad_token_and_defers_when_the_store_is_busy() -> None:
    thread = FeedbackThread(FakeService)
    agent = FeedbackAgent(addresses(), thread, Metrics())
    forged = "bounces+aaaaaaaaaaaaaaaaaaaaaaaaaa@bounce.example.org"
    [out] = deliver(agent, entry("someone@example.net", forged), b"Subject: x\n\nx\n")
    assert (out.status, out.reply.code, out.reply.status) == (AttemptStatus.FAILED, 550,
                                                              "5.1.1")
    assert out.transport != TRANSPORT_LOCAL  # a failed null-sender copy is not re-bounced
    thread.close()
    unsub = f"unsubscribe+{TOKEN}@bounce.example.org"
    busy = FeedbackThread(lambda: FakeService(fail=True))
    agent = FeedbackAgent(addresses(), busy, Metrics())
    [out] = deliver(agent, entry("reader@example.net", unsub), b"Subject: unsubscribe\n\n\n")
    assert (out.status, out.reply.code) == (AttemptStatus.DEFERRED, 451)
    busy.close()

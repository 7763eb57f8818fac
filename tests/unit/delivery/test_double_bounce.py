"""A bounce (null sender) that cannot be delivered locally goes to postmaster (a double
bounce), never back to a sender; only postmaster's own failure is dropped."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from pathlib import Path

import pytest

from mailyard.config import Config
from mailyard.delivery.attempt import AttemptPolicy, AttemptResult
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.pipeline import QueueIngest
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import AttemptStatus, DeliveryReply, FinishedEntry, RecipientState
from mailyard.queue.spool import FileSpool
from mailyard.queue.threaded import ThreadedSpool

NOW = 1_700_000_000.0
BOUNCE = (b"From: MAILER-DAEMON@mx.example.test\r\nSubject: Undelivered Mail\r\n\r\n"
          b"the original bounce\r\n")


@pytest.fixture
def spool(tmp_path: Path):
    s = FileSpool(tmp_path / "queue", "mx.example.test", clock=lambda: NOW)
    yield s
    s.close()


def fail_all(spool: FileSpool, sender: str, recipient: str, transport: str = "local",
             ) -> list[tuple[Envelope, bytes]]:
    """Queue a message, fail its recipient through the AttemptPolicy; the new messages."""
    env = Envelope(sender, (Recipient(recipient),), received_at=NOW)
    qid = asyncio.run(spool.enqueue(env, BOUNCE))
    (entry,) = spool.claim_due(NOW, 10, 60)
    queue = ThreadedSpool(spool)
    policy = AttemptPolicy(Config(hostname="mx.example.test", local_domains=("example.test",)),
                           queue, QueueIngest(queue, "mx.example.test"), lambda: NOW)
    result = AttemptResult(0, recipient, AttemptStatus.FAILED, DeliveryReply(
        Reply(550, "5.1.1", "<ghost@example.test>: user unknown")), transport)
    outcomes = asyncio.run(policy.finish(entry, [result]))
    assert [o.state for o in outcomes] == [RecipientState.FAILED]
    spool.record_many([FinishedEntry(qid, outcomes)])
    out = []
    for e in spool.list():
        with spool.open_content(e.qid) as f:
            out.append((e.envelope, f.read()))
    return out


def test_failed_bounce_goes_to_postmaster_of_the_domain(spool: FileSpool) -> None:
    [(env, content)] = fail_all(spool, "", "ghost@example.test")
    assert env.sender == ""  # never answered by another bounce
    assert [r.address for r in env.recipients] == ["postmaster@example.test"]
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert msg["To"] == "postmaster@example.test"
    assert msg.get_content_type() == "multipart/report"
    text = content.decode()
    assert "Final-Recipient: rfc822; ghost@example.test" in text
    assert "550 5.1.1" in text


def test_failed_double_bounce_to_postmaster_is_dropped(spool: FileSpool,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    with caplog.at_level(logging.ERROR, logger="mailyard.delivery"):
        assert fail_all(spool, "", "postmaster@example.test") == []
    assert "undeliverable bounce to postmaster dropped" in caplog.text


def test_remote_failure_of_a_null_sender_message_is_not_reported(spool: FileSpool) -> None:
    """RFC 5321 4.5.5: no DSN for the null sender; remote failures are the remote
    postmaster's business."""
    assert fail_all(spool, "", "carol@remote.test", transport="smtp") == []


def test_ordinary_failure_still_goes_to_the_sender(spool: FileSpool) -> None:
    [(env, _)] = fail_all(spool, "alice@example.test", "ghost@example.test")
    assert env.sender == "" and [r.address for r in env.recipients] == ["alice@example.test"]

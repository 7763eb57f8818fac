"""Local submissions (mailyard send / sendmail): header handling on bytes."""

from __future__ import annotations

import asyncio
import io

from mailyard.cli.send import read_sendmail_input
from mailyard.ingest.pipeline import QueueIngest
from mailyard.message.submit import (
    compose,
    is_valid_address,
    local_submission,
    prepare_local_message,
    recipients_from_headers,
    remove_header,
    split_head,
    to_crlf,
)
from tests.support.memory_queue import MemoryQueue


def queued(raw: bytes, user: str, strip_bcc: bool, sender: str = "") -> bytes:
    """What ``mailyard sendmail`` puts in the queue: prepared here, then through ingest."""
    content = prepare_local_message(raw, user=user, strip_bcc=strip_bcc, sender=sender)
    queue = MemoryQueue()
    submission = local_submission(sender or "u@x.test", ["a@x.test"], content, user)
    qid = asyncio.run(QueueIngest(queue, "mx.test").submit(submission, content))
    return queue.content(qid)


def test_to_crlf_normalises_every_line_ending():
    assert to_crlf(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd"


def test_split_head():
    assert split_head(b"A: 1\r\nB: 2\r\n\r\nbody\r\n") == (b"A: 1\r\nB: 2\r\n", b"body\r\n")
    assert split_head(b"\r\nbody") == (b"", b"body")


def test_recipients_from_to_cc_bcc():
    head = (b"To: Ann <ann@example.test>, bob@example.test\r\nCc: carol@example.test\r\n"
            b"Bcc: dave@example.test\r\nSubject: x\r\n")
    assert recipients_from_headers(head) == ["ann@example.test", "bob@example.test",
                                             "carol@example.test", "dave@example.test"]


def test_remove_header_with_continuation_lines():
    head = b"To: a@x.test\r\nBcc: b@x.test,\r\n c@x.test\r\nSubject: s"
    assert remove_header(head, "bcc") == b"To: a@x.test\r\nSubject: s"


def test_prepare_adds_missing_fields_and_strips_bcc():
    out = queued(b"To: a@x.test\nBcc: b@x.test\n\nhello\n", user="alice", strip_bcc=True,
                 sender="alice@x.test")
    head, body = split_head(out)
    assert head.startswith(b"Received: by mx.test (Mailyard, from user alice);")
    assert b"Bcc:" not in head
    for field in (b"From: alice@x.test", b"Date: ", b"Message-ID: <"):
        assert field in head
    assert body == b"hello\r\n"


def test_prepare_keeps_existing_fields():
    raw = (b"From: x@x.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
           b"Message-ID: <1@x>\r\n\r\nb\r\n")
    out = queued(raw, user="u", strip_bcc=False)
    assert out.count(b"Date:") == 1 and out.count(b"Message-ID:") == 1


def test_sendmail_dot_ends_input_unless_i():
    data = b"Subject: s\n\nline\n.\nafter\n"
    assert read_sendmail_input(io.BytesIO(data), dot_ends=True) == b"Subject: s\n\nline\n"
    assert read_sendmail_input(io.BytesIO(data), dot_ends=False) == data


def test_compose_and_address_check():
    raw = compose("a@x.test", ["b@y.test"], "Hi", "body\n", hostname="mx.test")
    assert b"Subject: Hi\r\n" in raw and raw.endswith(b"body\r\n")
    assert is_valid_address("a@x.test") and not is_valid_address("not an address")

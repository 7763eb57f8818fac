"""Ingest (mailyard.ingest.pipeline): the one way into the queue, without a network."""

from __future__ import annotations

import asyncio

import pytest

from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.api import IngestRefused, Origin, Submission
from mailyard.ingest.pipeline import QueueIngest, header_end
from mailyard.message.headerblock import inspect_header
from mailyard.proto.smtp.replies import REPLY_LOOP, REPLY_MESSAGE_TOO_BIG
from mailyard.srs import Srs
from tests.support.memory_queue import MemoryQueue

ENVELOPE = Envelope(sender="a@x.test", recipients=(Recipient("b@y.test"),),
                    client_ip="192.0.2.1", client_helo="client.test\r\nX-Evil: 1",
                    received_at=0.0)
HEADER = b"From: a@x.test\r\nSubject: s\r\n"


def smtp(origin: Origin) -> Submission:
    return Submission(origin=origin, envelope=ENVELOPE, protocol="ESMTPS",
                      tls="TLSv1.3 with cipher X")


class Signer:
    """A test hook: one field computed from the whole header at commit."""

    def __init__(self) -> None:
        self.seen: list[tuple[Origin, bytes]] = []

    def at_commit(self, submission: Submission, header: bytes) -> bytes:
        self.seen.append((submission.origin, header))
        return b"X-Test-Signature: %d\r\n" % len(header)


def stream(ingest: QueueIngest, submission: Submission, parts: list[bytes],
           header: bytes | None) -> str:
    writer = ingest.open(submission)
    for i, part in enumerate(parts):
        if i == 1 and header is not None:  # the core reports the header after its chunk
            writer.header(header, inspect_header(header))
        writer.write(part)
    return asyncio.run(writer.commit())


def test_inbound_streams_with_one_safe_trace_field_and_no_fixes() -> None:
    queue = MemoryQueue()
    qid = stream(QueueIngest(queue, "mx.test"), smtp(Origin.INBOUND),
                 [HEADER, b"\r\n", b"body\r\n"], HEADER)
    content = queue.content(qid)
    trace, rest = content.split(b"\r\nFrom:", 1)
    assert trace.startswith(b"Received: from client.test??X-Evil:?1 ([192.0.2.1])")
    assert b"with ESMTPS id " + qid.encode() in trace and b"for <b@y.test>" in trace
    assert b"Date:" not in content and b"Message-ID:" not in content
    assert rest.endswith(b"\r\n\r\nbody\r\n")
    # Not held: written as it came, the trace field first.
    assert queue.writers[0].parts[1:] == [HEADER, b"\r\n", b"body\r\n"]


def test_submission_holds_the_header_then_adds_date_and_message_id_after_the_trace() -> None:
    queue = MemoryQueue()
    ingest = QueueIngest(queue, "mx.test", clock=lambda: 1_700_000_000.0)
    writer = ingest.open(smtp(Origin.SUBMISSION))
    writer.write(HEADER)
    assert queue.writers[0].parts == []  # held until the header section is known
    writer.header(HEADER, inspect_header(HEADER))
    writer.write(b"\r\nbody\r\n")
    qid = asyncio.run(writer.commit())
    lines = queue.content(qid).split(b"\r\n")
    assert lines[0].startswith(b"Received: from ")
    fields = [line for line in lines if line[:1] not in (b"\t", b" ")]
    assert fields[1].startswith(b"Date: ") and fields[2].startswith(b"Message-ID: <")
    assert fields[2].endswith(b"@mx.test>") and fields[3] == b"From: a@x.test"
    # The body was not held: it went out in its own write.
    assert queue.writers[0].parts[-1] == b"\r\nbody\r\n"


def test_submission_keeps_date_and_message_id_it_has() -> None:
    queue = MemoryQueue()
    header = HEADER + b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\n"
    qid = stream(QueueIngest(queue, "mx.test"), smtp(Origin.SUBMISSION),
                 [header, b"\r\nb\r\n"], header)
    content = queue.content(qid)
    assert content.count(b"Date:") == 1 and content.count(b"Message-ID:") == 1


def test_local_message_given_whole_gets_its_header_found_at_commit() -> None:
    queue = MemoryQueue()
    submission = Submission(origin=Origin.LOCAL, envelope=ENVELOPE, local_user="alice")
    qid = asyncio.run(QueueIngest(queue, "mx.test").submit(submission, HEADER + b"\r\nhi\r\n"))
    content = queue.content(qid)
    assert content.startswith(b"Received: by mx.test (Mailyard, from user alice);\r\n\t")
    assert b"\r\nDate: " in content and b"\r\nMessage-ID: <" in content
    assert content.endswith(HEADER + b"\r\nhi\r\n")


def test_hooks_output_goes_to_the_prepend_section_not_the_content() -> None:
    queue, signer = MemoryQueue(), Signer()
    ingest = QueueIngest(queue, "mx.test", hooks=[signer])
    qid = stream(ingest, smtp(Origin.INBOUND), [HEADER, b"\r\nbody\r\n"], HEADER)
    _envelope, content, prepend = queue.messages[qid]
    assert signer.seen == [(Origin.INBOUND, HEADER)]
    assert prepend == b"X-Test-Signature: %d\r\n" % len(HEADER)
    assert b"X-Test-Signature" not in content
    whole = Submission(origin=Origin.LOCAL, envelope=ENVELOPE, local_user="u")
    asyncio.run(ingest.submit(whole, HEADER + b"\r\nb\r\n"))
    assert signer.seen[1] == (Origin.LOCAL, HEADER)


def test_without_hooks_commit_is_called_without_prepend() -> None:
    class PlainWriter:
        qid = "Q1"

        def __init__(self) -> None:
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

        async def commit(self) -> str:  # the queue's writer before it took prepend
            return self.qid

        def abort(self) -> None:
            raise AssertionError("not aborted")

    class PlainQueue:
        def open_message(self, envelope: Envelope) -> PlainWriter:
            return PlainWriter()

    submission = Submission(origin=Origin.DSN, envelope=ENVELOPE)
    assert asyncio.run(QueueIngest(PlainQueue(), "mx.test").submit(submission, b"x\r\n")) == "Q1"


def test_whole_messages_are_checked_for_size_and_received_loops() -> None:
    queue = MemoryQueue()
    ingest = QueueIngest(queue, "mx.test", max_message_size=100, max_received=2)
    local = Submission(origin=Origin.LOCAL, envelope=ENVELOPE, local_user="u")
    with pytest.raises(IngestRefused) as big:
        asyncio.run(ingest.submit(local, b"Subject: s\r\n\r\n" + b"x" * 100))
    assert big.value.reply == REPLY_MESSAGE_TOO_BIG
    looped = b"Received: a\r\nreceived: b\r\nRECEIVED: c\r\n\r\nbody Received: no\r\n"
    with pytest.raises(IngestRefused) as loop:
        asyncio.run(ingest.submit(local, looped))
    assert loop.value.reply == REPLY_LOOP
    forward = Submission(origin=Origin.FORWARD, envelope=ENVELOPE)
    with pytest.raises(IngestRefused):
        asyncio.run(ingest.submit(forward, looped))
    # A forward may exceed the size its original was accepted at; a DSN is ours.
    asyncio.run(ingest.submit(forward, b"Subject: s\r\n\r\n" + b"x" * 200))
    asyncio.run(ingest.submit(Submission(origin=Origin.DSN, envelope=ENVELOPE), looped))
    assert len(queue.messages) == 2 and len(queue.writers) == 2  # refusals open nothing


def test_header_end() -> None:
    assert header_end(b"A: b\r\n\r\nbody") == 6
    assert header_end(b"\r\nbody") == 0
    assert header_end(b"A: b\r\n") == 6


class Recorder:
    """A streaming hook that keeps what it is shown, for the submissions it wants."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def observe(self, submission: Submission) -> Recorder | None:
        return self if submission.origin is not Origin.DSN else None

    def feed(self, data: bytes) -> None:
        self.seen.append(data)

    async def fields(self) -> bytes:
        return b"X-Seen: %d\r\n" % len(b"".join(self.seen))


def test_streaming_hook_sees_the_content_as_stored() -> None:
    queue = MemoryQueue()
    recorder = Recorder()
    ingest = QueueIngest(queue, "mx.test", streaming_hooks=[recorder])
    qid = stream(ingest, smtp(Origin.SUBMISSION), [HEADER, b"\r\n", b"body\r\n"], HEADER)
    _envelope, content, prepend = queue.messages[qid]
    assert b"".join(recorder.seen) == content  # trace field and fixes included
    assert b"Message-ID:" in content
    assert prepend == b"X-Seen: %d\r\n" % len(content)
    recorder.seen.clear()
    qid = asyncio.run(ingest.submit(Submission(Origin.DSN, ENVELOPE), HEADER + b"\r\nb\r\n"))
    assert recorder.seen == [] and queue.messages[qid][2] == b""


@pytest.mark.parametrize(("origin", "reversed_"), [
    (Origin.INBOUND, True), (Origin.DSN, True), (Origin.SUBMISSION, False),
    (Origin.LOCAL, False), (Origin.FORWARD, False)])
def test_srs_recipients_of_bounces_go_back_to_the_original_sender(origin: Origin,
                                                                  reversed_: bool) -> None:
    """A bounce (from another host, or our own DSN) to an SRS address of ours goes to the
    sender it encodes; a forged one, and other recipients, stay as they are."""
    srs = Srs(b"k" * 32)
    now = 1_796_000_000.0
    good = srs.forward("Dave@remote.test", "alias.test", now)
    forged = good.replace("=Dave@", "=eve@")
    envelope = Envelope(sender="", recipients=(Recipient(good), Recipient(forged),
                                               Recipient("b@y.test")))
    queue = MemoryQueue()
    ingest = QueueIngest(queue, "mx.test", clock=lambda: now, srs=lambda: srs)
    qid = asyncio.run(ingest.submit(Submission(origin, envelope), HEADER + b"\r\nhi\r\n"))
    got = [r.address for r in queue.messages[qid][0].recipients]
    assert got == [("Dave@remote.test" if reversed_ else good), forged, "b@y.test"]


class Direct:
    """A test DirectDelivery: takes what ``answer`` says, records what it was given."""

    def __init__(self, answer: bool, applies: bool = True) -> None:
        self.answer = answer
        self.offered = applies
        self.given: list[tuple[str, Envelope, bytes]] = []

    def applies(self, submission: Submission) -> bool:
        return self.offered

    async def deliver(self, qid: str, envelope: Envelope, content: bytes) -> bool:
        self.given.append((qid, envelope, content))
        return self.answer


def test_direct_delivery_takes_the_message_with_its_prepend_and_nothing_is_queued() -> None:
    queue = MemoryQueue()
    direct = Direct(True)
    ingest = QueueIngest(queue, "mx.test", hooks=[Signer()], direct=direct)
    writer = ingest.open(smtp(Origin.INBOUND))
    writer.write(HEADER)
    writer.header(HEADER, inspect_header(HEADER))
    writer.write(b"\r\nbody\r\n")
    assert asyncio.run(writer.commit()) == writer.qid
    assert writer.delivered and queue.writers[0].aborted and not queue.messages
    [(qid, env, content)] = direct.given
    assert qid == writer.qid and env == ENVELOPE
    prepend, received = content.split(b"\r\n", 1)
    assert prepend == b"X-Test-Signature: %d" % len(HEADER)
    assert received.startswith(b"Received: from client.test") and content.endswith(b"body\r\n")


@pytest.mark.parametrize("direct", [Direct(False), Direct(True, applies=False)])
def test_a_message_direct_delivery_does_not_take_is_queued(direct: Direct) -> None:
    queue = MemoryQueue()
    writer = QueueIngest(queue, "mx.test", direct=direct).open(smtp(Origin.INBOUND))
    writer.write(HEADER + b"\r\nbody\r\n")
    qid = asyncio.run(writer.commit())
    assert not writer.delivered and qid in queue.messages
    assert len(direct.given) == (1 if direct.offered else 0)


def test_a_message_spilled_to_disk_is_queued_without_an_offer() -> None:
    queue = MemoryQueue()
    direct = Direct(True)
    writer = QueueIngest(queue, "mx.test", direct=direct).open(smtp(Origin.INBOUND))
    writer.write(HEADER + b"\r\nbody\r\n")
    queue.writers[0].spilled = True
    qid = asyncio.run(writer.commit())
    assert not writer.delivered and qid in queue.messages and not direct.given

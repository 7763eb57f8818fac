"""DKIM signing in ingest: the signature of a local user's message goes to the record's
prepend section, computed over the content as stored, and verifies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailyard.config import DkimConfig
from mailyard.dkim.hook import from_domain, signing_for
from mailyard.dkim.keys import KeyAlgorithm, KeyStore
from mailyard.dkim.result import DkimStatus
from mailyard.dkim.verify import verify_message
from mailyard.dns.static import StaticResolver
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.api import Origin, Submission
from mailyard.ingest.pipeline import QueueIngest
from mailyard.message.headerblock import inspect_header
from tests.support.memory_queue import MemoryQueue

HEADER = b"From: Ada <ada@example.com>\r\nTo: bob@example.net\r\nSubject: Hello\r\n"
BODY = b"Hi  Bob,\r\n" + b"a line of the report\r\n" * 2000 + b"\r\n\r\n"


def envelope(auth_user: str = "") -> Envelope:
    return Envelope(sender="ada@example.com", recipients=(Recipient("bob@example.net"),),
                    client_ip="192.0.2.1", client_helo="laptop", auth_user=auth_user,
                    received_at=1_790_000_000.0)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[KeyStore, StaticResolver]:
    store = KeyStore(tmp_path)
    rsa_key = store.create("example.com", "mailyard")
    ed_key = store.create("example.com", "ed", KeyAlgorithm.ED25519)
    resolver = StaticResolver({k.record_name: {"TXT": [k.record]} for k in (rsa_key, ed_key)})
    return store, resolver


def ingest(tmp_path: Path, queue: MemoryQueue) -> QueueIngest:
    return QueueIngest(queue, "mx.example.com",
                       streaming_hooks=[signing_for(DkimConfig(), str(tmp_path))])


def stored(queue: MemoryQueue, qid: str) -> bytes:
    _envelope, content, prepend = queue.messages[qid]
    return prepend + content


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_submission_streamed_in_chunks_is_signed_twice(
        tmp_path: Path, keys: tuple[KeyStore, StaticResolver], chunk: int) -> None:
    queue = MemoryQueue()
    submission = Submission(Origin.SUBMISSION, envelope("ada"), protocol="ESMTPSA")
    writer = ingest(tmp_path, queue).open(submission)
    message = HEADER + b"\r\n" + BODY
    writer.write(HEADER)
    writer.header(HEADER + b"\r\n", inspect_header(HEADER + b"\r\n"))
    rest = message[len(HEADER):]
    for i in range(0, len(rest), chunk if chunk > 1 else 997):
        writer.write(rest[i:i + (chunk if chunk > 1 else 997)])
    qid = asyncio.run(writer.commit())
    _env, content, prepend = queue.messages[qid]
    assert prepend.count(b"DKIM-Signature:") == 2
    assert b"DKIM-Signature" not in content  # the body is never rewritten
    assert b"Message-ID:" in content  # the fixes were added, and are signed:
    assert b"Message-ID" in prepend and b"Date" in prepend
    results = asyncio.run(verify_message(stored(queue, qid), keys[1]))
    assert [r.status for r in results] == [DkimStatus.PASS, DkimStatus.PASS]


def test_local_submission_given_whole_is_signed(
        tmp_path: Path, keys: tuple[KeyStore, StaticResolver]) -> None:
    queue = MemoryQueue()
    submission = Submission(Origin.LOCAL, envelope(), local_user="ada")
    qid = asyncio.run(ingest(tmp_path, queue).submit(submission, HEADER + b"\r\n" + BODY))
    results = asyncio.run(verify_message(stored(queue, qid), keys[1]))
    assert [r.status for r in results] == [DkimStatus.PASS, DkimStatus.PASS]


@pytest.mark.parametrize(("origin", "auth_user", "header"), [
    (Origin.INBOUND, "", HEADER),  # mail from other servers
    (Origin.FORWARD, "", HEADER),
    (Origin.DSN, "", HEADER),
    (Origin.SUBMISSION, "ada", HEADER.replace(b"example.com", b"other.example")),  # no key
    (Origin.SUBMISSION, "ada", b"To: bob@example.net\r\n"),  # no From
])
def test_not_signed(tmp_path: Path, keys: tuple[KeyStore, StaticResolver], origin: Origin,
                    auth_user: str, header: bytes) -> None:
    queue = MemoryQueue()
    qid = asyncio.run(ingest(tmp_path, queue).submit(
        Submission(origin, envelope(auth_user)), header + b"\r\n" + BODY))
    assert queue.messages[qid][2] == b""


def test_authenticated_port_25_client_is_signed(
        tmp_path: Path, keys: tuple[KeyStore, StaticResolver]) -> None:
    queue = MemoryQueue()
    qid = asyncio.run(ingest(tmp_path, queue).submit(
        Submission(Origin.INBOUND, envelope("ada")), HEADER + b"\r\n" + BODY))
    assert queue.messages[qid][2].count(b"DKIM-Signature:") == 2


def test_message_without_body_is_signed(tmp_path: Path,
                                        keys: tuple[KeyStore, StaticResolver]) -> None:
    queue = MemoryQueue()
    qid = asyncio.run(ingest(tmp_path, queue).submit(
        Submission(Origin.LOCAL, envelope()), HEADER))
    results = asyncio.run(verify_message(stored(queue, qid), keys[1]))
    assert [r.status for r in results] == [DkimStatus.PASS, DkimStatus.PASS]


@pytest.mark.parametrize(("header", "domain"), [
    (b"From: Ada <ada@Example.COM>\r\n", "example.com"),
    (b"From: ada@example.com (Ada)\r\n", "example.com"),
    (b"From: \"a@evil.example\" <ada@example.com>\r\n", "example.com"),
    (b"From: a@x.example, b@y.example\r\n", ""),
    (b"From: a@x.example\r\nFrom: b@x.example\r\n", ""),
    (b"From: nobody\r\n", ""),
    ("From: Jörg <j@bücher.example>\r\n".encode(), "xn--bcher-kva.example"),
    (b"From: a@bad..example\r\n", ""),
    (b"Subject: x\r\n", ""),
])
def test_from_domain(header: bytes, domain: str) -> None:
    assert from_domain(header) == domain


def test_verify_policy_from_config() -> None:
    from mailyard.dkim.hook import verify_policy_for
    policy = verify_policy_for(DkimConfig(max_signatures=2, min_rsa_bits=2048))
    assert (policy.max_signatures, policy.min_rsa_bits) == (2, 2048)


# --- campaign messages signed before ingest (Submission.dkim) ---------------------------
CAMPAIGN_MESSAGE = HEADER + b"List-Id: <news.example.com>\r\n\r\n" + BODY


def campaign(dkim: bytes, origin: Origin = Origin.CAMPAIGN) -> Submission:
    return Submission(origin, envelope(), dkim=dkim)


def presigned(tmp_path: Path, message: bytes = CAMPAIGN_MESSAGE) -> bytes:
    """The fields a render process makes (its own DkimSigning over the same keys)."""
    return signing_for(DkimConfig(), str(tmp_path)).sign(message, 1_790_000_000.0)


def test_campaign_signature_made_before_ingest_is_kept_and_verifies(
        tmp_path: Path, keys: tuple[KeyStore, StaticResolver]) -> None:
    fields = presigned(tmp_path)
    assert fields.count(b"DKIM-Signature:") == 2 and b"t=1790000000;" in fields
    queue = MemoryQueue()
    qid = asyncio.run(ingest(tmp_path, queue).submit(campaign(fields), CAMPAIGN_MESSAGE))
    _env, content, prepend = queue.messages[qid]
    assert prepend == fields and content == CAMPAIGN_MESSAGE
    results = asyncio.run(verify_message(stored(queue, qid), keys[1]))
    assert [r.status for r in results] == [DkimStatus.PASS, DkimStatus.PASS]


@pytest.mark.parametrize("stored_message", [
    CAMPAIGN_MESSAGE.replace(b"a line of", b"A line of", 1),  # body changed
    CAMPAIGN_MESSAGE.replace(b"Subject: Hello", b"Subject: Hello!"),  # signed field changed
    CAMPAIGN_MESSAGE.replace(b"<news.", b"<other."),  # another signed field
], ids=["body", "subject", "list-id"])
def test_campaign_signature_not_over_the_stored_bytes_is_replaced(
        tmp_path: Path, keys: tuple[KeyStore, StaticResolver], stored_message: bytes) -> None:
    fields = presigned(tmp_path)
    queue = MemoryQueue()
    qid = asyncio.run(ingest(tmp_path, queue).submit(campaign(fields), stored_message))
    prepend = queue.messages[qid][2]
    assert prepend != fields and prepend.count(b"DKIM-Signature:") == 2
    results = asyncio.run(verify_message(stored(queue, qid), keys[1]))
    assert [r.status for r in results] == [DkimStatus.PASS, DkimStatus.PASS]


def test_campaign_signature_with_a_key_not_active_is_replaced(
        tmp_path: Path, keys: tuple[KeyStore, StaticResolver]) -> None:
    other = tmp_path / "other"
    KeyStore(other).create("example.com", "mailyard")  # same d= and s=, another key
    fields = presigned(other)
    queue = MemoryQueue()
    qid = asyncio.run(ingest(tmp_path, queue).submit(campaign(fields), CAMPAIGN_MESSAGE))
    prepend = queue.messages[qid][2]
    assert prepend != fields
    results = asyncio.run(verify_message(stored(queue, qid), keys[1]))
    assert [r.status for r in results] == [DkimStatus.PASS, DkimStatus.PASS]


def test_campaign_signature_for_a_domain_without_key_is_dropped(
        tmp_path: Path, keys: tuple[KeyStore, StaticResolver]) -> None:
    other = tmp_path / "other"
    KeyStore(other).create("other.example", "mailyard")
    message = CAMPAIGN_MESSAGE.replace(b"ada@example.com", b"ada@other.example")
    fields = presigned(other, message)
    assert fields
    queue = MemoryQueue()
    qid = asyncio.run(ingest(tmp_path, queue).submit(campaign(fields), message))
    assert queue.messages[qid][2] == b""


def test_only_campaign_submissions_may_bring_a_signature(
        tmp_path: Path, keys: tuple[KeyStore, StaticResolver]) -> None:
    fields = presigned(tmp_path)
    queue = MemoryQueue()
    qid = asyncio.run(ingest(tmp_path, queue).submit(campaign(fields, Origin.LOCAL),
                                                     CAMPAIGN_MESSAGE))
    prepend = queue.messages[qid][2]
    assert prepend.count(b"DKIM-Signature:") == 2 and prepend != fields


def test_campaign_message_without_signature_is_signed_by_ingest(
        tmp_path: Path, keys: tuple[KeyStore, StaticResolver]) -> None:
    queue = MemoryQueue()
    qid = asyncio.run(ingest(tmp_path, queue).submit(campaign(b""), CAMPAIGN_MESSAGE))
    results = asyncio.run(verify_message(stored(queue, qid), keys[1]))
    assert [r.status for r in results] == [DkimStatus.PASS, DkimStatus.PASS]


def test_signatures_made_before_ingest_get_the_public_key_check_first_and_then_sampled(
        tmp_path: Path) -> None:
    from mailyard.dkim.hook import FULL_CHECK_EVERY

    signing = signing_for(DkimConfig(), str(tmp_path))
    checks = [signing.full_check() for _ in range(2 * FULL_CHECK_EVERY + 1)]
    assert [i for i, full in enumerate(checks) if full] == [0, FULL_CHECK_EVERY,
                                                           2 * FULL_CHECK_EVERY]

"""The header section handed to smtpd once per message (``HeaderSection``), whatever
the packet or BDAT chunk boundaries, and what the inspector reads from it."""

from __future__ import annotations

import pytest
from smtpd_core_harness import run_all_ways

from mailyard.message.headerblock import inspect_header, submission_fields
from mailyard.proto.smtp.content import MAX_HEADER_BLOCK, ChunkDecoder, ContentCheck
from mailyard.proto.smtp.events import HeaderSection, MessageComplete, MessageRefused

HEAD = b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@mx.test>\r\n"
HEADER = (b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
          b"Delivered-To: B@MX.test\r\nSubject: folded\r\n  subject\r\n"
          b"From: \"Who\" <who@client.test>\r\n")
BODY = b"body line\r\nDelivered-To: not-a-header@mx.test\r\n"


def headers(run) -> list[HeaderSection]:
    return run.of_type(HeaderSection)


def test_data_header_section_once_before_message_complete_any_split() -> None:
    run = run_all_ways(HEAD + b"DATA\r\n" + HEADER + b"\r\n" + BODY + b".\r\nQUIT\r\n")
    [section] = headers(run)
    assert section.block == HEADER and section.complete
    kinds = [type(e) for e in run.events]
    assert kinds.index(HeaderSection) < kinds.index(MessageComplete)
    assert run.messages == [HEADER + b"\r\n" + BODY]


def test_bdat_header_split_across_chunks() -> None:
    """The header's fields split between BDAT chunks at every position are still
    seen whole; text and BINARYMIME alike (RFC 3030 2, 3)."""
    message = HEADER + b"\r\n" + BODY
    for body_type in ("8BITMIME", "BINARYMIME"):
        for cut in range(1, len(HEADER) + 3):
            first, rest = message[:cut], message[cut:]
            data = (b"EHLO c\r\nMAIL FROM:<a@client.test> BODY=" + body_type.encode()
                    + b"\r\nRCPT TO:<b@mx.test>\r\n"
                    + b"BDAT %d\r\n" % len(first) + first
                    + b"BDAT %d LAST\r\n" % len(rest) + rest + b"QUIT\r\n")
            run = run_all_ways(data)
            [section] = headers(run)
            assert section.block == HEADER and section.complete, (body_type, cut)
            assert inspect_header(section.block).delivered_to == {"b@mx.test"}


def test_message_without_body_is_all_header() -> None:
    run = run_all_ways(HEAD + b"DATA\r\nSubject: x\r\nDate: y\r\n.\r\n")
    [section] = headers(run)
    assert section.block == b"Subject: x\r\nDate: y\r\n" and section.complete


def test_refused_message_still_gets_one_header_section() -> None:
    """Even a refused message gets one (incomplete) header section, so the event
    order does not depend on how the content was split."""
    run = run_all_ways(HEAD + b"DATA\r\nSubject: x\nbare\r\n\r\nb\r\n.\r\n")
    assert run.of_type(MessageRefused)
    [section] = headers(run)
    assert not section.complete


def test_header_cut_at_limit() -> None:
    check = ContentCheck(10 * MAX_HEADER_BLOCK, 1000, 1000)
    line = b"X-Filler: " + b"a" * 88 + b"\r\n"
    for _ in range(MAX_HEADER_BLOCK // len(line) + 2):
        check.scan(line)
    block, complete = check.take_header() or (b"", True)
    assert not complete and len(block) <= MAX_HEADER_BLOCK
    assert check.take_header(at_end=True) is None  # once


def test_binary_chunk_decoder_keeps_header_lines_whole() -> None:
    check = ContentCheck(10_000, 1000, 50, binary=True)
    decoder = ChunkDecoder(check)
    out = b"".join(decoder.feed(bytes([b])) for b in HEADER + b"\r\n\x00\xff")
    out += decoder.finish()
    assert out == HEADER + b"\r\n\x00\xff"
    assert check.take_header() == (HEADER, True)


# --- the inspector ---------------------------------------------------------------

def test_inspect_header_fields() -> None:
    block = (b"delivered-to:  <Alice+Tag@Example.TEST.>\r\nDELIVERED-TO: bob@example.test\r\n"
             b"From: \"alice@example.test\"\r\n <bob@example.test>,\r\n carol@example.test\r\n"
             b"Message-Id: <1@x>\r\nSubject: Date: no\r\n")
    summary = inspect_header(block)
    assert summary.delivered_to == {"alice+tag@example.test", "bob@example.test"}
    assert set(summary.from_addresses) == {"alice@example.test", "bob@example.test",
                                           "carol@example.test"}
    assert summary.has_message_id and not summary.has_date


@pytest.mark.parametrize("block,date,mid", [
    (b"Subject: x\r\n", True, True),
    (b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n", False, True),
    (b"Message-ID: <a@b>\r\nDate: x\r\n", False, False),
])
def test_submission_fields_only_missing_ones(block: bytes, date: bool, mid: bool) -> None:
    """RFC 6409 8.2 (Date) and 8.3 (Message-ID)."""
    added = submission_fields(inspect_header(block), "mx.test", 1_700_000_000.0)
    assert (b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n" in added) is date
    assert (b"Message-ID: <1700000000." in added and b"@mx.test>\r\n" in added) is mid
    assert submission_fields(inspect_header(block, complete=False), "mx.test", 0) == b""

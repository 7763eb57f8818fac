"""Whatever arrives at the bounce address gives a result, never an exception: huge
parts, deep nesting, unknown or lying charsets, broken MIME, binary noise."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.feedback import mime
from mailyard.feedback.classify import classify
from mailyard.feedback.model import Feedback, ReportFormat, Verdict

DSN_HEAD = (b"From: MAILER-DAEMON@mx.example.net\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n')


def status_part(body: bytes, ctype: bytes = b"message/delivery-status") -> bytes:
    return (DSN_HEAD + b"--B\r\nContent-Type: " + ctype + b"\r\n\r\n" + body + b"\r\n--B--\r\n")


def nested(depth: int, inner: bytes) -> bytes:
    data = inner
    for i in range(depth):
        boundary = f"n{i}".encode()
        data = (b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--"
                + boundary + b"\r\n" + data + b"\r\n--" + boundary + b"--\r\n")
    return b"From: MAILER-DAEMON@x.example\r\nMIME-Version: 1.0\r\n" + data


STATUS = (b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
          b"Final-Recipient: rfc822; deep@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n")


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff" * 1000,
    b"no header at all, just text",
    b"Subject: =?x-unknown-charset?q?abc?=\r\n\r\nbody",
    b"Subject: =?utf-8?b?!!!notbase64?=\r\nFrom: <<<@@@>>>\r\n\r\n",
    b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nhello \xff\xfe",
    b"Content-Type: text/plain; charset*=utf-8''%ff%fe\r\n\r\nhello",
    b"Content-Type: multipart/report; boundary=\r\n\r\n--\r\n--\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
    b"--B\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64"
    b"\r\n\r\n!!!!\r\n",
    b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n" * 50,
    status_part(b"Final-Recipient: rfc822\r\nAction:\r\nStatus: 9.9.9.9.9\r\n"),
    status_part(b":::\r\n: :\r\n\r\n\r\nAction: failed\r\n"),
    status_part(b"Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\n"
                b"Status: 5.1.1\r\n", b"message/feedback-report"),
    b"Content-Type: multipart/report; report-type=feedback-report; boundary=\"B\"\r\n\r\n"
    b"--B\r\nContent-Type: message/feedback-report\r\n\r\n\xff\xfe\x00:\r\n--B--\r\n",
    b"From: " + b"a" * 200_000 + b"\r\n\r\n",
    b"Subject: x\r\n" + b"X-H: y\r\n" * 20_000 + b"\r\n",
    b"From: MAILER-DAEMON@x\r\nSubject: Undelivered\r\n\r\n" + b"<a@b.cd>:\n" * 20_000,
], ids=lambda raw: f"{raw[:16]!r}..{len(raw)}")
def test_hostile_input_gives_a_result(raw: bytes) -> None:
    result = classify(raw)
    assert isinstance(result, Feedback)
    assert len(result.recipients) <= 100


def test_unknown_charset_still_finds_the_bounce() -> None:
    raw = (b"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n"
           b"Content-Type: text/plain; charset=x-martian\r\n\r\n"
           b"Hi. This is the qmail-send program at mx.example.net.\r\n"
           b"I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
           b"\r\n<caf\xe9@example.net>:\r\n<ok@example.net>:\r\n"
           b"Remote host said: 550 5.1.1 no mailbox \xff\r\n")
    result = classify(raw)
    assert result.format is ReportFormat.QMAIL
    assert "ok@example.net" in [r.address for r in result.recipients]


def test_deep_nesting_is_capped_not_fatal() -> None:
    # found within the depth cap
    shallow = classify(nested(3, STATUS))
    assert shallow.verdict is Verdict.HARD_BOUNCE
    # far beyond it (and beyond Python's recursion limit for a naive walk)
    deep = classify(nested(1500, STATUS))
    assert isinstance(deep, Feedback)
    assert deep.verdict is not Verdict.HARD_BOUNCE


def test_many_parts_are_capped() -> None:
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(600))
    raw = (b"From: MAILER-DAEMON@x.example\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n' + parts
           + b"--B\r\n" + STATUS + b"\r\n--B--\r\n")
    msg = mime.parse(raw)
    assert msg is not None
    assert sum(1 for _ in mime.walk(msg)) <= mime.MAX_PARTS
    assert isinstance(classify(raw), Feedback)


def test_input_beyond_the_cap_is_truncated_and_noted() -> None:
    body = b"Final-Recipient: rfc822; big@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    raw = (DSN_HEAD + b"--B\r\nContent-Type: message/delivery-status\r\n\r\n" + body
           + b"\r\n--B\r\nContent-Type: message/rfc822\r\n\r\nSubject: big\r\n\r\n"
           + b"x" * (mime.MAX_INPUT + 10) + b"\r\n--B--\r\n")
    result = classify(raw)
    assert result.verdict is Verdict.HARD_BOUNCE
    assert "truncated" in result.notes


@pytest.mark.parametrize("raw", [
    b"Subject: x\r\n" + b"X-H: y\r\n" * 100_000 + b"\r\n",
    b"Subject: x\r\n\r\n" + b"\n" * 100_000,
    DSN_HEAD + b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    + b"Action: failed\r\n\r\n" * 50_000,
    b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + b"--B\r\n\r\nx\r\n" * 50_000,
], ids=["headers", "blank-lines", "status-blocks", "parts"])
def test_line_caps_cut_before_parsing(raw: bytes) -> None:
    capped = mime.cap(raw)
    assert capped.count(b"\n") <= mime.MAX_LINES
    assert capped.count(b"\n\n") + capped.count(b"\n\r\n") <= 2 * mime.MAX_BLANK_LINES
    assert capped.count(b"\n--") <= mime.MAX_BOUNDARY_LINES
    assert raw.startswith(capped) and capped.endswith(b"\n")
    assert "truncated" in classify(raw).notes


def test_small_reports_are_not_cut() -> None:
    raw = status_part(b"Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\n")
    assert mime.cap(raw) == raw
    assert classify(raw).notes == ()


@pytest.mark.parametrize("html,expected", [
    ("<p>one</p><p>two<br>three</p>", ["one", "two", "three"]),
    ("<script>var a = '550 5.1.1';</script>ok", ["ok"]),
    ("<style>p {}</style>a&amp;b", ["a&b"]),
    ("text <unterminated", ["text"]),
    ("<" * 10_000, []),
    ("<script>" * 10_000, []),
], ids=["blocks", "script", "style", "unterminated", "many-lt", "many-script"])
def test_html_to_text(html: str, expected: list[str]) -> None:
    assert mime.strip_html(html).split() == expected


def test_random_mutations_of_real_reports() -> None:
    rng = random.Random(3464)
    seeds = [STATUS, status_part(STATUS), nested(2, STATUS)]
    for _ in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 20)):
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        assert isinstance(classify(bytes(data)), Feedback)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(raw: bytes) -> None:
    assert isinstance(classify(raw), Feedback)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=500))
def test_arbitrary_text_after_a_bounce_header(text: str) -> None:
    raw = (b"From: MAILER-DAEMON@x.example\r\nSubject: Mail delivery failed\r\n\r\n"
           + text.encode("utf-8", "surrogatepass"))
    assert isinstance(classify(raw), Feedback)

"""Property tests: whatever a client sends, the core answers with well-formed replies,
never raises, and gives the same result however the input is split (h11-style)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from smtpd_core_harness import run_session

from mailyard.proto.smtp.server import ServerSettings

FRAGMENTS = [
    b"EHLO c\r\n", b"HELO c\r\n", b"MAIL FROM:<a@c.test>\r\n", b"MAIL FROM:<>\r\n",
    b"RCPT TO:<b@mx.test>\r\n", b"RCPT TO:<b@mx.test> NOTIFY=NEVER\r\n", b"DATA\r\n",
    b"BDAT 5\r\n", b"BDAT 0 LAST\r\n", b"BDAT 3 LAST\r\n", b"RSET\r\n", b"NOOP\r\n",
    b"QUIT\r\n", b"STARTTLS\r\n", b"AUTH PLAIN\r\n", b"AUTH LOGIN dXNlcg==\r\n", b"*\r\n",
    b".\r\n", b"\r\n.\r\n", b"..x\r\n", b"\n.\n", b"\r", b"\n", b"\x00", b"text", b"\r\n",
    b"Received: x\r\n", b"VRFY x\r\n", b"BDAT x\r\n", b"A" * 1200, b"\xff\xfe",
]
SETTINGS = ServerSettings(hostname="mx.test", starttls=True, auth=True, implicit_tls=True,
                          max_message_size=2000, max_recipients=3, max_errors=50,
                          max_received_headers=2)
REPLY_LINE = re.compile(rb"^(\d{3})([ -])")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40), st.integers(0, 1000))
def test_any_input_gives_wellformed_replies(parts: list[bytes], seed: int) -> None:
    data = b"".join(parts)
    whole = run_session(data, settings=SETTINGS)
    pieces = run_session(data, "random", settings=SETTINGS, seed=seed)
    assert pieces.output == whole.output
    assert pieces.messages == whole.messages
    assert whole.output.endswith(b"\r\n")
    for line in whole.output[:-2].split(b"\r\n"):
        assert REPLY_LINE.match(line), line
    assert whole.conn.closed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 1000))
def test_random_bytes(data: bytes, seed: int) -> None:
    whole = run_session(b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<b@d>\r\nDATA\r\n" + data,
                        settings=SETTINGS)
    pieces = run_session(b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<b@d>\r\nDATA\r\n" + data,
                         "random", settings=SETTINGS, seed=seed)
    assert pieces.output == whole.output
    assert pieces.messages == whole.messages


CONTENT_FRAGMENTS = [b"A" * 300, b"B" * 997, b"\n", b"\r", b"\r\n", b"Received: x\r\n",
                     b".", b"\r\n\r\n", b"\r\n.\r\n", b"text\r\n", b"..\r\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(CONTENT_FRAGMENTS), max_size=20), st.integers(0, 1000),
       st.booleans())
def test_refusal_reason_independent_of_packets(parts: list[bytes], seed: int,
                                               chunking: bool) -> None:
    """Several problems in one message (long line, bare LF, size, loop): the reply
    names the first one whatever the packet boundaries (DATA and BDAT)."""
    content = b"".join(parts)
    head = b"EHLO c\r\nMAIL FROM:<a@c>\r\nRCPT TO:<b@d>\r\n"
    if chunking:
        data = head + b"BDAT %d LAST\r\n" % len(content) + content + b"NOOP\r\n"
    else:
        data = head + b"DATA\r\n" + content + b"\r\n.\r\nNOOP\r\n"
    runs = [run_session(data, split, settings=SETTINGS, seed=seed)
            for split in ("whole", "bytes", "random")]
    assert runs[1].output == runs[0].output
    assert runs[2].output == runs[0].output
    assert runs[1].messages == runs[0].messages == runs[2].messages

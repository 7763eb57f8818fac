"""Reply parsing (RFC 5321 4.2, 4.2.1; RFC 2034 enhanced codes) and hostile servers."""

from __future__ import annotations

import pytest

from mailyard.proto.smtp.client_codec import Extensions, RemoteProtocolError, ReplyParser, describe
from mailyard.proto.smtp.replies import Reply
from tests.unit.smtp_client.transcript import CHUNKERS

TRANSCRIPT = (b"220 mx.example ESMTP ready\r\n"
              b"250-mx.example hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
              b"550-5.1.1 first line\r\n550-5.1.1 second line\r\n550 5.1.1 third\r\n"
              b"451 4.3.0 try later\r\n"
              b"354 go ahead\r\n"
              b"250\r\n"
              b"252 2.x.y not an enhanced code\r\n")


def parse(data: bytes, chunker=lambda d: [d]) -> list[Reply]:
    parser = ReplyParser()
    for piece in chunker(data):
        parser.feed(piece)
    return list(parser.replies)


@pytest.mark.parametrize("chunking", sorted(CHUNKERS))
def test_same_replies_however_the_bytes_arrive(chunking: str) -> None:
    """RFC 5321 4.2.1: a multi-line reply ends at the line with a space after the code."""
    replies = parse(TRANSCRIPT, CHUNKERS[chunking])
    assert replies == [
        Reply(220, "", "mx.example ESMTP ready"),
        Reply(250, "", "mx.example hello\nPIPELINING\nSIZE 1000\n8BITMIME"),
        Reply(550, "5.1.1", "first line\nsecond line\nthird"),
        Reply(451, "4.3.0", "try later"),
        Reply(354, "", "go ahead"),
        Reply(250, "", ""),
        Reply(252, "", "2.x.y not an enhanced code"),
    ]


def test_enhanced_code_class_must_match_the_reply_code() -> None:
    """RFC 3463 2 / RFC 2034 3: the class digit repeats the reply's first digit."""
    assert parse(b"550 4.1.1 odd\r\n") == [Reply(550, "", "4.1.1 odd")]
    assert parse(b"250 2.01.000 ok\r\n")[0].status == "2.1.0"


def test_bare_lf_line_endings_are_tolerated() -> None:
    assert parse(b"250-a\n250 b\n") == [Reply(250, "", "a\nb")]


def test_control_characters_and_bad_utf8_are_neutralised() -> None:
    (reply,) = parse(b"550 5.7.1 evil\x1b[31m \xff\x00text\r\n")
    assert reply.text == "evil?[31m \ufffd?text"


def test_tabs_and_printable_text_are_kept_as_sent() -> None:
    """RFC 5321 4.2: reply text is printable US-ASCII, HT and SP; a DEL or a control
    character in an ASCII line is replaced, as in a line with 8-bit text."""
    assert parse(b"250 2.0.0 queued\tas X1\r\n") == [Reply(250, "2.0.0", "queued\tas X1")]
    assert parse(b"250 ok\x7f\r\n") == [Reply(250, "", "ok?")]
    assert parse(b"250 2.0.0 caf\xc3\xa9\x01\r\n") == [Reply(250, "2.0.0", "caf\u00e9?")]


@pytest.mark.parametrize("data, message", [
    (b"25O ok\r\n", "malformed"),
    (b"2\r\n", "malformed"),
    (b"250x ok\r\n", "malformed"),
    (b"199 ok\r\n", "out of range"),
    (b"600 ok\r\n", "out of range"),
    (b"250-a\r\n251 b\r\n", "changed"),
])
def test_malformed_replies_raise(data: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        parse(data)


def test_endless_line_is_refused_before_it_is_buffered() -> None:
    """A hostile server must not make the client buffer without bound."""
    parser = ReplyParser(max_line=100)
    parser.feed(b"250 " + b"x" * 96)
    with pytest.raises(RemoteProtocolError, match="too long|longer"):
        parser.feed(b"x" * 10)


def test_endless_multiline_reply_is_refused() -> None:
    parser = ReplyParser(max_lines=10)
    with pytest.raises(RemoteProtocolError, match="too long"):
        parser.feed(b"250-x\r\n" * 11)
    parser = ReplyParser(max_bytes=1000)
    with pytest.raises(RemoteProtocolError, match="too long"):
        parser.feed((b"250-" + b"y" * 96 + b"\r\n") * 11)


def test_describe_is_one_line() -> None:
    described = describe(Reply(550, "5.1.1", "no such user\nsee docs"))
    assert described == "550 5.1.1 no such user see docs"
    assert describe(Reply(250, "", "")) == "250"


def test_extensions_from_ehlo() -> None:
    """RFC 5321 4.1.1.1 EHLO keywords; RFC 1870 SIZE; RFC 4954 AUTH (and the old AUTH=)."""
    (reply,) = parse(b"250-mx\r\n250-pipelining\r\n250-SIZE 35882577\r\n250-AUTH=LOGIN\r\n"
                     b"250-AUTH PLAIN CRAM-MD5\r\n250-STARTTLS\r\n250 CHUNKING\r\n")
    ext = Extensions.from_ehlo(reply)
    assert "PIPELINING" in ext and "CHUNKING" in ext and "STARTTLS" in ext
    assert "DSN" not in ext
    assert ext.size_limit == 35882577
    assert ext.auth_mechanisms == {"LOGIN", "PLAIN", "CRAM-MD5"}
    assert Extensions.from_ehlo(Reply(250, "", "mx\nSIZE")).size_limit == 0
    assert Extensions().size_limit is None

"""Readable text of a message: RFC 2047 encoded words, RFC 2045 transfer encodings,
Date: fields and addresses as SEARCH, SORT and THREAD see them."""

from __future__ import annotations

import datetime as dt

import pytest

from mailyard.message import text


@pytest.mark.parametrize(("raw", "decoded"), [
    (b"(=?ISO-8859-1?Q?a?=)", "(a)"),
    (b"(=?ISO-8859-1?Q?a?= b)", "(a b)"),
    (b"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
    (b"(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"),
    (b"(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"),
    (b"(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
    (b"(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"),
    (b"=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>", "Keith Moore <moore@cs.utk.edu>"),
    (b"=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
     "Andr\u00e9 Pirard <PIRARD@vm1.ulg.ac.be>"),
])
def test_rfc2047_section8_examples(raw: bytes, decoded: str) -> None:
    """RFC 2047 8: white space between adjacent encoded words is dropped, not
    between an encoded word and text."""
    assert text.decode_header(raw) == decoded


def test_rfc2231_language_and_bad_words() -> None:
    """RFC 2231 5: a language after the charset; broken words decode to what they can."""
    assert text.decode_header(b"=?US-ASCII*EN?Q?Keith_Moore?=") == "Keith Moore"
    assert text.decode_header(b"=?utf-8?b?w6k?=") == "\u00e9"  # padding missing
    assert text.decode_header(b"=?nonsense?q?abc?=") == "abc"
    assert text.decode_header("Grüße".encode()) == "Grüße"  # RFC 6532 UTF-8
    assert text.decode_header(b"caf\xe9") == "caf\u00e9"  # not UTF-8: Latin-1


def test_transfer_encodings() -> None:
    """RFC 2045 6.7 quoted-printable and 6.8 base64; others are identity."""
    assert text.decode_body(b"caf=E9 =\r\nsoft", b"Quoted-Printable") == b"caf\xe9 soft"
    assert text.decode_body(b"aGVs\r\nbG8=\r\n", b"base64") == b"hello"
    assert text.decode_body(b"aGVsbG8\r\n", b"base64") == b"hello"  # no padding
    assert text.decode_body(b"a!G@V#s", b"base64") == b"hel"  # junk skipped
    assert text.decode_body(b"raw", b"x-uuencode") == b"raw"
    assert text.decode_body(b"raw", None) == b"raw"


def test_sent_date() -> None:
    """RFC 5322 3.3: the day as written, and the instant in UTC."""
    got = text.sent_date(b"Tue, 1 Dec 2026 23:30:00 -0800")
    assert got is not None
    assert got.day == dt.date(2026, 12, 1)
    assert got.timestamp == dt.datetime(2026, 12, 2, 7, 30, tzinfo=dt.UTC).timestamp()
    assert text.sent_date(b"1 Dec 26 10:00 GMT") is not None  # obsolete two-digit year
    assert text.sent_date(b"31 Feb 2026 10:00 +0000") is None
    assert text.sent_date(b"whenever") is None
    assert text.sent_date(None) is None


def test_first_address() -> None:
    got = text.first_address(b'Group: "=?utf-8?q?J=C3=B6rg?=" <jorg@example.com>;, b@c')
    assert got == text.Address("J\u00f6rg", "jorg", "example.com")
    assert got.spec == "jorg@example.com"
    assert text.first_address(b"undisclosed-recipients:;") is None
    assert text.first_address(b"local") == text.Address("", "local", "")
    assert text.first_address(None) is None


def test_message_ids_and_header_fields() -> None:
    assert text.message_ids(b"<a@b> (comment) <c@d>\r\n <e@f>") == ["a@b", "c@d", "e@f"]
    assert text.message_ids(b"no ids") == []
    block = text.header_block(b"Subject: a\r\n b\r\nX-Bad line\r\nTo:  x \r\n\r\nbody: no\r\n")
    assert text.header_fields(block) == [("subject", b"a b"), ("to", b"x")]
    assert text.header_block(b"\r\nbody") == b""
    assert text.header_block(b"Subject: only a header") == b"Subject: only a header"


def test_visible_text_of_html() -> None:
    markup = ("<html><head><STYLE>p {}</STYLE><script>if (a<b) x()</script></head>"
              "<body><p>Caf&eacute; <b>cr&egrave;me</b><!-- hidden --> &#8364;5</p>")
    assert " ".join(text.visible_text(markup).split()) == "Café crème €5"
    assert text.visible_text("a <unclosed").rstrip() == "a"
    assert text.visible_text("a <!-- open").rstrip() == "a"
    assert text.visible_text("<styles>y</styles>").strip() == "y"


def test_visible_text_is_linear_on_unclosed_constructs() -> None:
    """One forward scan: thousands of unclosed comments, tags or styles cost no
    rescans."""
    assert text.visible_text("<!--" * 100_000) == " "
    assert text.visible_text("x<" * 100_000) == "x "
    assert text.visible_text("<style>" * 100_000) == " "

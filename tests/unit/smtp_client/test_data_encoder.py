"""Message content on the wire: CRLF only (RFC 5321 2.3.8) and dot-stuffing
(RFC 5321 4.5.2), done chunk by chunk with any chunk boundaries."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailyard.proto.smtp.client_codec import DataEncoder


def encode(chunks: list[bytes], dot_stuff: bool = True) -> bytes:
    enc = DataEncoder(dot_stuff)
    return b"".join(enc.encode(c) for c in chunks) + enc.finish()


def reference(content: bytes, dot_stuff: bool = True) -> bytes:
    """The whole-message definition the chunked encoder must match."""
    out = re.sub(rb"\r\n|\r|\n", b"\r\n", content)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    if dot_stuff:
        out = re.sub(rb"(?m)^\.", b"..", out.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    return out


@pytest.mark.parametrize("content, expected", [
    (b"", b""),
    (b".", b"..\r\n"),
    (b"a\r\n.b\r\n", b"a\r\n..b\r\n"),
    (b".\r\n", b"..\r\n"),
    (b"a\r\n.\r\n", b"a\r\n..\r\n"),  # a lone dot line must not end the data early
    (b"a\nb\n", b"a\r\nb\r\n"),  # bare LF
    (b"a\rb", b"a\r\nb\r\n"),  # bare CR
    (b"a\r\r\nb", b"a\r\n\r\nb\r\n"),
    (b"no final newline", b"no final newline\r\n"),
    (b"x.\r\n..y\r\n", b"x.\r\n...y\r\n"),
])
def test_examples(content: bytes, expected: bytes) -> None:
    assert encode([content]) == expected


TRICKY = b".a\r\n.\r\n\r\n..b\nc\r.d\r\n\r.e\n\r\n."


def test_every_split_point_gives_the_same_bytes() -> None:
    """A '.' right after a chunk boundary, a CR at the end of one chunk and its LF at
    the start of the next: every two-way and three-way split."""
    want = reference(TRICKY)
    for i in range(len(TRICKY) + 1):
        assert encode([TRICKY[:i], TRICKY[i:]]) == want, i
        for j in range(i, len(TRICKY) + 1):
            assert encode([TRICKY[:i], TRICKY[i:j], TRICKY[j:]]) == want, (i, j)


def test_byte_by_byte() -> None:
    assert encode([TRICKY[i:i + 1] for i in range(len(TRICKY))]) == reference(TRICKY)


def test_bdat_content_is_not_dot_stuffed_but_still_crlf() -> None:
    """RFC 3030 2: BDAT data is sent as is (no dot-stuffing)."""
    assert encode([b".a\n", b".b"], dot_stuff=False) == b".a\r\n.b\r\n"


def test_unchanged_chunks_are_passed_through() -> None:
    chunk = b"line one\r\nline two\r\n" * 1000
    enc = DataEncoder(True)
    assert enc.encode(chunk) == chunk


@given(st.lists(st.binary(max_size=40).map(
    lambda b: b.replace(b"x", b".").replace(b"y", b"\r").replace(b"z", b"\n")), max_size=8))
def test_property_chunked_equals_whole(chunks: list[bytes]) -> None:
    out = encode(chunks)
    assert out == reference(b"".join(chunks))
    assert b"\r\n.\r\n" not in b"\r\n" + out  # the end-of-data marker never appears early
    assert out.count(b"\r") == out.count(b"\n") == out.count(b"\r\n")

"""Tag lists (RFC 6376 3.2): the syntax the DKIM-Signature field and key records share."""

from __future__ import annotations

import pytest

from mailyard.dkim.tags import TagListError, parse_tag_list


def test_folding_whitespace_and_a_trailing_semicolon() -> None:
    assert parse_tag_list(b" v=1;\r\n\ta = rsa-sha256 ;h=From:To; b=ab+/\r\n cd=;") == {
        "v": b"1", "a": b"rsa-sha256", "h": b"From:To", "b": b"ab+/\r\n cd="}


@pytest.mark.parametrize("text", [
    b"v=1; a=rsa\x00sha256",  # a control character in a value
    b"v=1; d=ex\xe4mple.com",  # a non-ASCII octet in a value
    b"v=1; s=sel\x7f",  # DEL
])
def test_a_value_outside_valchar_is_an_error_naming_its_tag(text: bytes) -> None:
    """3.2: tag-value is VALCHAR runs (%x21-3A / %x3C-7E) with folding whitespace."""
    with pytest.raises(TagListError, match=r"value of [ads]="):
        parse_tag_list(text)


@pytest.mark.parametrize(("text", "message"), [
    (b"v=1; v=1", "appears twice"), (b"v=1; 1a=2", "bad tag"), (b"v=1; novalue", "bad tag"),
    (b"v=1; n\xe4me=x", "bad tag"),
])
def test_tag_names_are_strict(text: bytes, message: str) -> None:
    with pytest.raises(TagListError, match=message):
        parse_tag_list(text)

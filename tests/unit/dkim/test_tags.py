"""Tag lists (RFC 6376 3.2): the syntax the DKIM-Signature field and key records share."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import pytest

from mailyard.dkim import tags as tags_module
from mailyard.dkim.signature import without_b_value
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


def _reference_b_removed(raw: bytes) -> bytes:
    """3.7 as one substitution: the value of the first b= tag removed."""
    name, colon, value = raw.partition(b":")
    return name + colon + re.sub(rb"(^|;)([ \t\r\n]*b[ \t\r\n]*=)[^;]*", rb"\1\2", value,
                                 count=1)


# Octets that make tag lists interesting: FWS, separators, tag name characters,
# base64, a control and a non-ASCII octet.
_ALPHABET = b" \t\r\n;=:bBhv1a_-+/\x00\xe4"


def _random_lists(count: int) -> list[bytes]:
    rng = random.Random(6376)
    texts = [b"", b";", b" ; ", b"v=1;;a=2", b"b=;", b"=1", b"v=1; v=2", b"a=1;\r\n\t"]
    for _ in range(count):
        items = []
        for _ in range(rng.randrange(1, 6)):
            if rng.random() < 0.8:  # mostly well-formed items, now and then a stray octet
                items.append(rng.choice([b"", b" ", b"\r\n\t"]) + rng.choice([b"v", b"b", b"bh",
                             b"h", b"a_1", b"1a", b"x y"]) + rng.choice([b"", b" "]) + b"="
                             + bytes(rng.choice(_ALPHABET.replace(b";", b""))
                                     for _ in range(rng.randrange(0, 8))))
            else:
                items.append(bytes(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 6))))
        texts.append(b";".join(items) + rng.choice([b"", b";", b"; ", b"\r\n "]))
    return texts


def _outcome(parse: Callable[[bytes], dict[str, bytes]], text: bytes) -> object:
    try:
        return parse(text)
    except TagListError as exc:
        return str(exc)


def test_the_one_pass_parse_gives_what_the_item_by_item_parse_gives() -> None:
    """3.2: the usual list is read in two regex passes; on any input (well formed, a tag
    twice, a bad name, a bad value, empty items) the result or the error is that of
    reading it item by item."""
    for text in _random_lists(20_000):
        assert _outcome(parse_tag_list, text) == _outcome(tags_module._parse_items, text), text


def test_removing_the_b_value_matches_the_substitution() -> None:
    """3.7: the b= value removed, everything else untouched, whatever surrounds it."""
    for text in _random_lists(20_000):
        raw = b"DKIM-Signature:" + text
        assert without_b_value(raw) == _reference_b_removed(raw), raw
    assert without_b_value(b"no colon b=x") == b"no colon b=x"

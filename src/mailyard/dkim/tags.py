"""Tag lists (RFC 6376 3.2): ``tag=value; tag=value``, shared by the DKIM-Signature
field and the key record.

Parsing is strict where the RFC is (a tag twice is an error, a tag name is ALPHA then
ALNUM or ``_``) and lenient where it lets us be (folding whitespace around tags and
values, a trailing ``;``).  Errors are a :class:`TagListError`, which callers turn
into a ``permerror`` result, never let through.
"""

from __future__ import annotations

import re

__all__ = ["TagListError", "parse_tag_list"]

_TAG_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9_]*\Z")
_FWS = b" \t\r\n"
# tag-value: VALCHAR (%x21-3A / %x3C-7E) runs separated by folding whitespace.
_BAD_VALUE = re.compile(rb"[^\x21-\x3a\x3c-\x7e \t\r\n]")
_BAD_TEXT = re.compile(rb"[^\x21-\x7e \t\r\n]")  # the same, ";" allowed
# The usual tag list, matched whole in one pass: items ``FWS name FWS = value`` (the
# value VALCHAR and FWS only) separated by ";", no empty item but a last one of FWS
# only.  The classes at each boundary are disjoint, so a failed match gives back each
# run at most once per item and the time stays linear in the text whatever it holds
# (plain greedy quantifiers: possessive ones misbehave on some 3.11 releases).  Every
# octet of a matching list is in one of these classes, so it has no character
# _BAD_TEXT would find.
_ITEM = rb"[ \t\r\n]*[A-Za-z][A-Za-z0-9_]*[ \t\r\n]*=[\x21-\x3a\x3c-\x7e \t\r\n]*"
_PLAIN_LIST = re.compile(rb"(?:" + _ITEM + rb";)*(?:" + _ITEM + rb"|[ \t\r\n]*)")
_PAIR = re.compile(rb"[ \t\r\n]*([A-Za-z][A-Za-z0-9_]*)[ \t\r\n]*=([^;]*)")


class TagListError(ValueError):
    """The text is not a valid tag list."""


def parse_tag_list(text: bytes) -> dict[str, bytes]:
    """``{tag: value}`` with surrounding folding whitespace removed from both."""
    if _PLAIN_LIST.fullmatch(text):
        # Well formed throughout (the usual case): the pairs in two C passes.
        pairs = _PAIR.findall(text)
        found = {name.decode("ascii"): value.strip(_FWS) for name, value in pairs}
        if len(found) == len(pairs):
            return found
        # a tag twice: the loop below says which
    return _parse_items(text)


def _parse_items(text: bytes) -> dict[str, bytes]:
    """:func:`parse_tag_list` item by item, with the reason of any error."""
    tags: dict[str, bytes] = {}
    # One search over the whole list: a value holds no ";", so a list without a bad
    # character anywhere has none in any value (the usual case: no per-value search).
    check_values = _BAD_TEXT.search(text) is not None
    for item in text.split(b";"):
        if not item.strip(_FWS):
            continue  # an empty item: only the last may be, but senders are sloppy
        name, eq, value = item.partition(b"=")
        name = name.strip(_FWS)
        if not eq or not _TAG_NAME.match(name):
            raise TagListError(f"bad tag {name[:40]!r}")
        key = name.decode("ascii")
        if key in tags:
            raise TagListError(f"tag {key}= appears twice")
        value = value.strip(_FWS)
        if check_values and _BAD_VALUE.search(value):
            raise TagListError(f"bad character in the value of {key}=")
        tags[key] = value
    return tags


def strip_fws(value: bytes) -> bytes:
    """A value with all folding whitespace removed (base64 values: b=, bh=, p=)."""
    return value.translate(None, _FWS)

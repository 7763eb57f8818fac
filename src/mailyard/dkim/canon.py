"""Canonicalization (RFC 6376 3.4): header fields and body, ``simple`` and ``relaxed``.

Everything works on bytes with precompiled regexes.  The body is canonicalized and
hashed in one pass as it streams (:class:`BodyHasher`): complete lines are processed
a chunk at a time, the empty lines at the end are only counted (they are dropped
unless a non-empty line follows, 3.4.3 and 3.4.4), and an ``l=`` limit cuts the
hashed octets without buffering the body.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from typing import NamedTuple

__all__ = [
    "BodyHasher",
    "Canon",
    "HeaderField",
    "canon_header",
    "parse_canon",
    "relaxed_fields",
    "split_header",
]

CRLF = b"\r\n"


class Canon(enum.StrEnum):
    SIMPLE = "simple"
    RELAXED = "relaxed"


@functools.lru_cache(maxsize=64)  # a handful of values in use
def parse_canon(value: bytes) -> tuple[Canon, Canon]:
    """The ``c=`` tag: ``header/body``, ``header`` alone means ``header/simple``
    (3.5).  Raises ValueError."""
    head, _, body = value.decode("ascii").lower().partition("/")
    return Canon(head), Canon(body or "simple")


class HeaderField(NamedTuple):
    """One field of a header section as it is on the wire (folding and final CRLF
    included); ``name`` is lower case, for lookups."""

    name: bytes
    raw: bytes


def split_header(header: bytes) -> list[HeaderField]:
    """The fields of a header section (which may end with its empty line).  A line
    that starts with whitespace continues the field before it; a line without a
    colon is kept as a field of that whole name, so that it is never signed."""
    fields: list[HeaderField] = []
    append = fields.append
    # One C pass: split at each CRLF that does not start a continuation line.  A piece
    # that is empty or starts with CRLF begins at the empty line that ends the section.
    for raw in _FIELD_BREAK.split(header):
        if not raw or raw[:2] == CRLF:
            break
        raw += CRLF
        # (tuple.__new__: the NamedTuple without the Python frame of its __new__)
        append(_new_tuple(HeaderField, (raw.partition(b":")[0].rstrip(b" \t").lower(), raw)))
    return fields


_FIELD_BREAK = re.compile(rb"\r\n(?![ \t])")
_new_tuple = tuple.__new__


def canon_header(raw: bytes, canon: Canon) -> bytes:
    """One header field, canonicalized (3.4.1 simple, 3.4.2 relaxed); the result ends
    with CRLF when ``raw`` does."""
    if canon is Canon.SIMPLE:
        return raw
    name, _, value = raw.partition(b":")
    value = value.replace(CRLF, b"")
    if b"\t" in value:
        value = value.replace(b"\t", b" ")
    while b"  " in value:
        value = value.replace(b"  ", b" ")
    return name.rstrip(b" \t").lower() + b":" + value.strip(b" ") + CRLF


def relaxed_fields(names: list[bytes], raws: list[bytes]) -> bytes:
    """The fields ``raws`` canonicalized with ``relaxed`` (3.4.2), each ending with
    CRLF whether or not its raw form does, and concatenated: the same octets as
    :func:`canon_header` on each, in a few passes over the whole run instead of a
    call per field.  ``names`` are the
    fields' names as :func:`split_header` gives them (lower case, no WSP before the
    colon).  Whitespace runs are collapsed over the joined values: each value is
    stripped first, so no run crosses from one field into the next.  A name holding
    WSP or a line break (never one a signature picks) goes field by field."""
    joined = b"".join(names)
    if b" " in joined or b"\t" in joined or b"\r" in joined or b"\n" in joined:
        return b"".join([canon_header(raw, Canon.RELAXED) for raw in raws])
    out = CRLF.join([name + b":" + raw.partition(b":")[2].replace(CRLF, b"").strip(b" \t")
                     for name, raw in zip(names, raws, strict=True)])
    if b"\t" in out:
        out = out.replace(b"\t", b" ")
    while b"  " in out:
        out = out.replace(b"  ", b" ")
    return out + CRLF if raws else b""


# Eight blanks written out, not " {8,}": a literal prefix the regex engine scans for
# quickly (five times faster here).
_LONG_RUN = re.compile(rb"        +")


def _relaxed_lines(lines: bytes) -> bytes:
    """3.4.4 on whole lines: each WSP run one space, none before CRLF.  Done with
    ``bytes.replace`` passes (C loops over the buffer; a run of n blanks needs log2(n)
    passes), several times faster than a regex substitution on text with many short
    runs.  Long runs (a text part laid out in columns has runs of a hundred blanks)
    go first through a regex that only matches them: one pass instead of seven."""
    if b"\t" in lines:
        lines = lines.replace(b"\t", b" ")
    if b"  " in lines:  # (no run of two: no longer one to look for either)
        if b"        " in lines:
            lines = _LONG_RUN.sub(b" ", lines)
        while b"  " in lines:
            lines = lines.replace(b"  ", b" ")
    return lines.replace(b" \r\n", CRLF)


class BodyHasher:
    """Canonicalizes and hashes a body fed in pieces of any size.

    ``limit`` is the ``l=`` count (None: the whole body).  After :meth:`digest`,
    ``length`` is the length of the whole canonical body, so a verifier can tell how
    much of it a signature with ``l=`` left unsigned.
    """

    def __init__(self, canon: Canon, limit: int | None = None, algorithm: str = "sha256") -> None:
        self._relaxed = canon is Canon.RELAXED
        self._hash = hashlib.new(algorithm)
        self._limit = limit
        self._partial = b""  # the incomplete line at the end of the last piece
        self._empty_lines = 0  # trailing empty lines not yet known to be inside the body
        self.length = 0  # canonical octets so far (hashed or beyond l=)
        self._done = False

    def update(self, data: bytes) -> None:
        if not data:
            return
        if self._partial:
            data = self._partial + data
        cut = data.rfind(CRLF)
        if cut < 0:
            self._partial = data
            return
        cut += 2
        self._partial = data[cut:]
        self._lines(data[:cut] if cut < len(data) else data)

    def _lines(self, lines: bytes) -> None:
        """Complete lines (ending with CRLF), starting at a line start."""
        if self._relaxed:
            lines = _relaxed_lines(lines)
        end = len(lines)
        while end >= 2 and lines[end - 2] == 13 and lines[end - 1] == 10:
            end -= 2
        if end == 0:  # only empty lines
            self._empty_lines += len(lines) // 2
            return
        trailing = (len(lines) - end) // 2 - 1  # the first CRLF ends the last line
        if self._empty_lines:
            self._emit(CRLF * self._empty_lines)
        self._emit(lines[:len(lines) - 2 * trailing] if trailing else lines)
        self._empty_lines = trailing

    def _emit(self, data: bytes) -> None:
        limit = self._limit
        if limit is not None and self.length + len(data) > limit:
            room = limit - self.length
            if room > 0:
                self._hash.update(data[:room])
        else:
            self._hash.update(data)
        self.length += len(data)

    def digest(self) -> bytes:
        """The hash of the canonical body (``bh=``); call once, after the last piece."""
        if not self._done:
            self._done = True
            last = self._partial
            self._partial = b""
            if self._relaxed and last:
                last = _relaxed_lines(last).rstrip(b" ")
            if last:
                self._lines(last + CRLF)
            if not self._relaxed and self.length == 0:
                self._emit(CRLF)  # 3.4.3: an empty body is one CRLF in simple
        return self._hash.digest()

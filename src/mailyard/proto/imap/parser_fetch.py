"""The grammars of the commands on messages: FETCH (RFC 9051 6.4.5, RFC 3516 BINARY,
RFC 7162 CHANGEDSINCE/VANISHED), STORE (6.4.6, RFC 7162 UNCHANGEDSINCE), COPY, MOVE
(RFC 6851) and UID EXPUNGE (RFC 4315).

Separate from :mod:`~mailyard.proto.imap.parser` because FETCH's attributes and body
sections are a grammar of their own, the largest after SEARCH; each function here
reads one command's arguments with the tokens of :mod:`~mailyard.proto.imap.lexer`.
"""

from __future__ import annotations

import re

from mailyard.proto.imap.commands import (
    Command,
    CopyMove,
    Expunge,
    Fetch,
    FetchAttribute,
    Section,
    Store,
)
from mailyard.proto.imap.lexer import (
    _NAME_CHARS,
    ATOM_CHARS,
    MAX_NUMBER64,
    ParseError,
    _chars,
    _Reader,
)

_FETCH_SIMPLE = frozenset({"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "RFC822",
                           "RFC822.HEADER", "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID",
                           "MODSEQ", "EMAILID", "THREADID", "SAVEDATE"})
_FETCH_MACROS = {
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SECTIONED = frozenset({"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"})


def _fetch(r: _Reader, name: str, uid: bool) -> Command:
    sequence = r.sequence_set()
    r.sp()
    attributes: list[FetchAttribute] = []
    if r.peek() == 0x28:
        r.open_paren()
        while r.peek() != 0x29:
            if attributes:
                r.sp()
            attributes.append(_fetch_att(r))
        r.close_paren()
        if not attributes:
            raise ParseError("FETCH needs at least one attribute")
    else:
        word = r.peek_word()
        if word in _FETCH_MACROS:
            r.take(ATOM_CHARS)
            attributes = [FetchAttribute(n) for n in _FETCH_MACROS[word]]
        else:
            attributes.append(_fetch_att(r))
    changed_since = None
    vanished = False
    if not r.at_end():
        r.sp()
        r.open_paren()
        first = True
        while r.peek() != 0x29:
            if not first:
                r.sp()
            first = False
            modifier = r.word()
            if modifier == "CHANGEDSINCE":
                r.sp()
                changed_since = r.number(MAX_NUMBER64)
            elif modifier == "VANISHED":
                vanished = True
            else:
                raise ParseError(f"Unknown FETCH modifier {modifier}")
        r.close_paren()
        if vanished and (not uid or changed_since is None):
            raise ParseError("VANISHED needs UID FETCH and CHANGEDSINCE (RFC 7162 3.2.6)")
    if uid and not any(a.name == "UID" for a in attributes):
        attributes.append(FetchAttribute("UID"))  # RFC 9051 6.4.9: UID FETCH implies UID
    return Fetch(sequence, tuple(attributes), uid, changed_since, vanished)


def _fetch_att(r: _Reader) -> FetchAttribute:
    raw = r.take(_NAME_CHARS)
    att = raw.decode("ascii").upper()
    if att in _SECTIONED and r.peek() == 0x5B:
        peek = att.endswith(".PEEK")
        base = att.removesuffix(".PEEK")
        section = _section(r, binary=base != "BODY")
        partial = None
        if r.peek() == 0x3C and base != "BINARY.SIZE":
            r.pos += 1
            offset = r.number(MAX_NUMBER64)
            r.expect(b".")
            length = r.number(MAX_NUMBER64, nonzero=True)
            r.expect(b">")
            partial = (offset, length)
        return FetchAttribute(base, section, partial, peek)
    if att in _FETCH_SIMPLE:
        return FetchAttribute(att)
    raise ParseError(f"Unknown FETCH attribute {att or raw.decode('ascii', 'replace')!r}")


def _section(r: _Reader, binary: bool) -> Section:
    r.expect(b"[")
    part: list[int] = []
    text = ""
    fields: tuple[str, ...] = ()
    while r.peek() in range(0x30, 0x3A):
        part.append(r.number(nonzero=True))
        if r.peek() != 0x2E:
            break
        r.pos += 1
    if r.peek() != 0x5D:
        if binary:
            raise ParseError("BINARY sections are part numbers only (RFC 3516)")
        text = r.take(_NAME_CHARS).decode("ascii").upper()
        allowed = {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"}
        if part:
            allowed.add("MIME")
        if text not in allowed:
            raise ParseError(f"Bad section {text!r}")
        if text.startswith("HEADER.FIELDS"):
            r.sp()
            r.open_paren()
            names = [r.astring_text().upper()]
            while r.peek() == 0x20:
                r.sp()
                names.append(r.astring_text().upper())
            r.close_paren()
            fields = tuple(names)
    r.expect(b"]")
    return Section(tuple(part), text, fields)


# STORE, COPY, MOVE, EXPUNGE -------------------------------------------------------------

_STORE_ITEM = re.compile(r"([+-]?)FLAGS(\.SILENT)?\Z")


def _store(r: _Reader, name: str, uid: bool) -> Command:
    sequence = r.sequence_set()
    r.sp()
    unchanged_since = None
    if r.peek() == 0x28:
        r.open_paren()
        r.expect(b"UNCHANGEDSINCE ", "UNCHANGEDSINCE")
        unchanged_since = r.number(MAX_NUMBER64)
        r.close_paren()
        r.sp()
    item = r.take(ATOM_CHARS | _chars("+-")).decode("ascii").upper()
    m = _STORE_ITEM.match(item)
    if m is None:
        raise ParseError("STORE item is FLAGS, +FLAGS or -FLAGS, optionally .SILENT")
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        flag_items = [r.flag()]
        while r.peek() == 0x20:
            r.sp()
            flag_items.append(r.flag())
        flags = tuple(flag_items)
    if "\\Recent" in flags:
        raise ParseError("\\Recent cannot be stored")
    return Store(sequence, m.group(1), flags, bool(m.group(2)), uid, unchanged_since)


def _copy_move(r: _Reader, name: str, uid: bool) -> Command:
    sequence = r.sequence_set()
    r.sp()
    return CopyMove(name, sequence, r.mailbox(), uid)


def _uid_expunge(r: _Reader, name: str, uid: bool) -> Command:
    return Expunge(r.sequence_set())

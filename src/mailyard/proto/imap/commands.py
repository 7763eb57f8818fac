"""IMAP commands as typed values, what :mod:`mailyard.proto.imap.parser` produces.

Strings a client sends as astrings are kept as :class:`str` once decoded (mailbox
names from modified UTF-7 or UTF-8, search strings from UTF-8).  Message numbers and
UIDs are ints; ``*`` in a sequence set is :data:`STAR`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "STAR", "Append", "Authenticate", "Command", "CopyMove", "Create", "Enable", "Expunge",
    "Fetch", "FetchAttribute", "GetQuota", "GetQuotaRoot", "Id", "ListMailboxes", "Login",
    "MailboxCommand", "MailboxName", "Qresync", "Rename", "Search", "SearchKey", "Section",
    "Select", "SequenceSet", "Simple", "Sort", "Status", "Store", "Thread",
]

STAR = 0
"""``*`` in a sequence set: the largest number in use (0 is never a valid number)."""


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """RFC 9051 9 ``sequence-set``: ranges as given (``lo`` may exceed ``hi``; either
    may be :data:`STAR`), or ``$`` (``saved``, RFC 5182 SEARCHRES)."""

    ranges: tuple[tuple[int, int], ...] = ()
    saved: bool = False

    def normalized(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges with ``*`` replaced by ``largest``
        (RFC 9051 9: ``*`` is the largest number in use; ``3:*`` with largest 2 is
        ``2:3``).  Repeated or overlapping ranges cost nothing more."""
        spans = []
        for lo, hi in self.ranges:
            a = largest if lo == STAR else lo
            b = largest if hi == STAR else hi
            if a > b:
                a, b = b, a
            if b > 0:
                spans.append((max(a, 1), b))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + 1:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return merged

    def iterate(self, largest: int) -> Iterator[int]:
        for a, b in self.normalized(largest):
            yield from range(a, b + 1)

    def contains(self, number: int, largest: int) -> bool:
        return any(a <= number <= b for a, b in self.normalized(largest))


@dataclass(frozen=True, slots=True)
class MailboxName:
    """A mailbox name as decoded; ``name`` is "INBOX" for any case of inbox
    (RFC 9051 5.1)."""

    name: str


class Command:
    """Base of every parsed command; ``name`` is the upper-case command name."""

    __slots__ = ()
    name: str


@dataclass(frozen=True, slots=True)
class Simple(Command):
    """A command without arguments: CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK,
    CLOSE, UNSELECT, IDLE, NAMESPACE, EXPUNGE (not UID EXPUNGE)."""

    name: str


@dataclass(frozen=True, slots=True)
class Login(Command):
    username: str
    password: str
    name: str = "LOGIN"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    mechanism: str  # upper case
    initial: bytes | None  # SASL-IR (RFC 4959): decoded; b"" for "="
    name: str = "AUTHENTICATE"


@dataclass(frozen=True, slots=True)
class Enable(Command):
    capabilities: tuple[str, ...]  # upper case
    name: str = "ENABLE"


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971: None for ``ID NIL``."""

    parameters: tuple[tuple[str, str | None], ...] | None
    name: str = "ID"


@dataclass(frozen=True, slots=True)
class Qresync:
    """RFC 7162 3.2.5.  ``known_uids``/``seq_match`` are optional."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    """SELECT, or EXAMINE (``readonly``)."""

    mailbox: MailboxName
    readonly: bool = False
    condstore: bool = False
    qresync: Qresync | None = None
    name: str = "SELECT"


@dataclass(frozen=True, slots=True)
class Create(Command):
    mailbox: MailboxName
    special_use: tuple[str, ...] = ()  # RFC 6154 5.2 CREATE ... (USE (\Sent))
    name: str = "CREATE"


@dataclass(frozen=True, slots=True)
class MailboxCommand(Command):
    """DELETE, SUBSCRIBE, UNSUBSCRIBE: one mailbox name."""

    name: str
    mailbox: MailboxName


@dataclass(frozen=True, slots=True)
class Rename(Command):
    source: MailboxName
    target: MailboxName
    name: str = "RENAME"


@dataclass(frozen=True, slots=True)
class ListMailboxes(Command):
    """LIST (RFC 9051 6.3.9, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS,
    RFC 6154 SPECIAL-USE) or LSUB (RFC 3501 6.3.9, ``name`` "LSUB")."""

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()  # SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE
    returns: frozenset[str] = frozenset()  # SUBSCRIBED CHILDREN SPECIAL-USE STATUS
    status_items: tuple[str, ...] = ()  # RETURN (STATUS (...))
    extended: bool = False  # selection or return options were given
    name: str = "LIST"


@dataclass(frozen=True, slots=True)
class Status(Command):
    mailbox: MailboxName
    items: tuple[str, ...]  # upper case, in the order asked
    name: str = "STATUS"


@dataclass(frozen=True, slots=True)
class Append(Command):
    """APPEND's head; the message follows as a literal of ``size`` octets that the core
    streams (``binary``: a ``~{n}`` literal8, RFC 3516 4.4)."""

    mailbox: MailboxName
    flags: tuple[str, ...]
    date: dt.datetime | None
    size: int
    binary: bool = False
    synchronizing: bool = True
    name: str = "APPEND"


@dataclass(frozen=True, slots=True)
class Section:
    """``BODY[...]``/``BINARY[...]`` section (RFC 9051 6.4.5): ``part`` numbers, then
    ``text`` (HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME or "")."""

    part: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()  # HEADER.FIELDS (...), upper case


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """One ``fetch-att``.  ``name``: FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE,
    BODY, BODYSTRUCTURE, BODY[] (``section`` set), BINARY, BINARY.SIZE, MODSEQ,
    RFC822, RFC822.HEADER, RFC822.TEXT ..."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None  # <offset.length>
    peek: bool = False

    def label(self) -> str:
        """The name the FETCH response uses for it (RFC 9051 7.5.2: a partial
        request is answered as ``BODY[]<offset>``, PEEK is dropped)."""
        if self.section is None:
            return self.name
        sec = self.section
        spec = ".".join(str(n) for n in sec.part)
        if sec.text:
            spec = f"{spec}.{sec.text}" if spec else sec.text
        if sec.fields:
            spec += " (" + " ".join(sec.fields) + ")"
        out = f"{self.name}[{spec}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    sequence: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    uid: bool = False
    changed_since: int | None = None  # RFC 7162 3.1.4.1
    vanished: bool = False  # RFC 7162 3.2.6
    name: str = "FETCH"


@dataclass(frozen=True, slots=True)
class Store(Command):
    sequence: SequenceSet
    mode: str  # "+", "-" or "" (replace)
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None  # RFC 7162 3.1.3
    name: str = "STORE"


@dataclass(frozen=True, slots=True)
class CopyMove(Command):
    """COPY or MOVE (RFC 6851), possibly as UID COPY / UID MOVE."""

    name: str
    sequence: SequenceSet
    mailbox: MailboxName
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE with its set (RFC 9051 6.4.9)."""

    uids: SequenceSet | None = None
    name: str = "EXPUNGE"


@dataclass(frozen=True, slots=True)
class SearchKey:
    """A node of the search program.  ``name`` is the key in upper case, with three
    structural names: ``AND`` (a parenthesised list or the top level), ``SEQUENCE``
    (a bare sequence set) and the keys ``OR``/``NOT`` whose ``args`` are keys."""

    name: str
    args: tuple[str | int | dt.date | SequenceSet | SearchKey, ...] = ()


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH (RFC 9051 6.4.4, with ESEARCH return options RFC 4731/9051 and
    SEARCHRES SAVE RFC 5182)."""

    criteria: SearchKey
    charset: str = ""
    returns: tuple[str, ...] | None = None  # None: no RETURN (rev1 untagged SEARCH)
    uid: bool = False
    name: str = "SEARCH"


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """SORT (RFC 5256 3): criteria are e.g. ("REVERSE DATE", "SUBJECT")."""

    criteria: tuple[str, ...]
    charset: str
    search: SearchKey
    uid: bool = False
    returns: tuple[str, ...] | None = None
    name: str = "SORT"


@dataclass(frozen=True, slots=True)
class Thread(Command):
    algorithm: str  # ORDEREDSUBJECT, REFERENCES
    charset: str
    search: SearchKey
    uid: bool = False
    name: str = "THREAD"


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    root: str
    name: str = "GETQUOTA"


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    mailbox: MailboxName
    name: str = "GETQUOTAROOT"


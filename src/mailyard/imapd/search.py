"""IMAP SEARCH: a search program (RFC 9051 6.4.4, RFC 3501 6.4.4) evaluated over the
messages of the selected mailbox.

The program is the :class:`~mailyard.proto.imap.commands.SearchKey` tree the parser
builds.  It is compiled once into predicates, each with a cost: keys the index
answers (flags, size, dates, UIDs, sequence numbers, mod-sequences) cost nothing,
header keys need the header section, BODY and TEXT the whole message.  Within an
AND or OR the cheap predicates run first and short-circuit, so a message file is
read only when a cheap key has not already decided; it is read at most once per
message and search, and only the header section when no key of the program needs
the body (if the adapter offers :attr:`SearchContext.load_header`).

Semantics, key by key where the RFCs leave a choice:

* String keys match a case-insensitive substring (Unicode case folding, runs of
  white space and line breaks compared as one space) of what a person reads:
  header fields with RFC 2047 encoded words decoded, text parts with their
  transfer encoding and charset undone, of HTML parts the visible text.  BODY
  looks at the text parts only (anywhere in the MIME tree, attached messages
  included); TEXT at those plus every header section of the message (the
  message's, each part's MIME header, attached messages').  FROM, TO, CC, BCC and
  SUBJECT look at the message's own header fields (every occurrence); an empty
  string matches messages that have the field at all, as RFC 9051 says for HEADER.
  The search strings arrive decoded (CHARSET US-ASCII or UTF-8; the parser refuses
  others with ``NO [BADCHARSET]``).
* BEFORE, ON and SINCE compare the internal date as a calendar day in the server's
  time zone (:attr:`SearchContext.tz`); SENTBEFORE, SENTON and SENTSINCE the day
  written in the ``Date:`` field, its own time zone ignored.  A message without a
  readable ``Date:`` field matches no SENT* key.
* RECENT never matches and NEW (RECENT UNSEEN) neither: Mailyard keeps no \\Recent
  flag (IMAP4rev2 removed it, RFC 9051 E.1); OLD and UNRECENT match every message.
* KEYWORD and UNKEYWORD compare flag names case-insensitively.
* ``$`` (RFC 5182), as a sequence set or after UID, is the saved result: UIDs.
* MODSEQ (RFC 7162 3.1.5) compares the message's mod-sequence (one per message: the
  entry name and type, if given, do not narrow it).
* OLDER and YOUNGER (RFC 5032 WITHIN) compare the internal date to ``now``.

Limits: the deadline is checked before each message and :class:`SearchTimeout` is
raised once it has passed (the adapter answers ``NO [LIMIT]``); the same exception
refuses a program nested deeper than :data:`MAX_NESTING`.  MIME bombs are capped by
:func:`mailyard.message.structure.parse` (depth and part count).

**The search index.**  Reading and decoding every file is what makes a string key
slow, so the decoded, folded text a string key compares is kept between searches
by a :class:`SearchIndex` (``imapd/searchindex.py``) when the context has one: per
message its *fields document* (the header fields as ``name:value`` lines, for FROM,
TO, CC, BCC, SUBJECT and HEADER) and its *texts* (every header section and every
text part, for TEXT and BODY).  The documents are built here, by the functions the
scan over files uses too (:func:`fields_document`, :func:`texts_document`), and
compared with the same rule (:func:`field_matches`, a substring test), so an
indexed answer and a read answer cannot differ.  A string key asks the index once,
for the messages it holds; the others are read as before, and what their reading
built is handed to the index (:meth:`SearchIndex.add`), so a folder is indexed by
the searches that need it, within their deadlines.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import operator
import re
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Protocol, TypeVar

from mailyard.message import structure, text
from mailyard.proto.imap.commands import SearchKey, SequenceSet
from mailyard.store.index import MessageInfo

__all__ = [
    "MAX_NESTING", "SearchContext", "SearchIndex", "SearchProgramError", "SearchTimeout",
    "field_matches",
    "fields_document", "header_fields", "internal_day", "search", "search_modseq",
    "texts_document", "uses_string_keys",
]

MAX_NESTING = 100
"""Deepest search program evaluated; the parser's own limit (32) is lower."""

_SPACES = re.compile(r"\s+")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 3.6.8 ftext

# Predicate costs: what a key needs besides the index.
_INDEX, _HEADER, _BODY = 0, 1, 2

_UID = operator.attrgetter("uid")  # over 10,000 messages, map() with it runs in C


class SearchProgramError(ValueError):
    """A search key, sort key or threading algorithm this server does not evaluate:
    the adapter answers ``BAD`` with this text (it names only the client's input)."""


class SearchTimeout(Exception):
    """The search went past its limits: the deadline passed, or the program is too
    deeply nested.  The adapter answers ``NO [LIMIT]``."""


class SearchIndex(Protocol):
    """The documents of a folder's messages kept between searches, as one search sees
    them (UIDs of the folder the search runs in).  Matching answers only for the
    messages :meth:`fields_of` / :meth:`texts_of` say are held; the rest are read."""

    def fields_of(self) -> Container[int]:
        """UIDs whose fields document is held."""

    def texts_of(self) -> Container[int]:
        """UIDs whose texts are held."""

    def field_matches(self, name: str, needle: str) -> set[int]:
        """Held UIDs with a field ``name`` whose value contains ``needle`` (folded),
        as :func:`field_matches` decides."""

    def text_matches(self, needle: str, with_headers: bool) -> set[int]:
        """Held UIDs whose body texts (and header texts, ``with_headers``) contain
        ``needle`` (folded)."""

    def add(self, uid: int, fields: str | None, texts: tuple[str, str] | None) -> None:
        """Documents a search built for a message it read (None: not built)."""


@dataclass(frozen=True)
class SearchContext:
    """What a search (and SORT and THREAD) may look at in the selected mailbox.

    ``messages`` are in UID order; message sequence number = index + 1.  ``load``
    returns the raw message of a UID (slow: a file read); ``load_header``, if given,
    returns at least its header section (reading less of the file).  ``saved`` holds
    the UIDs of the saved search result (``$``, RFC 5182); ``highest_modseq`` is the
    mailbox's HIGHESTMODSEQ (for the caller's responses; matching does not need it).
    ``deadline`` is a :func:`time.monotonic` instant (``clock`` reads it); ``tz`` is
    the server's time zone for internal dates (None: the local zone); ``now`` gives
    the wall clock for OLDER/YOUNGER; ``index``, if given, answers string keys for
    the messages it holds and is given the documents of those read."""

    messages: Sequence[MessageInfo]
    load: Callable[[int], bytes]
    highest_modseq: int = 0
    saved: frozenset[int] = frozenset()
    deadline: float = math.inf
    load_header: Callable[[int], bytes] | None = None
    tz: dt.tzinfo | None = None
    now: Callable[[], float] = field(default=time.time)
    clock: Callable[[], float] = field(default=time.monotonic)
    index: SearchIndex | None = None

    def check_deadline(self) -> None:
        """Raise :class:`SearchTimeout` if the deadline has passed."""
        if self.deadline != math.inf and self.clock() > self.deadline:
            raise SearchTimeout("search took too long")


def internal_day(stamp: float, tz: dt.tzinfo | None) -> dt.date:
    """The calendar day of an internal date in the zone ``tz`` (None: the local one)."""
    try:
        when = dt.datetime.fromtimestamp(stamp, tz) if tz is not None else (
            dt.datetime.fromtimestamp(stamp))
    except (OverflowError, OSError, ValueError):
        return dt.date.min if stamp < 0 else dt.date.max
    return when.date()


def header_fields(ctx: SearchContext, index: int) -> list[tuple[str, bytes]]:
    """The header fields (lower-case name, unfolded raw value) of message ``index``,
    read with ``load_header`` when the context has it."""
    uid = ctx.messages[index].uid
    raw = ctx.load_header(uid) if ctx.load_header is not None else ctx.load(uid)
    return text.header_fields(text.header_block(raw))


# --- the documents string keys compare -------------------------------------------------

def _fold(value: str) -> str:
    """The comparison form of text: Unicode case folding, white space runs (line
    breaks included) as one space.  NUL (refused in search strings by the parser,
    RFC 9051 4.3) becomes U+FFFD, so documents store in SQLite as they compare."""
    return _SPACES.sub(" ", value.casefold()).replace("\x00", "\ufffd")


def fields_document(fields: Sequence[tuple[str, bytes]]) -> str:
    """The fields document of a header section (fields as :func:`header_fields`
    gives them): one ``name:value`` line per field in order, the name in lower case,
    the value decoded (RFC 2047) and folded.  Neither part holds a line break, and
    a name never holds a colon."""
    return "\n".join(f"{name}:{_fold(text.decode_header(value))}" for name, value in fields)


def field_matches(document: str, name: str, needle: str) -> bool:
    """Whether a field ``name`` (lower case) of a fields document has ``needle``
    (folded) in its value; an empty needle matches any such field (RFC 9051 6.4.4
    HEADER)."""
    key = "\n" + name + ":"
    hay = "\n" + document
    pos = hay.find(key)
    while pos >= 0:
        start = pos + len(key)
        end = hay.find("\n", start)
        if needle in (hay[start:] if end < 0 else hay[start:end]):
            return True
        if end < 0:
            return False
        pos = hay.find(key, end)
    return False


def texts_document(message: bytes) -> tuple[str, str]:
    """(header texts, body texts) of a message (CRLF line ends): every header field of
    the message, its parts and attached messages as folded ``name: value`` lines; and
    the decoded text of every text part, folded, one line per part.  A folded search
    string has no line break, so it is found in a document exactly when it is found
    in one field or one part."""
    bodies: list[str] = []
    headers: list[str] = []
    for ent, decoded in text.text_parts(message):
        headers.extend(_fold(f"{k.decode('ascii', 'replace')}: {text.decode_header(v)}")
                       for k, v in ent.fields)
        if decoded:
            bodies.append(_fold(decoded))
    return "\n".join(headers), "\n".join(bodies)


# --- one message as the predicates see it -------------------------------------------------

class _Message:
    """A message of the mailbox during one search: index data at hand, the file read
    on first need and at most once, decoded views computed once."""

    __slots__ = ("_ctx", "_data", "_day", "_fields", "_full", "_sent", "document", "index",
                 "info", "missing", "texts")

    def __init__(self, index: int, ctx: SearchContext, full: bool) -> None:
        self.index = index
        self.info = ctx.messages[index]
        self._ctx = ctx
        self._full = full  # the program needs the body: read the whole file at once
        self._data: bytes | None = None
        self._fields: list[tuple[str, bytes]] | None = None
        self._day: dt.date | None = None
        self._sent: text.SentDate | None | bool = False  # False: not parsed yet
        self.document: str | None = None  # the fields document, once built
        self.texts: tuple[str, str] | None = None  # texts_document(), once built
        self.missing = False  # the file was gone (read as empty)

    def day(self) -> dt.date:
        if self._day is None:
            self._day = internal_day(self.info.internal_date, self._ctx.tz)
        return self._day

    def data(self) -> bytes:
        if self._data is None:
            raw = self._ctx.load(self.info.uid)
            self.missing = not raw
            self._data = structure.to_crlf(raw)
        return self._data

    def fields(self) -> list[tuple[str, bytes]]:
        if self._fields is None:
            if self._data is None and not self._full and self._ctx.load_header is not None:
                raw = self._ctx.load_header(self.info.uid)
                self.missing = not raw
            else:
                raw = self.data()
            self._fields = text.header_fields(text.header_block(raw))
        return self._fields

    def fields_document(self) -> str:
        if self.document is None:
            self.document = fields_document(self.fields())
        return self.document

    def sent(self) -> text.SentDate | None:
        if self._sent is False:
            value = next((v for k, v in self.fields() if k == "date"), None)
            self._sent = text.sent_date(value)
        assert not isinstance(self._sent, bool)
        return self._sent

    def texts_document(self) -> tuple[str, str]:
        if self.texts is None:
            self.texts = texts_document(self.data())
        return self.texts


_Test = Callable[[_Message], bool]


@dataclass(frozen=True, slots=True)
class _Node:
    cost: int
    test: _Test
    const: bool | None = None  # the outcome when known without looking at a message
    uids: frozenset[int] | None = None  # the matching UIDs, when the index knows them all


_TRUE = _Node(_INDEX, lambda m: True, True)
_FALSE = _Node(_INDEX, lambda m: False, False)


# --- compiling the program ---------------------------------------------------------------

_A = TypeVar("_A")


def _arg(key: SearchKey, i: int, kind: type[_A]) -> _A:
    if len(key.args) <= i or not isinstance(key.args[i], kind):
        raise TypeError(f"search key {key.name} needs a {kind.__name__} argument")
    value: _A = key.args[i]  # type: ignore[assignment]
    return value


_SYSTEM_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
}
_CONSTANT_KEYS = {"ALL": True, "OLD": True, "UNRECENT": True, "RECENT": False, "NEW": False}
_ADDRESS_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}


def _flag(name: str, wanted: bool) -> _Node:
    return _Node(_INDEX, lambda m: (name in m.info.flags) is wanted)


def _keyword(keyword: str, wanted: bool) -> _Node:
    folded = keyword.lower()
    return _Node(_INDEX, lambda m: any(f.lower() == folded for f in m.info.flags) is wanted)


def _in_ranges(spans: list[tuple[int, int]]) -> Callable[[int], bool]:
    starts = [a for a, _ in spans]

    def contains(number: int) -> bool:
        i = bisect.bisect_right(starts, number) - 1
        return i >= 0 and number <= spans[i][1]
    return contains


def _sequence(seq: SequenceSet, ctx: SearchContext, uid: bool) -> _Node:
    if seq.saved:
        saved = ctx.saved
        return _Node(_INDEX, lambda m: m.info.uid in saved)
    if uid:
        largest = ctx.messages[-1].uid if ctx.messages else 0
        contains = _in_ranges(seq.normalized(largest))
        return _Node(_INDEX, lambda m: contains(m.info.uid))
    contains = _in_ranges(seq.normalized(len(ctx.messages)))
    return _Node(_INDEX, lambda m: contains(m.index + 1))


def _internal_day(name: str, day: dt.date) -> _Node:
    if name == "BEFORE":
        return _Node(_INDEX, lambda m: m.day() < day)
    if name == "ON":
        return _Node(_INDEX, lambda m: m.day() == day)
    return _Node(_INDEX, lambda m: m.day() >= day)


def _sent_day(name: str, day: dt.date) -> _Node:
    def test(m: _Message) -> bool:
        sent = m.sent()
        if sent is None:
            return False
        if name == "SENTBEFORE":
            return sent.day < day
        if name == "SENTON":
            return sent.day == day
        return sent.day >= day
    return _Node(_HEADER, test)


def _all_held(ctx: SearchContext, held: Container[int]) -> bool:
    return all(map(held.__contains__, map(_UID, ctx.messages)))


def _header(field_name: str, needle: str, ctx: SearchContext) -> _Node:
    wanted = field_name.lower()
    if not _FIELD_NAME.fullmatch(wanted):
        return _FALSE  # no field has such a name
    folded = _fold(needle)

    def read(m: _Message) -> bool:
        return field_matches(m.fields_document(), wanted, folded)
    index = ctx.index
    if index is None:
        return _Node(_HEADER, read)
    found = index.field_matches(wanted, folded)
    held = index.fields_of()  # after matching: a failed match holds nothing

    def test(m: _Message) -> bool:
        uid = m.info.uid
        return uid in found if uid in held else read(m)
    if _all_held(ctx, held):
        return _Node(_INDEX, test, uids=frozenset(found))
    return _Node(_HEADER, test)


def _body(needle: str, with_headers: bool, ctx: SearchContext) -> _Node:
    folded = _fold(needle)
    if not folded:
        return _TRUE

    def read(m: _Message) -> bool:
        head, body = m.texts_document()
        return folded in body or (with_headers and folded in head)
    index = ctx.index
    if index is None:
        return _Node(_BODY, read)
    found = index.text_matches(folded, with_headers)
    held = index.texts_of()  # after matching: a failed match holds nothing

    def test(m: _Message) -> bool:
        uid = m.info.uid
        return uid in found if uid in held else read(m)
    if _all_held(ctx, held):
        return _Node(_INDEX, test, uids=frozenset(found))
    return _Node(_BODY, test)


def _and(nodes: list[_Node]) -> _Node:
    if any(n.const is False for n in nodes):
        return _FALSE
    live = sorted((n for n in nodes if n.const is None), key=lambda n: n.cost)
    if not live:
        return _TRUE
    if len(live) == 1:
        return live[0]
    tests = [n.test for n in live]
    uids = None
    if all(n.uids is not None for n in live):
        uids = frozenset.intersection(*(n.uids for n in live if n.uids is not None))
    return _Node(live[-1].cost, lambda m: all(t(m) for t in tests), uids=uids)


def _or(nodes: list[_Node]) -> _Node:
    if any(n.const is True for n in nodes):
        return _TRUE
    live = sorted((n for n in nodes if n.const is None), key=lambda n: n.cost)
    if not live:
        return _FALSE
    if len(live) == 1:
        return live[0]
    tests = [n.test for n in live]
    uids = None
    if all(n.uids is not None for n in live):
        uids = frozenset.union(*(n.uids for n in live if n.uids is not None))
    return _Node(live[-1].cost, lambda m: any(t(m) for t in tests), uids=uids)


def _not(node: _Node, ctx: SearchContext) -> _Node:
    if node.const is not None:
        return _FALSE if node.const else _TRUE
    test = node.test
    uids = None
    if node.uids is not None:
        uids = frozenset(m.uid for m in ctx.messages if m.uid not in node.uids)
    return _Node(node.cost, lambda m: not test(m), uids=uids)


def _compile(key: SearchKey, ctx: SearchContext, depth: int = 0) -> _Node:
    if depth > MAX_NESTING:
        raise SearchTimeout("search program too deeply nested")
    name = key.name
    if name in ("AND", "OR", "NOT"):
        parts = [_compile(_arg(key, i, SearchKey), ctx, depth + 1) for i in range(len(key.args))]
        if name == "NOT":
            return _not(parts[0], ctx)
        return _and(parts) if name == "AND" else _or(parts)
    if name in _CONSTANT_KEYS:
        return _TRUE if _CONSTANT_KEYS[name] else _FALSE
    if name in _SYSTEM_FLAG_KEYS:
        return _flag(*_SYSTEM_FLAG_KEYS[name])
    if name in ("KEYWORD", "UNKEYWORD"):
        return _keyword(_arg(key, 0, str), name == "KEYWORD")
    if name in ("SEQUENCE", "UID"):
        return _sequence(_arg(key, 0, SequenceSet), ctx, uid=name == "UID")
    if name in ("LARGER", "SMALLER"):
        size = _arg(key, 0, int)
        if name == "LARGER":
            return _Node(_INDEX, lambda m: m.info.size > size)
        return _Node(_INDEX, lambda m: m.info.size < size)
    if name in ("BEFORE", "ON", "SINCE"):
        return _internal_day(name, _arg(key, 0, dt.date))
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        return _sent_day(name, _arg(key, 0, dt.date))
    if name in ("OLDER", "YOUNGER"):
        limit = ctx.now() - _arg(key, 0, int)
        if name == "OLDER":
            return _Node(_INDEX, lambda m: m.info.internal_date < limit)
        return _Node(_INDEX, lambda m: m.info.internal_date >= limit)
    if name == "MODSEQ":
        modseq = _arg(key, 0, int)
        return _Node(_INDEX, lambda m: m.info.modseq >= modseq)
    if name in _ADDRESS_KEYS:
        return _header(_ADDRESS_KEYS[name], _arg(key, 0, str), ctx)
    if name == "HEADER":
        return _header(_arg(key, 0, str), _arg(key, 1, str), ctx)
    if name in ("BODY", "TEXT"):
        return _body(_arg(key, 0, str), name == "TEXT", ctx)
    raise SearchProgramError(f"unknown search key {name}")


# --- running it ---------------------------------------------------------------------------

def search(key: SearchKey, ctx: SearchContext) -> list[int]:
    """The indices (0-based, ascending) of the messages in ``ctx.messages`` that match
    ``key``.  Raises :class:`SearchTimeout` past the deadline or the nesting limit."""
    node = _compile(key, ctx)
    if node.const is False:
        return []
    if node.const is True:
        return list(range(len(ctx.messages)))
    if node.uids is not None:  # the index answered every key: no message to look at
        ctx.check_deadline()
        found = map(node.uids.__contains__, map(_UID, ctx.messages))
        return list(compress(range(len(ctx.messages)), found))
    full = node.cost >= _BODY
    test = node.test
    index = ctx.index
    held = index.fields_of() if index is not None else ()
    out: list[int] = []
    for position in range(len(ctx.messages)):
        ctx.check_deadline()
        m = _Message(position, ctx, full)
        if test(m):
            out.append(position)
        if index is not None and not m.missing and (m.document is not None
                                                    or m.texts is not None):
            if m.document is None and m.info.uid not in held:
                m.fields_document()  # the file is read: its fields cost little more
            index.add(m.info.uid, m.document, m.texts)
    return out


_STRING_KEYS = frozenset({"FROM", "TO", "CC", "BCC", "SUBJECT", "HEADER", "BODY", "TEXT"})


def uses_string_keys(key: SearchKey) -> bool:
    """Whether a search program has a key the search index answers."""
    stack = [key]
    while stack:
        node = stack.pop()
        if node.name in _STRING_KEYS:
            return True
        stack.extend(a for a in node.args if isinstance(a, SearchKey))
    return False


def search_modseq(key: SearchKey, matches: Sequence[int], ctx: SearchContext) -> int | None:
    """The highest mod-sequence of the matched messages when the program uses MODSEQ
    (RFC 7162 3.1.5: the SEARCH/SORT response then ends with ``(MODSEQ n)``), else None.
    With no match there is nothing to report either."""
    stack = [key]
    uses = False
    while stack and not uses:
        node = stack.pop()
        uses = node.name == "MODSEQ"
        stack.extend(a for a in node.args if isinstance(a, SearchKey))
    if not uses or not matches:
        return None
    return max(ctx.messages[i].modseq for i in matches)

"""The IMAP command grammar (RFC 9051 9, RFC 3501 9) into typed commands.

The connection core (:mod:`mailyard.proto.imap.server`) frames a command as
*segments*: the text of each line (CRLF removed) alternating with the octets of the
literal announced at that line's end (``{n}``, ``{n+}`` of RFC 7888, ``~{n}`` of
RFC 3516)::

    [b'A1 LOGIN {5}', b'alice', b' {6}', b'secret', b'']

:func:`parse_command` turns a complete command into a :mod:`commands` value or raises
:class:`ParseError` (the tagged BAD/NO to send, with its response code).
:func:`append_head` recognises an APPEND whose message literal is about to arrive, so
the core can stream it instead of buffering it.

Limits (nesting, sequence-set size) come in a :class:`ParseContext` and fail with the
``[LIMIT]`` code (RFC 5530 3).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from mailyard.proto.imap import mutf7
from mailyard.proto.imap.commands import (
    STAR,
    Append,
    Authenticate,
    Command,
    CopyMove,
    Create,
    Enable,
    Expunge,
    Fetch,
    FetchAttribute,
    GetQuota,
    GetQuotaRoot,
    Id,
    ListMailboxes,
    Login,
    MailboxCommand,
    MailboxName,
    Qresync,
    Rename,
    Search,
    SearchKey,
    Section,
    Select,
    SequenceSet,
    Simple,
    Sort,
    Status,
    Store,
    Thread,
)

__all__ = ["LITERAL_AT_END", "Incomplete", "ParseContext", "ParseError", "append_head",
           "parse_command", "parse_tag"]

LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\Z")
"""A line that ends with a literal announcement (``{` is not an atom character, so
nothing else can end that way)."""

MAX_NUMBER = 4_294_967_295  # nz-number, uniqueid (RFC 9051 9)
MAX_NUMBER64 = 9_223_372_036_854_775_807  # number64 (RFC 9051 9)
MAX_ID_PAIRS = 30  # RFC 2971 3.3


class ParseError(Exception):
    """The command is refused: ``status`` BAD (syntax) or NO, with ``code`` (a response
    code such as ``LIMIT`` or ``BADCHARSET (US-ASCII UTF-8)``, or "")."""

    def __init__(self, text: str, code: str = "", status: str = "BAD") -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status


class Incomplete(Exception):
    """The command continues in a literal that has not arrived yet."""


@dataclass(frozen=True, slots=True)
class ParseContext:
    utf8: bool = False  # UTF8=ACCEPT or IMAP4rev2 enabled: mailbox names are UTF-8
    max_depth: int = 32  # parentheses, NOT and OR nesting
    max_ranges: int = 10_000  # elements of one sequence set


def _chars(spec: str) -> frozenset[int]:
    return frozenset(spec.encode("latin-1"))


_CTL = _chars("".join(chr(c) for c in range(0x20))) | {0x7F}
_ATOM_SPECIALS = _chars('(){ %*"\\]') | _CTL
ATOM_CHARS = frozenset(range(1, 0x80)) - _ATOM_SPECIALS
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}
LIST_CHARS = ATOM_CHARS | _chars("%*]")
_SEQ_CHARS = _chars("0123456789:*,$")
_NAME_CHARS = _chars("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-=")
_B64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}\Z")

_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                         "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DATE = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z")
_DATE_TIME = re.compile(
    rb"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z")

SYSTEM_FLAGS = {f.upper(): f for f in
                ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")}


def parse_tag(line: bytes) -> str | None:
    """The tag at the start of a command line, or None if there is no valid one."""
    end = line.find(b" ")
    tag = line if end < 0 else line[:end]
    if not tag or any(c not in TAG_CHARS for c in tag):
        return None
    return tag.decode("ascii")


class _Reader:
    """A cursor over a command's segments (see the module docstring)."""

    def __init__(self, segments: list[bytes], ctx: ParseContext) -> None:
        self.segments = segments
        self.ctx = ctx
        self.index = 0
        self.line = segments[0]
        self.pos = 0
        self.depth = 0

    # --- primitives -------------------------------------------------------------------

    def peek(self) -> int:
        return self.line[self.pos] if self.pos < len(self.line) else -1

    def at(self, text: bytes) -> bool:
        return self.line.startswith(text, self.pos)

    def at_end(self) -> bool:
        return self.pos >= len(self.line) and self.index == len(self.segments) - 1

    def expect(self, text: bytes, what: str = "") -> None:
        if not self.line.startswith(text, self.pos):
            raise ParseError(f"Expected {what or text.decode()!r}")
        self.pos += len(text)

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise ParseError("Missing argument" if self.pos >= len(self.line)
                             else "Expected a single space between arguments")
        self.pos += 1

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("Unexpected characters at the end of the command")

    def take(self, allowed: frozenset[int]) -> bytes:
        line, start = self.line, self.pos
        pos = start
        while pos < len(line) and line[pos] in allowed:
            pos += 1
        self.pos = pos
        return line[start:pos]

    def word(self) -> str:
        """An atom, upper-cased (command names, options, keys)."""
        raw = self.take(ATOM_CHARS)
        if not raw:
            raise ParseError("Expected a keyword")
        return raw.decode("ascii").upper()

    def peek_word(self) -> str:
        pos = self.pos
        try:
            return self.take(ATOM_CHARS).decode("ascii").upper()
        finally:
            self.pos = pos

    def open_paren(self) -> None:
        self.expect(b"(")
        self.depth += 1
        if self.depth > self.ctx.max_depth:
            raise ParseError("Too deeply nested", "LIMIT")

    def close_paren(self) -> None:
        self.expect(b")")
        self.depth -= 1

    # --- strings ------------------------------------------------------------------------

    def literal(self, binary_ok: bool = False) -> bytes:
        m = LITERAL_AT_END.match(self.line, self.pos)
        if m is None:
            raise ParseError("Bad literal (a literal ends its line: {n}, {n+} or ~{n})")
        if m.group(1) and not binary_ok:
            raise ParseError("A literal8 (~{n}) is allowed only for message data")
        if self.index + 2 >= len(self.segments):
            raise Incomplete
        data = self.segments[self.index + 1]
        if not m.group(1) and b"\x00" in data:
            raise ParseError("NUL in a literal (RFC 9051 4.3; use a literal8)")
        self.index += 2
        self.line = self.segments[self.index]
        self.pos = 0
        return data

    def quoted(self) -> bytes:
        line = self.line
        pos = self.pos + 1
        out = bytearray()
        while True:
            if pos >= len(line):
                raise ParseError("Unterminated quoted string")
            c = line[pos]
            if c == 0x22:
                self.pos = pos + 1
                return bytes(out)
            if c == 0x5C:
                pos += 1
                if pos >= len(line) or line[pos] not in (0x22, 0x5C):
                    raise ParseError("Bad escape in a quoted string (only \\\" and \\\\)")
                c = line[pos]
            elif c in (0x0D, 0x0A, 0x00):
                raise ParseError("CR, LF or NUL in a quoted string")
            out.append(c)
            pos += 1

    def string(self) -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B or self.at(b"~{"):
            return self.literal()
        raise ParseError("Expected a string")

    def astring(self) -> bytes:
        c = self.peek()
        if c == 0x22 or c == 0x7B or self.at(b"~{"):
            return self.string()
        raw = self.take(ASTRING_CHARS)
        if not raw:
            raise ParseError("Expected an atom or a string")
        return raw

    def nstring(self) -> bytes | None:
        if self.peek() not in (0x22, 0x7B) and self.peek_word() == "NIL":
            self.pos += 3
            return None
        return self.string()

    def text(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("String is not valid UTF-8") from None

    def astring_text(self) -> str:
        return self.text(self.astring())

    # --- numbers, sets, dates --------------------------------------------------------

    def number(self, limit: int = MAX_NUMBER, nonzero: bool = False) -> int:
        raw = self.take(_chars("0123456789"))
        if not raw or len(raw) > 20:
            raise ParseError("Expected a number")
        value = int(raw)
        if value > limit or (nonzero and value == 0):
            raise ParseError("Number out of range")
        return value

    def sequence_set(self) -> SequenceSet:
        raw = self.take(_SEQ_CHARS)
        if raw == b"$":
            return SequenceSet(saved=True)
        if not raw:
            raise ParseError("Expected a sequence set")
        items = raw.split(b",")
        if len(items) > self.ctx.max_ranges:
            raise ParseError("Sequence set has too many elements", "LIMIT")
        ranges = []
        for item in items:
            lo, sep, hi = item.partition(b":")
            a = _seq_number(lo)
            ranges.append((a, _seq_number(hi) if sep else a))
        return SequenceSet(tuple(ranges))

    def date(self) -> dt.date:
        quoted = self.peek() == 0x22
        raw = self.quoted() if quoted else self.take(ATOM_CHARS)
        m = _DATE.match(raw)
        month = _MONTHS.get(m.group(2).decode().upper(), 0) if m else 0
        try:
            if m is None or not month:
                raise ValueError
            return dt.date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            raise ParseError("Bad date (expected e.g. 1-Feb-1994)") from None

    def date_time(self) -> dt.datetime:
        if self.peek() != 0x22:
            raise ParseError("Expected a quoted date-time")
        m = _DATE_TIME.match(self.quoted())
        month = _MONTHS.get(m.group(2).decode().upper(), 0) if m else 0
        try:
            if m is None or not month:
                raise ValueError
            offset = dt.timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
            if offset >= dt.timedelta(hours=24):
                raise ValueError
            tz = dt.timezone(-offset if m.group(7) == b"-" else offset)
            return dt.datetime(int(m.group(3)), month, int(m.group(1)), int(m.group(4)),
                               int(m.group(5)), int(m.group(6)), tzinfo=tz)
        except ValueError:
            raise ParseError("Bad date-time (expected e.g. \"17-Jul-1996 02:44:25 -0700\")"
                             ) from None

    # --- mail things -------------------------------------------------------------------

    def decode_name(self, raw: bytes) -> str:
        if self.ctx.utf8:
            name = self.text(raw)
            if any(ch < " " or ch == "\x7f" for ch in name):
                raise ParseError("Control character in a mailbox name")
            return name
        try:
            return mutf7.decode(raw)
        except mutf7.MUtf7Error as exc:
            raise ParseError(f"Bad mailbox name: {exc}") from None

    def mailbox(self) -> MailboxName:
        name = self.decode_name(self.astring())
        return MailboxName("INBOX" if name.upper() == "INBOX" else name)

    def list_mailbox(self) -> str:
        c = self.peek()
        if c == 0x22 or c == 0x7B or self.at(b"~{"):
            return self.decode_name(self.string())
        raw = self.take(LIST_CHARS)
        if not raw:
            raise ParseError("Expected a mailbox pattern")
        return self.decode_name(raw)

    def flag(self) -> str:
        backslash = self.peek() == 0x5C
        if backslash:
            self.pos += 1
        raw = self.take(ATOM_CHARS)
        if not raw:
            raise ParseError("Expected a flag")
        name = raw.decode("ascii")
        if not backslash:
            return name
        flag = "\\" + name
        return SYSTEM_FLAGS.get(flag.upper(), flag)

    def flag_list(self) -> tuple[str, ...]:
        self.open_paren()
        flags: list[str] = []
        while self.peek() != 0x29:
            if flags:
                self.sp()
            flags.append(self.flag())
        self.close_paren()
        return tuple(flags)

    def atom_list(self) -> list[str]:
        """``(A B C)`` of atoms, upper-cased (may be empty)."""
        self.open_paren()
        items: list[str] = []
        while self.peek() != 0x29:
            if items:
                self.sp()
            items.append(self.word())
        self.close_paren()
        return items


def _seq_number(raw: bytes) -> int:
    if raw == b"*":
        return STAR
    if not raw.isdigit() or len(raw) > 10 or raw.startswith(b"0"):
        raise ParseError("Bad sequence set")
    value = int(raw)
    if value > MAX_NUMBER:
        raise ParseError("Sequence number out of range")
    return value


# --- commands ---------------------------------------------------------------------------

_SIMPLE = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE",
                     "UNSELECT", "IDLE", "NAMESPACE"})
_UID_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE", "SORT",
                           "THREAD"})


def parse_command(segments: list[bytes], ctx: ParseContext) -> tuple[str, Command]:
    """Parse a complete command; returns ``(tag, command)``.  Raises :class:`ParseError`
    (the tag, if any was valid, is then ``parse_tag(segments[0])``)."""
    r = _Reader(segments, ctx)
    tag = parse_tag(segments[0])
    if tag is None:
        raise ParseError("Missing or invalid tag")
    r.pos = len(tag)
    r.sp()
    name = r.word()
    uid = False
    if name == "UID":
        r.sp()
        name = r.word()
        if name not in _UID_COMMANDS:
            raise ParseError(f"UID {name} is not a command")
        uid = True
    if name in _SIMPLE or (name == "EXPUNGE" and not uid):
        r.end()
        return tag, Simple(name)
    parse = _PARSERS.get(name)
    if parse is None:
        raise ParseError("Unknown command")
    r.sp()
    command = parse(r, name, uid)
    r.end()
    return tag, command


def command_name(line: bytes) -> str:
    """The command name of a first line, upper case ("" if none): for framing
    decisions before the command is complete (APPEND, AUTHENTICATE)."""
    parts = line.split(b" ", 3)
    if len(parts) < 2:
        return ""
    name = parts[1].upper()
    if name == b"UID" and len(parts) > 2:
        name = parts[2].upper()
    return name.decode("ascii", "replace")


def append_head(segments: list[bytes], ctx: ParseContext) -> Append | None:
    """If the last segment (a line) ends with APPEND's *message* literal, the command's
    head; None if that literal is an earlier argument (a mailbox name).  Raises
    :class:`ParseError` for a malformed head."""
    r = _Reader(segments, ctx)
    tag = parse_tag(segments[0])
    if tag is None:
        raise ParseError("Missing or invalid tag")
    r.pos = len(tag)
    r.sp()
    if r.word() != "APPEND":
        return None
    r.sp()
    try:
        mailbox = r.mailbox()
    except Incomplete:
        return None
    r.sp()
    flags: tuple[str, ...] = ()
    date = None
    if r.peek() == 0x28:
        flags = r.flag_list()
        r.sp()
    if r.peek() == 0x22:
        date = r.date_time()
        r.sp()
    if r.peek_word() == "UTF8":
        raise ParseError("APPEND UTF8 (RFC 6855) is not supported")
    m = LITERAL_AT_END.match(r.line, r.pos)
    if m is None or r.index != len(segments) - 1:
        raise ParseError("APPEND: expected flags, a date-time and the message literal")
    size = int(m.group(2))
    return Append(mailbox, flags, date, size, binary=bool(m.group(1)),
                  synchronizing=not m.group(3))


def _login(r: _Reader, name: str, uid: bool) -> Command:
    user = r.astring_text()
    r.sp()
    return Login(user, r.astring_text())


def _authenticate(r: _Reader, name: str, uid: bool) -> Command:
    mechanism = r.word()
    initial = None
    if not r.at_end():
        r.sp()
        raw = r.take(ATOM_CHARS | {ord("=")})
        initial = decode_base64(raw)
    return Authenticate(mechanism, initial)


def decode_base64(raw: bytes) -> bytes:
    """A SASL response (RFC 9051 6.2.2): base64, ``=`` for an empty initial response."""
    if raw == b"=":
        return b""
    if not raw or not _B64.match(raw) or len(raw) % 4:
        raise ParseError("Bad base64")
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise ParseError("Bad base64") from None


def _enable(r: _Reader, name: str, uid: bool) -> Command:
    caps = [r.word()]
    while not r.at_end():
        r.sp()
        caps.append(r.word())
    return Enable(tuple(caps))


def _id(r: _Reader, name: str, uid: bool) -> Command:
    if r.peek_word() == "NIL":
        r.pos += 3
        return Id(None)
    r.open_paren()
    pairs: list[tuple[str, str | None]] = []
    while r.peek() != 0x29:
        if pairs:
            r.sp()
        key = r.text(r.string())
        r.sp()
        value = r.nstring()
        pairs.append((key, None if value is None else r.text(value)))
        if len(pairs) > MAX_ID_PAIRS:
            raise ParseError("Too many ID fields (RFC 2971 3.3)", "LIMIT")
    r.close_paren()
    return Id(tuple(pairs))


def _select(r: _Reader, name: str, uid: bool) -> Command:
    mailbox = r.mailbox()
    condstore = False
    qresync = None
    if not r.at_end():
        r.sp()
        r.open_paren()
        first = True
        while r.peek() != 0x29:
            if not first:
                r.sp()
            first = False
            param = r.word()
            if param == "CONDSTORE":
                condstore = True
            elif param == "QRESYNC":
                r.sp()
                qresync = _qresync(r)
            else:
                raise ParseError(f"Unknown {name} parameter {param}")
        r.close_paren()
    return Select(mailbox, readonly=name == "EXAMINE", condstore=condstore, qresync=qresync,
                  name=name)


def _qresync(r: _Reader) -> Qresync:
    r.open_paren()
    uidvalidity = r.number(nonzero=True)
    r.sp()
    modseq = r.number(MAX_NUMBER64)
    known = None
    match = None
    if r.peek() == 0x20:
        r.sp()
        if r.peek() != 0x28:
            known = r.sequence_set()
            if r.peek() == 0x20:
                r.sp()
        if r.peek() == 0x28:
            r.open_paren()
            seqs = r.sequence_set()
            r.sp()
            uids = r.sequence_set()
            r.close_paren()
            match = (seqs, uids)
    r.close_paren()
    return Qresync(uidvalidity, modseq, known, match)


def _create(r: _Reader, name: str, uid: bool) -> Command:
    mailbox = r.mailbox()
    use: tuple[str, ...] = ()
    if not r.at_end():
        r.sp()
        r.open_paren()
        r.expect(b"USE ", "USE")
        use = r.flag_list()
        r.close_paren()
    return Create(mailbox, use)


def _mailbox_only(r: _Reader, name: str, uid: bool) -> Command:
    return MailboxCommand(name, r.mailbox())


def _rename(r: _Reader, name: str, uid: bool) -> Command:
    source = r.mailbox()
    r.sp()
    return Rename(source, r.mailbox())


_LIST_SELECT = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
STATUS_ITEMS = frozenset({"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
                          "RECENT", "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID"})


def _list(r: _Reader, name: str, uid: bool) -> Command:
    selection: frozenset[str] = frozenset()
    extended = False
    if name == "LIST" and r.peek() == 0x28:
        selection = frozenset(r.atom_list())
        unknown = selection - _LIST_SELECT
        if unknown:
            raise ParseError(f"Unknown LIST selection option {sorted(unknown)[0]}")
        if selection == {"RECURSIVEMATCH"}:
            raise ParseError("RECURSIVEMATCH needs another selection option (RFC 5258 3)")
        extended = True
        r.sp()
    reference = r.decode_name(r.astring())
    r.sp()
    if name == "LIST" and r.peek() == 0x28:
        r.open_paren()
        patterns = [r.list_mailbox()]
        while r.peek() == 0x20:
            r.sp()
            patterns.append(r.list_mailbox())
        r.close_paren()
        extended = True
    else:
        patterns = [r.list_mailbox()]
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if name == "LIST" and not r.at_end():
        r.sp()
        r.expect(b"RETURN ", "RETURN")
        r.open_paren()
        while r.peek() != 0x29:
            if returns:
                r.sp()
            option = r.word()
            if option not in _LIST_RETURN:
                raise ParseError(f"Unknown LIST return option {option}")
            if option == "STATUS":
                r.sp()
                status_items = _status_items(r)
            returns.add(option)
        r.close_paren()
        extended = True
    return ListMailboxes(reference, tuple(patterns), selection, frozenset(returns),
                         status_items, extended, name)


def _status_items(r: _Reader) -> tuple[str, ...]:
    items = r.atom_list()
    if not items:
        raise ParseError("STATUS needs at least one item")
    for item in items:
        if item not in STATUS_ITEMS:
            raise ParseError(f"Unknown STATUS item {item}")
    return tuple(items)


def _status(r: _Reader, name: str, uid: bool) -> Command:
    mailbox = r.mailbox()
    r.sp()
    return Status(mailbox, _status_items(r))


def _append(r: _Reader, name: str, uid: bool) -> Command:
    # Only reached if the message literal was not streamed (the core streams it).
    raise ParseError("APPEND needs the message as a literal")


# FETCH ---------------------------------------------------------------------------------

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


# SEARCH, SORT, THREAD -------------------------------------------------------------------

_KEYS_NONE = frozenset({"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD",
                        "RECENT", "SEEN", "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED",
                        "UNSEEN", "UNRECENT"})
_KEYS_STRING = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
_KEYS_DATE = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
_KEYS_NUMBER = frozenset({"LARGER", "SMALLER", "OLDER", "YOUNGER"})
_KEYS_FLAG = frozenset({"KEYWORD", "UNKEYWORD"})
_CHARSETS = frozenset({"US-ASCII", "UTF-8"})
_SEARCH_RETURN = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
_SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",
                        "DISPLAYFROM", "DISPLAYTO"})
_THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})


def _search_returns(r: _Reader) -> tuple[str, ...] | None:
    if r.peek_word() != "RETURN":
        return None
    r.take(ATOM_CHARS)
    r.sp()
    options = r.atom_list()
    for option in options:
        if option not in _SEARCH_RETURN:
            raise ParseError(f"Unknown SEARCH return option {option}")
    r.sp()
    return tuple(options) or ("ALL",)  # RFC 4731 3.1: RETURN () means RETURN (ALL)


def _charset(r: _Reader) -> str:
    charset = r.astring_text().upper()
    if charset not in _CHARSETS:
        raise ParseError("Unsupported charset", "BADCHARSET (US-ASCII UTF-8)", "NO")
    return charset


def _search_program(r: _Reader) -> SearchKey:
    keys = [_search_key(r)]
    while r.peek() == 0x20:
        r.sp()
        keys.append(_search_key(r))
    return keys[0] if len(keys) == 1 else SearchKey("AND", tuple(keys))


def _search(r: _Reader, name: str, uid: bool) -> Command:
    returns = _search_returns(r)
    charset = ""
    if r.peek_word() == "CHARSET":
        r.take(ATOM_CHARS)
        r.sp()
        charset = _charset(r)
        r.sp()
    return Search(_search_program(r), charset, returns, uid)


def _search_key(r: _Reader) -> SearchKey:
    c = r.peek()
    if c == 0x28:
        r.open_paren()
        keys = [_search_key(r)]
        while r.peek() == 0x20:
            r.sp()
            keys.append(_search_key(r))
        r.close_paren()
        return SearchKey("AND", tuple(keys))
    if c in range(0x30, 0x3A) or c == 0x2A or c == 0x24:
        return SearchKey("SEQUENCE", (r.sequence_set(),))
    key = r.word()
    if key in _KEYS_NONE:
        return SearchKey(key)
    r.sp()
    if key in _KEYS_STRING:
        return SearchKey(key, (r.astring_text(),))
    if key in _KEYS_DATE:
        return SearchKey(key, (r.date(),))
    if key in _KEYS_NUMBER:
        return SearchKey(key, (r.number(MAX_NUMBER64),))
    if key in _KEYS_FLAG:
        return SearchKey(key, (r.flag(),))
    if key == "UID":
        return SearchKey(key, (r.sequence_set(),))
    if key == "HEADER":
        field = r.astring_text()
        r.sp()
        return SearchKey(key, (field, r.astring_text()))
    if key == "MODSEQ":
        if r.peek() == 0x22:  # entry name and type (RFC 7162 3.1.5)
            entry = r.text(r.quoted())
            r.sp()
            kind = r.word()
            if kind not in ("PRIV", "SHARED", "ALL"):
                raise ParseError("MODSEQ entry type is priv, shared or all")
            r.sp()
            return SearchKey(key, (r.number(MAX_NUMBER64), entry, kind))
        return SearchKey(key, (r.number(MAX_NUMBER64),))
    if key in ("NOT", "OR"):
        r.depth += 1
        if r.depth > r.ctx.max_depth:
            raise ParseError("Search program too deeply nested", "LIMIT")
        first = _search_key(r)
        if key == "NOT":
            r.depth -= 1
            return SearchKey(key, (first,))
        r.sp()
        second = _search_key(r)
        r.depth -= 1
        return SearchKey(key, (first, second))
    raise ParseError(f"Unknown search key {key}")


def _sort(r: _Reader, name: str, uid: bool) -> Command:
    returns = _search_returns(r)
    r.open_paren()
    criteria: list[str] = []
    while r.peek() != 0x29:
        if criteria:
            r.sp()
        key = r.word()
        if key == "REVERSE":
            r.sp()
            key = "REVERSE " + r.word()
        if key.removeprefix("REVERSE ") not in _SORT_KEYS:
            raise ParseError(f"Unknown sort key {key}")
        criteria.append(key)
    r.close_paren()
    if not criteria:
        raise ParseError("SORT needs a criterion")
    r.sp()
    charset = _charset(r)
    r.sp()
    return Sort(tuple(criteria), charset, _search_program(r), uid, returns)


def _thread(r: _Reader, name: str, uid: bool) -> Command:
    algorithm = r.word()
    if algorithm not in _THREAD_ALGORITHMS:
        raise ParseError(f"Unknown threading algorithm {algorithm}")
    r.sp()
    charset = _charset(r)
    r.sp()
    return Thread(algorithm, charset, _search_program(r), uid)


def _getquota(r: _Reader, name: str, uid: bool) -> Command:
    return GetQuota(r.astring_text())


def _getquotaroot(r: _Reader, name: str, uid: bool) -> Command:
    return GetQuotaRoot(r.mailbox())


_PARSERS: dict[str, Callable[[_Reader, str, bool], Command]] = {
    "LOGIN": _login, "AUTHENTICATE": _authenticate, "ENABLE": _enable, "ID": _id,
    "SELECT": _select, "EXAMINE": _select, "CREATE": _create, "DELETE": _mailbox_only,
    "SUBSCRIBE": _mailbox_only, "UNSUBSCRIBE": _mailbox_only, "RENAME": _rename,
    "LIST": _list, "LSUB": _list, "STATUS": _status, "APPEND": _append, "FETCH": _fetch,
    "STORE": _store, "COPY": _copy_move, "MOVE": _copy_move, "EXPUNGE": _uid_expunge,
    "SEARCH": _search, "SORT": _sort, "THREAD": _thread, "GETQUOTA": _getquota,
    "GETQUOTAROOT": _getquotaroot,
}

KNOWN_COMMANDS = frozenset(_PARSERS) | _SIMPLE | {"UID", "EXPUNGE"}

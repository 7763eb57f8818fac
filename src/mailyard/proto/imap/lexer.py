"""The IMAP command lexer: the tokens every command grammar reads (RFC 9051 9).

A command arrives as *segments* (see :mod:`mailyard.proto.imap.parser`); :class:`_Reader`
is the cursor over them and reads the grammar's terminals: atoms and keywords,
quoted strings and literals (``{n}``, ``{n+}``, ``~{n}``), numbers, sequence sets,
dates, mailbox names (modified UTF-7 or UTF-8), flags and parenthesised lists, with
the nesting limit of :class:`ParseContext`.  It is separate from the command grammars
(:mod:`~mailyard.proto.imap.parser`, :mod:`~mailyard.proto.imap.parser_fetch`,
:mod:`~mailyard.proto.imap.parser_search`) because every one of them reads these tokens
the same way, and the framing in :mod:`~mailyard.proto.imap.server` needs a few of them
(the tag, the literal announcement, SASL's base64) before a command is complete.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass

from mailyard.proto.imap import mutf7
from mailyard.proto.imap.commands import STAR, MailboxName, SequenceSet

LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\Z")
"""A line that ends with a literal announcement (``{` is not an atom character, so
nothing else can end that way)."""

MAX_NUMBER = 4_294_967_295  # nz-number, uniqueid (RFC 9051 9)
MAX_NUMBER64 = 9_223_372_036_854_775_807  # number64 (RFC 9051 9)


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
            year = int(m.group(3))  # 0000 (a leap year, RFC 9051 allows it) checked as 0004
            value = dt.datetime(year or 4, month, int(m.group(1)), int(m.group(4)),
                                int(m.group(5)), int(m.group(6)), tzinfo=tz)
            # Before what datetime holds: its earliest instant (the store keeps neither).
            return value if year else dt.datetime.min.replace(tzinfo=dt.UTC)
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

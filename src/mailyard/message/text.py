"""A message's readable text: header fields as a person reads them, text parts decoded.

IMAP SEARCH, SORT and THREAD compare what a person sees, not the octets on disk:
an encoded-word subject (RFC 2047) is matched after decoding, a base64 or
quoted-printable text part after undoing its transfer encoding (RFC 2045 6) and its
charset.  Everything here is tolerant: a malformed encoded word stays as it was
written, an unknown charset is read as UTF-8 with replacement characters, broken
base64 yields what can be decoded.  Nothing raises on hostile input.

Header octets that are not ASCII are read as UTF-8 (RFC 6532) and, if that fails, as
Latin-1, so every octet still maps to some character.
"""

from __future__ import annotations

import binascii
import calendar
import datetime as dt
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_tz

from mailyard.message import structure

__all__ = [
    "Address", "SentDate", "decode_body", "decode_charset", "decode_header", "first_address",
    "first_in_list", "header_block", "header_fields", "message_ids", "normalize_space",
    "sent_date", "text_parts", "visible_text",
]

_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_MSG_ID = re.compile(rb"<([^<>\s]+)>")
_WSP_RUN = re.compile(r"[ \t\r\n]+")
# Codecs Python offers that are no charset of mail: costly or meaningless on mail text.
_NOT_CHARSETS = frozenset({"punycode", "idna", "unicode_escape", "raw_unicode_escape",
                           "undefined", "unicode-escape", "raw-unicode-escape"})
# Labels mail software writes for a wider charset than the name says (as browsers
# read them, WHATWG Encoding 4.2): decoding as the superset loses nothing.
_SUPERSETS = {"us-ascii": "utf-8", "ascii": "utf-8", "": "utf-8", "iso-8859-1": "cp1252",
              "latin1": "cp1252", "gb2312": "gb18030", "gbk": "gb18030",
              "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "iso-8859-8-i": "iso-8859-8",
              "tis-620": "cp874", "shift_jis": "cp932"}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


# --- octets to text ---------------------------------------------------------------------

def _raw_text(data: bytes) -> str:
    """Header octets as text: UTF-8 (RFC 6532), else Latin-1 (never fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_charset(data: bytes, charset: str | None) -> str:
    """``data`` in ``charset`` (a MIME charset name); unknown or unusable charsets
    and undecodable octets give replacement characters, never an error."""
    name = (charset or "us-ascii").strip().strip('"').lower()
    name = "utf-8" if name in _NOT_CHARSETS else _SUPERSETS.get(name, name)
    try:
        return data.decode(name, "replace")
    except (LookupError, UnicodeError, ValueError):
        return data.decode("utf-8", "replace")


def _base64(data: bytes) -> bytes:
    """Base64 that skips junk and copes with missing or broken padding; what follows
    a padded end is dropped, as decoders do."""
    clean = _B64_JUNK.sub(b"", data.partition(b"=")[0])
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    clean += b"=" * (-len(clean) % 4)
    try:
        return binascii.a2b_base64(clean)
    except binascii.Error:
        return b""


def decode_body(data: bytes, transfer_encoding: bytes | None) -> bytes:
    """A body with its Content-Transfer-Encoding (RFC 2045 6) undone; identity for
    7bit/8bit/binary and encodings not known."""
    cte = (transfer_encoding or b"7bit").strip().lower()
    if cte == b"base64":
        return _base64(data)
    if cte == b"quoted-printable":
        return binascii.a2b_qp(data)
    return data


def _encoded_word(charset: bytes, kind: bytes, text: bytes) -> str:
    name = charset.decode("ascii", "replace").partition("*")[0]  # RFC 2231 5: charset*lang
    if kind in (b"B", b"b"):
        raw = _base64(text)
    else:
        raw = _QP_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), text.replace(b"_", b" "))
    return decode_charset(raw, name)


def decode_header(value: bytes) -> str:
    """A header field body as a person reads it: RFC 2047 encoded words decoded (the
    white space between two adjacent ones dropped, RFC 2047 6.2), folding undone."""
    value = _FOLD.sub(b"", value)
    out: list[str] = []
    pos = 0
    previous_encoded = False
    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos:m.start()]
        if gap and not (previous_encoded and not gap.strip(b" \t")):
            out.append(_raw_text(gap))
        out.append(_encoded_word(m.group(1), m.group(2), m.group(3)))
        previous_encoded = True
        pos = m.end()
    out.append(_raw_text(value[pos:]))
    return "".join(out)


def normalize_space(text: str) -> str:
    """Runs of white space (tabs, continuations) as one space, ends trimmed."""
    return _WSP_RUN.sub(" ", text).strip(" ")


# --- the header section -----------------------------------------------------------------

def header_block(message: bytes) -> bytes:
    """The header section of ``message`` (any line ends), without the blank line."""
    if message.startswith((b"\r\n", b"\n")):
        return b""
    crlf = message.find(b"\r\n\r\n")
    lf = message.find(b"\n\n")
    ends = [i for i in (crlf, lf) if i >= 0]
    return message[:min(ends)] if ends else message


def header_fields(block: bytes) -> list[tuple[str, bytes]]:
    """The fields of a header section in order: (lower-case name, unfolded raw value).
    Lines that are not fields (no colon, a bad name) are skipped."""
    out: list[tuple[str, bytes]] = []
    for line in _FOLD.sub(b"", block).replace(b"\r\n", b"\n").split(b"\n"):
        name, colon, value = line.partition(b":")
        name = name.rstrip(b" \t")
        if colon and _NAME.fullmatch(name):
            out.append((name.decode("ascii").lower(), value.strip(b" \t\r")))
    return out


@dataclass(frozen=True, slots=True)
class SentDate:
    """A ``Date:`` field: the calendar day as written (its own zone, what SEARCH
    SENTON compares, RFC 9051 6.4.4) and the instant (what SORT DATE compares in UTC,
    RFC 5256 2.2)."""

    day: dt.date
    timestamp: float


def sent_date(value: bytes | None) -> SentDate | None:
    """The parsed ``Date:`` field, None when absent or not understood."""
    if value is None:
        return None
    try:
        parts = parsedate_tz(_raw_text(value).strip())
    except (ValueError, IndexError, TypeError, OverflowError):
        return None
    if parts is None:
        return None
    try:
        day = dt.date(parts[0], parts[1], parts[2])
        stamp = calendar.timegm((parts[0], parts[1], parts[2], parts[3], parts[4],
                                 parts[5], 0, 1, 0)) - (parts[9] or 0)
    except (ValueError, OverflowError):
        return None
    return SentDate(day, float(stamp))


@dataclass(frozen=True, slots=True)
class Address:
    """One address of an address field: the display name (decoded) and the parts of
    the addr-spec as written."""

    name: str
    mailbox: str
    host: str

    @property
    def spec(self) -> str:
        return f"{self.mailbox}@{self.host}" if self.host else self.mailbox


def first_address(value: bytes | None) -> Address | None:
    """The first address of an address-list field (group names skipped), or None."""
    return first_in_list(structure.addresses(value))


def first_in_list(parsed: structure.Structure) -> Address | None:
    """The first address of an address list in ENVELOPE form (RFC 9051 7.5.2, as
    :func:`structure.addresses` gives it and the index caches it), or None."""
    if not isinstance(parsed, list):
        return None
    for item in parsed:
        if not isinstance(item, list) or len(item) != 4:
            continue
        name, _adl, mailbox, host = item
        if host is None:  # a group's start or end marker
            continue
        host_text = _raw_text(host) if isinstance(host, bytes) else ""
        if host_text == structure.MISSING_HOST.decode():
            host_text = ""
        return Address(
            normalize_space(decode_header(name)) if isinstance(name, bytes) else "",
            _raw_text(mailbox) if isinstance(mailbox, bytes) else "",
            host_text,
        )
    return None


def message_ids(value: bytes | None) -> list[str]:
    """The ``<id>`` message identifiers in a Message-ID, References or In-Reply-To
    field, in order, without the angle brackets (compared case-sensitively)."""
    if not value:
        return []
    return [_raw_text(m.group(1)) for m in _MSG_ID.finditer(value)]


# --- the body ---------------------------------------------------------------------------

def visible_text(markup: str) -> str:
    """What a reader sees of an HTML part: tags, comments, styles and scripts
    removed (each leaves a space), character references resolved.  One forward scan
    (``find`` from a growing position), so unclosed constructs cost no rescans."""
    lower = markup.translate(_ASCII_LOWER)  # same length, for case-insensitive finds
    out: list[str] = []
    pos, n = 0, len(markup)
    while pos < n:
        lt = lower.find("<", pos)
        if lt < 0:
            out.append(markup[pos:])
            break
        out.append(markup[pos:lt])
        out.append(" ")
        if lower.startswith("<!--", lt):
            end = lower.find("-->", lt + 4)
            pos = n if end < 0 else end + 3
            continue
        gt = lower.find(">", lt + 1)
        if gt < 0:
            break
        pos = gt + 1
        for element in ("style", "script"):
            if lower.startswith(element, lt + 1) and not lower[lt + 1 + len(element)].isalnum():
                close = lower.find("</" + element, pos)
                end = lower.find(">", close) if close >= 0 else -1
                pos = n if end < 0 else end + 1
                break
    return html.unescape("".join(out))


def text_parts(message: bytes) -> Iterator[tuple[structure.Entity, str]]:
    """Every entity of ``message`` (CRLF line ends) with its decoded text: for text/*
    leaves the body in its charset (of HTML the visible text), for others "".  The
    tree is the one :func:`structure.parse` builds, so nesting and part count are
    capped there."""
    root = structure.parse(message)
    stack = [root]
    while stack:
        ent = stack.pop()
        if ent.children:
            stack.extend(reversed(ent.children))
            yield ent, ""
            continue
        if ent.ctype != "text" or ent.opaque:
            yield ent, ""
            continue
        body = decode_body(message[ent.body_start:ent.end],
                           ent.header(b"Content-Transfer-Encoding"))
        charset = dict(ent.params).get("CHARSET")
        decoded = decode_charset(body, charset.decode("ascii", "replace") if charset else None)
        yield ent, visible_text(decoded) if ent.subtype == "html" else decoded

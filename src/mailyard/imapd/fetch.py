"""FETCH data items (RFC 9051 6.4.5 and 7.5.2, RFC 3501 6.4.5, RFC 3516 BINARY,
RFC 7162 MODSEQ) as values for :func:`mailyard.proto.imap.responses.fetch`.

Pure rendering: the adapter hands in the index entry, the cached ENVELOPE and
BODYSTRUCTURE (when :func:`needs_structure`) and the raw message file (only when
:func:`needs_message`); it sets ``\\Seen`` itself when :func:`sets_seen`.

Why it looks the way it does:

* ``FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE)`` is sent on every mailbox open, so
  those items come from :class:`~mailyard.store.index.MessageInfo` alone: a FLAGS list
  is rendered once per distinct flag set and reused, INTERNALDATE is one ``%`` format,
  and the per-command work (response labels, which renderer serves which item) is
  planned once per attribute list, not once per message.
* Sections are located on the entity tree of :mod:`mailyard.message.structure`, the
  byte offsets BODYSTRUCTURE's sizes were counted on, so ``BODY[2]`` has exactly the
  size the client was told.  The message is served with CRLF line ends
  (:func:`~mailyard.message.structure.to_crlf`), as RFC822.SIZE counts it.  Sections
  of the top-level header and text (``BODY[HEADER]``, ``HEADER.FIELDS``, ``TEXT``,
  ``RFC822.HEADER``) only look for the blank line; the MIME tree is not taken apart,
  and for the header alone the body is not even converted to CRLF.
* Part numbers follow RFC 9051 6.4.5: a message that is not multipart has one part,
  1, its body; the parts of a message/rfc822 part are those of the message inside.
  The walk is a loop over the numbers given, on a tree whose depth and width
  :mod:`~mailyard.message.structure` caps.
* A section that does not exist (``BODY[9]``, ``BODY[1.HEADER]`` of a text part) is
  the empty string "", as UW imapd and Dovecot answer (RFC 9051 allows NIL as well;
  "" does not trip clients that do not expect NIL).  A partial that starts beyond
  the end is "" too (RFC 9051 6.4.5).
* Content goes out as a literal.  A NUL in BODY data is sent as 0x80 (a literal may
  not hold NUL, RFC 9051 4.3; the size does not change); BINARY data with a NUL goes
  as a literal8 ``~{n}`` (RFC 3516 4.2).  BINARY decodes base64 and quoted-printable;
  any other encoding but 7bit/8bit/binary is a :class:`FetchError` with the code
  UNKNOWN-CTE (RFC 3516 4.3).  ``BINARY[]`` of a single-part message is its header
  followed by the decoded body.
* INTERNALDATE is given in UTC (``+0000``): the index keeps the instant, not the zone.
"""

from __future__ import annotations

import binascii
import functools
import re
import time
from collections.abc import Callable, Sequence

from mailyard.message import structure
from mailyard.message.structure import Entity, Structure
from mailyard.proto.imap.commands import FetchAttribute, Section
from mailyard.proto.imap.responses import Atom, Encoded, Literal, Value
from mailyard.proto.imap.structwire import imap_body, imap_envelope
from mailyard.store.index import MessageInfo

__all__ = [
    "FetchError", "decode", "fetch_items", "header_fields", "header_only", "imap_body",
    "imap_envelope", "index_only", "internal_date", "label", "needs_message", "needs_structure",
    "render_from_index", "sets_seen", "wire_items",
]


class FetchError(ValueError):
    """A data item this message cannot be served with.  ``code`` is the response code
    of the tagged NO: ``UNKNOWN-CTE`` (RFC 3516 4.3) or ""."""

    def __init__(self, text: str, code: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.code = code


# --- what a FETCH needs ----------------------------------------------------------------

_MESSAGE_ITEMS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT", "BINARY",
                            "BINARY.SIZE"})
_SEEN_ITEMS = frozenset({"RFC822", "RFC822.TEXT"})


def needs_message(attributes: Sequence[FetchAttribute]) -> bool:
    """Whether the message file must be read (a section, RFC822*, BINARY*)."""
    return any(a.section is not None or a.name in _MESSAGE_ITEMS for a in attributes)


def header_only(attributes: Sequence[FetchAttribute]) -> bool:
    """Whether the message's top-level header is all that is needed (``BODY.PEEK[HEADER
    .FIELDS (...)]``, ``RFC822.HEADER``: what clients list folders with), so the file
    may be read only up to its blank line."""
    return all(a.name == "RFC822.HEADER" or (
        a.section is not None and a.name == "BODY" and not a.section.part
        and a.section.text.startswith("HEADER")) or (
        a.section is None and a.name not in _MESSAGE_ITEMS
        and a.name not in ("ENVELOPE", "BODYSTRUCTURE", "BODY")) for a in attributes)


def needs_structure(attributes: Sequence[FetchAttribute]) -> bool:
    """Whether the cached ENVELOPE/BODYSTRUCTURE are used (ENVELOPE, BODY, BODYSTRUCTURE)."""
    return any(a.name in ("ENVELOPE", "BODYSTRUCTURE")
               or (a.name == "BODY" and a.section is None) for a in attributes)


def sets_seen(attributes: Sequence[FetchAttribute]) -> bool:
    """Whether fetching sets ``\\Seen`` (RFC 9051 6.4.5: BODY[..] and BINARY[..]
    without PEEK, RFC822, RFC822.TEXT).  The adapter sets it before rendering, and
    adds FLAGS to the response when it changed."""
    return any(a.name in _SEEN_ITEMS
               or (a.section is not None and not a.peek and a.name in ("BODY", "BINARY"))
               for a in attributes)


# --- the message as far as it is needed --------------------------------------------------

class _Message:
    """One message while its items are rendered: CRLF content and entity tree are
    made on first use and shared by every item of the same FETCH response."""

    __slots__ = ("info", "raw", "env", "bs", "wire", "_data", "_root")

    def __init__(self, info: MessageInfo, raw: bytes | None, env: Structure,
                 bs: Structure, wire: dict[str, bytes]) -> None:
        self.info = info
        self.raw = raw
        self.env = env
        self.bs = bs
        self.wire = wire
        self._data: bytes | None = None
        self._root: Entity | None = None

    def data(self) -> bytes:
        if self._data is None:
            if self.raw is None:
                raise FetchError("The message content is not available")
            self._data = structure.to_crlf(self.raw)
        return self._data

    def head(self) -> bytes:
        """The top-level header, blank line included, with CRLF line ends; the body of
        a large message is not converted for it."""
        if self._data is not None:
            data = self._data
            return data[:_body_start(data, 0, len(data))]
        if self.raw is None:
            raise FetchError("The message content is not available")
        return structure.to_crlf(self.raw[:_raw_header_end(self.raw)])

    def root(self) -> Entity:
        if self._root is None:
            self._root = structure.parse(self.data())
        return self._root

    def envelope(self) -> Structure:
        if self.env is None:
            self.env = structure.envelope(self.root())
        return self.env

    def bodystructure(self) -> Structure:
        if self.bs is None:
            self.bs = structure.bodystructure(self.root(), self.data())
        return self.bs


Renderer = Callable[[_Message, FetchAttribute], Value]


# --- FLAGS, INTERNALDATE and the other index items ----------------------------------------

_SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
_FLAG = re.compile(r"\\?[^\x00-\x20\x7f(){%*\"\\\]]+\Z")
_FLAG_CACHE_SIZE = 4096
_flag_lists: dict[frozenset[str], Atom] = {}


def _render_flags(flags: frozenset[str]) -> Atom:
    """``(\\Seen $Label1)``: system flags in a fixed order, then keywords sorted; a
    name that is not a flag atom (a damaged index) is left out."""
    system = [f for f in _SYSTEM_FLAGS if f in flags]
    others = sorted(f for f in flags if f not in _SYSTEM_FLAGS
                    and f.isascii() and _FLAG.match(f))
    return Atom("(" + " ".join(system + others) + ")")


def _flags(m: _Message, att: FetchAttribute) -> Value:
    flags = m.info.flags
    got = _flag_lists.get(flags)
    if got is None:
        got = _render_flags(flags)
        if len(_flag_lists) >= _FLAG_CACHE_SIZE:
            _flag_lists.clear()
        _flag_lists[flags] = got
    return got


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")
_LAST_SECOND = 253402300799  # 31-Dec-9999 23:59:59 UTC: four digits of year
_DAY_CACHE_SIZE = 4096
_day_prefixes: dict[int, str] = {}


def _day_prefix(day: int) -> str:
    """``"17-Jul-1996 `` for day ``day`` after the epoch (cached: a mailbox holds
    many messages of the same day)."""
    got = _day_prefixes.get(day)
    if got is None:
        t = time.gmtime(day * 86400)
        got = f'"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} '
        if len(_day_prefixes) >= _DAY_CACHE_SIZE:
            _day_prefixes.clear()
        _day_prefixes[day] = got
    return got


def internal_date(when: float) -> Atom:
    """RFC 9051 9 ``date-time`` in UTC, quoted: ``"17-Jul-1996 09:44:25 +0000"``."""
    day, second = divmod(min(max(int(when), 0), _LAST_SECOND), 86400)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return Atom(f'{_day_prefix(day)}{hour:02d}:{minute:02d}:{second:02d} +0000"')


def _internaldate(m: _Message, att: FetchAttribute) -> Value:
    return internal_date(m.info.internal_date)


def _uid(m: _Message, att: FetchAttribute) -> Value:
    return m.info.uid


def _size(m: _Message, att: FetchAttribute) -> Value:
    return m.info.size


def _modseq(m: _Message, att: FetchAttribute) -> Value:
    return [m.info.modseq]  # RFC 7162 3.1.4.1: MODSEQ (n)


def _nil(m: _Message, att: FetchAttribute) -> Value:
    return None


# --- ENVELOPE, BODY, BODYSTRUCTURE ----------------------------------------------------------

def _envelope(m: _Message, att: FetchAttribute) -> Value:
    wire = m.wire.get("ENVELOPE")
    return Encoded(wire) if wire is not None else imap_envelope(m.envelope())


def _bodystructure(m: _Message, att: FetchAttribute) -> Value:
    wire = m.wire.get("BODYSTRUCTURE")
    return Encoded(wire) if wire is not None else imap_body(m.bodystructure(), extended=True)


def _body(m: _Message, att: FetchAttribute) -> Value:
    wire = m.wire.get("BODY")
    return Encoded(wire) if wire is not None else imap_body(m.bodystructure(), extended=False)


# --- sections ---------------------------------------------------------------------------

def _body_start(data: bytes, start: int, end: int) -> int:
    """Where the body of the entity at ``start`` begins (after the blank line), as
    :func:`structure.parse` counts it; ``end`` when there is no blank line."""
    if data.startswith(b"\r\n", start):
        return start + 2
    i = data.find(b"\r\n\r\n", start, end)
    return end if i < 0 else i + 4


def _raw_header_end(raw: bytes) -> int:
    """Where the body begins in a message with any line ends: after the first empty
    line (the same place :func:`_body_start` finds once CRLF is applied)."""
    if raw.startswith(b"\n"):
        return 1
    if raw.startswith(b"\r\n"):
        return 2
    end = len(raw)
    lf = raw.find(b"\n\n")
    if lf >= 0:
        end = lf + 2
    crlf = raw.find(b"\n\r\n", 0, end)
    return crlf + 3 if crlf >= 0 else end


def _find(root: Entity, numbers: Sequence[int]) -> Entity | None:
    """The entity a section-part names (RFC 9051 6.4.5), or None."""
    ent = root
    in_message = True  # ``ent`` is a message: part 1 of a non-multipart one is its body
    last = len(numbers) - 1
    for i, n in enumerate(numbers):
        if ent.ctype == "multipart" and ent.children:
            if n > len(ent.children):
                return None
            ent = ent.children[n - 1]
        elif not (in_message and n == 1):
            return None
        in_message = False
        if i < last and ent.children and ent.ctype != "multipart":
            ent = ent.children[0]  # the parts of a message/rfc822 part: its message's
            in_message = True
    return ent


@functools.lru_cache(maxsize=256)
def _field_names(names: tuple[str, ...]) -> frozenset[bytes]:
    return frozenset(n.encode("utf-8", "surrogateescape").upper() for n in names)


def header_fields(header: bytes, names: tuple[str, ...], exclude: bool) -> bytes:
    """The fields of ``header`` named in ``names`` (or, ``exclude``, all others), as
    they are (folded lines and all) in message order, then the blank line
    (RFC 9051 6.4.5 HEADER.FIELDS / HEADER.FIELDS.NOT).  Names match without regard
    to case; a line that is not a field is left out."""
    wanted = _field_names(names)
    out = bytearray()
    keep = False
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[0] in (0x20, 0x09):  # a folded continuation belongs to its field
            if keep:
                out += line + b"\r\n"
            continue
        name, colon, _ = line.partition(b":")
        name = name.rstrip(b" \t")
        field = bool(colon and name) and b" " not in name and b"\t" not in name
        keep = field and ((name.upper() in wanted) != exclude)
        if keep:
            out += line + b"\r\n"
    out += b"\r\n"
    return bytes(out)


def _message_text(data: bytes, start: int, body_start: int, end: int,
                  section: Section) -> bytes:
    """HEADER, HEADER.FIELDS(.NOT), TEXT or all of the message at ``start``."""
    text = section.text
    if not text:
        return data[start:end]
    if text == "TEXT":
        return data[body_start:end]
    header = data[start:body_start]
    if text == "HEADER":
        return header
    return header_fields(header, section.fields, text == "HEADER.FIELDS.NOT")


def _section_content(m: _Message, section: Section) -> bytes:
    if not section.part and section.text.startswith("HEADER"):
        head = m.head()
        if section.text == "HEADER":
            return head
        return header_fields(head, section.fields, section.text == "HEADER.FIELDS.NOT")
    data = m.data()
    if not section.part:
        end = len(data)
        return _message_text(data, 0, _body_start(data, 0, end), end, section)
    ent = _find(m.root(), section.part)
    if ent is None:
        return b""
    if not section.text:
        return data[ent.body_start:ent.end]
    if section.text == "MIME":
        return data[ent.start:ent.body_start]
    if not ent.children or ent.ctype == "multipart":
        return b""  # HEADER and TEXT are those of a message/rfc822 part only
    inner = ent.children[0]
    return _message_text(data, inner.start, inner.body_start, inner.end, section)


def _partial(content: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return content
    offset, length = partial
    return content[offset:offset + length]


def _literal(content: bytes, binary: bool = False) -> Value:
    if not content:
        return b""
    if b"\x00" in content:
        if binary:
            return Literal(content, binary=True)
        content = content.replace(b"\x00", b"\x80")
    return Literal(content)


def _body_section(m: _Message, att: FetchAttribute) -> Value:
    assert att.section is not None
    return _literal(_partial(_section_content(m, att.section), att.partial))


def _rfc822(m: _Message, att: FetchAttribute) -> Value:
    return _literal(m.data())


def _rfc822_header(m: _Message, att: FetchAttribute) -> Value:
    return _literal(m.head())


def _rfc822_text(m: _Message, att: FetchAttribute) -> Value:
    data = m.data()
    return _literal(data[_body_start(data, 0, len(data)):])


# --- BINARY (RFC 3516) -----------------------------------------------------------------

_IDENTITY = frozenset({b"7bit", b"8bit", b"binary"})
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_JUNK = bytes(c for c in range(256) if c not in _B64_ALPHABET)


def _base64(body: bytes) -> bytes:
    """Lenient base64: line ends and junk are skipped, missing padding supplied, a
    dangling sixth bit group dropped (what mail readers do with damaged parts)."""
    clean = body.translate(None, _B64_JUNK)
    rest = len(clean) % 4
    if rest == 1:
        clean = clean[:-1]
    elif rest:
        clean += b"=" * (4 - rest)
    return binascii.a2b_base64(clean)


def decode(body: bytes, encoding: bytes) -> bytes:
    """``body`` without its Content-Transfer-Encoding (lower case ``encoding``)."""
    if encoding in _IDENTITY:
        return body
    if encoding == b"base64":
        return _base64(body)
    if encoding == b"quoted-printable":
        return binascii.a2b_qp(body)
    shown = encoding.decode("ascii", "replace")[:60]
    raise FetchError(f"Cannot decode Content-Transfer-Encoding {shown}", "UNKNOWN-CTE")


def _encoding(ent: Entity) -> bytes:
    if ent.opaque:  # BODYSTRUCTURE calls a capped part 7BIT: serve it as it is
        return b"7bit"
    return (ent.header(b"Content-Transfer-Encoding") or b"7bit").strip().lower()


def _binary_content(m: _Message, section: Section) -> bytes:
    """The decoded content of a BINARY section (part numbers only, RFC 3516 4.2)."""
    data = m.data()
    if not section.part:
        root = m.root()
        if root.children or root.ctype == "multipart":
            return data
        body = decode(data[root.body_start:root.end], _encoding(root))
        return data[:root.body_start] + body
    ent = _find(m.root(), section.part)
    if ent is None:
        return b""
    body = data[ent.body_start:ent.end]
    if ent.children or ent.ctype == "multipart":
        return body  # multipart and message parts are 7bit/8bit/binary (RFC 2045 6.4)
    return decode(body, _encoding(ent))


def _binary(m: _Message, att: FetchAttribute) -> Value:
    assert att.section is not None
    return _literal(_partial(_binary_content(m, att.section), att.partial), binary=True)


def _binary_size(m: _Message, att: FetchAttribute) -> Value:
    assert att.section is not None
    return len(_binary_content(m, att.section))


# --- planning and rendering -------------------------------------------------------------

_SIMPLE: dict[str, Renderer] = {
    "FLAGS": _flags, "UID": _uid, "INTERNALDATE": _internaldate, "RFC822.SIZE": _size,
    "MODSEQ": _modseq, "ENVELOPE": _envelope, "BODYSTRUCTURE": _bodystructure,
    "BODY": _body, "RFC822": _rfc822, "RFC822.HEADER": _rfc822_header,
    "RFC822.TEXT": _rfc822_text,
    "THREADID": _nil,  # RFC 8474 5.2: NIL when the server keeps no thread ids
    "SAVEDATE": _nil,  # RFC 8514 4.2: NIL when the save date is not known
}
_SECTIONED: dict[str, Renderer] = {
    "BODY": _body_section, "BINARY": _binary, "BINARY.SIZE": _binary_size,
}
_ASTRING_SPECIALS = frozenset('(){ %*"\\]') | frozenset(chr(c) for c in range(0x20))


def _astring(name: str) -> str:
    if name and name.isascii() and not any(c in _ASTRING_SPECIALS for c in name) \
            and "\x7f" not in name:
        return name
    text = name.encode("ascii", "replace").decode("ascii")
    text = "".join("?" if c < " " or c == "\x7f" else c for c in text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def label(att: FetchAttribute) -> str:
    """The item's name in the response (RFC 9051 7.5.2): ``BODY[HEADER]<0>``, PEEK
    dropped, HEADER.FIELDS names as astrings."""
    sec = att.section
    if sec is None or not sec.fields:
        return att.label()
    spec = ".".join(str(n) for n in sec.part)
    spec = f"{spec}.{sec.text}" if spec else sec.text
    spec += " (" + " ".join(_astring(f) for f in sec.fields) + ")"
    out = f"{att.name}[{spec}]"
    if att.partial is not None:
        out += f"<{att.partial[0]}>"
    return out


_Plan = tuple[tuple[tuple[str, Renderer, FetchAttribute], ...], bool]
_last_plan: tuple[Sequence[FetchAttribute], _Plan] | None = None


def _make_plan(attributes: Sequence[FetchAttribute]) -> _Plan:
    steps: list[tuple[str, Renderer, FetchAttribute]] = []
    for att in attributes:
        table = _SIMPLE if att.section is None else _SECTIONED
        render = table.get(att.name)
        if render is None:
            raise FetchError(f"{att.name} is not supported")
        steps.append((label(att), render, att))
    return tuple(steps), any(a.name == "MODSEQ" for a in attributes)


def _plan(attributes: Sequence[FetchAttribute]) -> _Plan:
    """The plan for ``attributes``; the last one is kept, as one FETCH renders many
    messages with the same attribute tuple (a list could change between calls, so
    it is planned every time)."""
    global _last_plan
    last = _last_plan
    if last is not None and last[0] is attributes:
        return last[1]
    plan = _make_plan(attributes)
    if isinstance(attributes, tuple):
        _last_plan = (attributes, plan)
    return plan


_NO_WIRE: dict[str, bytes] = {}


def fetch_items(number: int, info: MessageInfo, attributes: Sequence[FetchAttribute], *,
                message: bytes | None, envelope: Structure | None,
                bodystructure: Structure | None, modseq: bool,
                wire: dict[str, bytes] | None = None) -> list[tuple[str, Value]]:
    """The data items of message ``number`` for ``* number FETCH (...)``, in the order
    asked.  ``message`` is the raw file (any line ends), needed when
    :func:`needs_message`; ``envelope``/``bodystructure`` the cached structures (else
    computed from ``message``); ``wire`` the cached wire form of ENVELOPE, BODY or
    BODYSTRUCTURE by item name, used as it is (see :mod:`~mailyard.proto.imap.structwire`:
    the adapter leaves it out for a UTF8=ACCEPT session when it would differ).
    ``modseq``: add MODSEQ although not asked (the
    adapter decides when RFC 7162 3.1.4.1 wants it: CONDSTORE enabled and
    CHANGEDSINCE, or a STORE's untagged FETCH).  Raises :class:`FetchError`."""
    steps, has_modseq = _plan(attributes)
    m = _Message(info, message, envelope, bodystructure, wire or _NO_WIRE)
    out: list[tuple[str, Value]] = [(name, render(m, att)) for name, render, att in steps]
    if modseq and not has_modseq:
        out.append(("MODSEQ", [info.modseq]))
    return out


# --- FETCH from the index alone, straight to octets ----------------------------------------
#
# ``FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE)`` on every mailbox open, ``FETCH 1:*
# ENVELOPE`` / ``BODYSTRUCTURE`` when a client first sees a folder: every value is in
# the index, ENVELOPE/BODY/BODYSTRUCTURE already in wire form.  Such a FETCH is
# rendered here without the per-item values of :func:`fetch_items`: per message one
# format of stored or cached octets.  The output is the same (tests compare them).

_INDEX_ITEMS = frozenset({"FLAGS", "UID", "RFC822.SIZE", "INTERNALDATE", "MODSEQ",
                          "ENVELOPE", "BODYSTRUCTURE", "BODY"})
_WIRE_NAMES = ("ENVELOPE", "BODYSTRUCTURE", "BODY")
_flag_octets: dict[frozenset[str], bytes] = {}


def index_only(attributes: Sequence[FetchAttribute]) -> bool:
    """Whether every item comes from the index (see :func:`render_from_index`)."""
    return all(a.section is None and a.name in _INDEX_ITEMS for a in attributes)


def wire_items(attributes: Sequence[FetchAttribute]) -> list[str]:
    """The ENVELOPE/BODY/BODYSTRUCTURE items asked, each once, in order."""
    return list(dict.fromkeys(a.name for a in attributes
                              if a.section is None and a.name in _WIRE_NAMES))


def _flag_bytes(flags: frozenset[str]) -> bytes:
    got = _flag_octets.get(flags)
    if got is None:
        got = _render_flags(flags).encode("ascii")
        if len(_flag_octets) >= _FLAG_CACHE_SIZE:
            _flag_octets.clear()
        _flag_octets[flags] = got
    return got


_DATE_CACHE_SIZE = 1 << 16
_date_octets: dict[int, bytes] = {}


def _date_bytes(when: float) -> bytes:
    """INTERNALDATE as octets, kept per second (a folder is opened again and again)."""
    second = int(when)
    got = _date_octets.get(second)
    if got is None:
        got = internal_date(second).encode("ascii")
        if len(_date_octets) >= _DATE_CACHE_SIZE:
            _date_octets.clear()
        _date_octets[second] = got
    return got


_FastStep = tuple[bytes, str, int]  # (b"LABEL ", item name, index into the wire octets)
_last_fast: tuple[Sequence[FetchAttribute], tuple[_FastStep, ...]] | None = None


def _fast_plan(attributes: Sequence[FetchAttribute], modseq: bool) -> tuple[_FastStep, ...]:
    global _last_fast
    last = _last_fast
    if last is not None and last[0] is attributes and modseq is False:
        return last[1]
    wires = wire_items(attributes)
    steps = [(a.name.encode("ascii") + b" ", a.name,
              wires.index(a.name) if a.name in wires else -1) for a in attributes]
    if modseq and not any(a.name == "MODSEQ" for a in attributes):
        steps.append((b"MODSEQ ", "MODSEQ", -1))
    plan = tuple(steps)
    if isinstance(attributes, tuple) and not modseq:
        _last_fast = (attributes, plan)
    return plan


def render_from_index(number: int, info: MessageInfo, attributes: Sequence[FetchAttribute],
                      wire: Sequence[bytes], modseq: bool) -> bytes:
    """``* number FETCH (...)`` for :func:`index_only` attributes; ``wire`` the cached
    octets of :func:`wire_items` in that order (for this session: see
    :func:`fetch_items`).  ``modseq`` as for :func:`fetch_items`."""
    out = []
    for head, name, at in _fast_plan(attributes, modseq):
        if at >= 0:
            out.append(head + wire[at])
        elif name == "FLAGS":
            out.append(head + _flag_bytes(info.flags))
        elif name == "UID":
            out.append(b"%s%d" % (head, info.uid))
        elif name == "RFC822.SIZE":
            out.append(b"%s%d" % (head, info.size))
        elif name == "INTERNALDATE":
            out.append(head + _date_bytes(info.internal_date))
        else:  # MODSEQ
            out.append(b"%s(%d)" % (head, info.modseq))
    return b"* %d FETCH (%s)\r\n" % (number, b" ".join(out))

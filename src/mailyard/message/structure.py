"""ENVELOPE and BODYSTRUCTURE of a message (RFC 9051 7.5.2), computed once and cached.

The result is plain nested Python data the IMAP response encoder renders as it is
(``proto/imap/responses.encode_value``): ``None`` is NIL, ``bytes`` a string, ``int`` a
number, a ``list`` a parenthesised list.  Header text is kept as the raw octets of
the message, encoded words and all (RFC 9051 7.5.2: the envelope carries the header
as it is; clients decode RFC 2047 themselves); 8-bit octets stay 8-bit and go out
as literals.

How a message is taken apart:

* The message is read with CRLF line ends (what IMAP serves and what sizes count);
  LF-only input is converted first, so part sizes and line counts match
  ``BODY[n]`` of the same message served with CRLF.
* Entities are split on byte offsets here, not rebuilt from a parsed object tree: a
  part's size is the exact number of octets a client fetches as ``BODY[n]``, and
  malformed input (a missing close delimiter, junk header lines) cannot shift it.
* Header fields are split from the raw header block (unfolded, lines without a
  colon skipped); the ``Content-Type`` and ``Content-Disposition`` parameters are
  parsed by the standard library's ``email`` package (policy ``compat32``, which
  never raises on malformed input and keeps unknown octets).  An RFC 2231 parameter
  is handed on in its RFC 2231 form (``name*`` = ``charset'lang'%XX``).
* MIME bombs are capped: past :data:`MAX_DEPTH` levels of multipart or
  message/rfc822 nesting an entity is described as one opaque
  ``APPLICATION/OCTET-STREAM`` part, and once :data:`MAX_PARTS` parts are described
  the remaining siblings of a multipart become one opaque part spanning them.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import TypeAlias, cast

__all__ = [
    "MAX_DEPTH", "MAX_PARTS", "Entity", "Structure", "addresses", "bodystructure", "compute",
    "dumps", "envelope", "loads", "parse", "to_crlf",
]

MAX_DEPTH = 20  # levels of multipart / message nesting described
MAX_PARTS = 500  # parts described in one message
MISSING_HOST = b"MISSING_DOMAIN"  # what Dovecot reports for an address without a host

#: IMAP data as the response encoder takes it.
Structure: TypeAlias = None | int | bytes | list["Structure"]

_BLANK = re.compile(rb"\r\n\r\n")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_TOKEN = re.compile(rb"[\x21-\x7e]+")


def to_crlf(data: bytes) -> bytes:
    """``data`` with every line ending in CRLF (a lone CR is left as data)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# --- entities -------------------------------------------------------------------------

@dataclass
class Entity:
    """One MIME entity of the message: offsets into the CRLF message, its header
    fields (raw, unfolded) and its children (the parts of a multipart, or the one
    message inside a message/rfc822).  ``opaque`` marks a stand-in for what the caps
    cut off."""

    start: int
    body_start: int
    end: int
    fields: list[tuple[bytes, bytes]]
    ctype: str = "text"
    subtype: str = "plain"
    params: list[tuple[str, bytes]] = field(default_factory=list)
    children: list[Entity] = field(default_factory=list)
    opaque: bool = False

    def header(self, name: bytes) -> bytes | None:
        """The first field called ``name`` (case-insensitive), raw and unfolded."""
        wanted = name.lower()
        for key, value in self.fields:
            if key.lower() == wanted:
                return value
        return None


def _split_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for line in _FOLD.sub(b"", block).split(b"\r\n"):
        name, colon, value = line.partition(b":")
        name = name.strip(b" \t")
        if colon and name and _TOKEN.fullmatch(name):
            out.append((name, value.strip(b" \t")))
    return out


def _params(value: bytes, header: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(lower-case main value, parameters) of a Content-Type-like field."""
    msg = Message()
    msg[header] = value.decode("ascii", "surrogateescape")
    got = msg.get_params(header=header) or []
    main = got[0][0].strip().lower() if got else ""
    params: list[tuple[str, bytes]] = []
    for name, val in got[1:]:
        if isinstance(val, tuple):  # RFC 2231: (charset, language, value as latin-1)
            charset, lang, text = val
            raw = str(text).encode("latin-1", "surrogateescape")
            encoded = f"{charset or ''}'{lang or ''}'{urllib.parse.quote(raw, safe='')}"
            params.append((name.upper() + "*", encoded.encode("ascii")))
        else:
            params.append((name.upper(), str(val).encode("ascii", "surrogateescape")))
    return main, params


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.parts = 0

    def entity(self, start: int, end: int, depth: int, digest: bool = False) -> Entity:
        self.parts += 1
        data = self.data
        if data.startswith(b"\r\n", start):
            body_start = start + 2
        else:
            m = _BLANK.search(data, start, end)
            body_start = end if m is None else m.end()
        head_end = body_start - 2 if body_start >= start + 2 else body_start
        ent = Entity(start, body_start, end, _split_fields(data[start:head_end]))
        raw_type = ent.header(b"Content-Type")
        main = ""
        if raw_type is not None:
            main, ent.params = _params(raw_type, "content-type")
        ctype, slash, subtype = main.partition("/")
        if not slash or not ctype.strip() or not subtype.strip():
            ctype, subtype = ("message", "rfc822") if digest else ("text", "plain")
            if raw_type is None or not any(k == "CHARSET" for k, _ in ent.params):
                ent.params = [("CHARSET", b"US-ASCII")] if ctype == "text" else []
        ent.ctype, ent.subtype = ctype.strip(), subtype.strip()
        nested = ent.ctype == "multipart" or _is_message(ent)
        if nested and depth >= MAX_DEPTH:
            return _opaque(ent)
        if ent.ctype == "multipart":
            self._multipart(ent, depth)
        elif _is_message(ent):
            ent.children = [self.entity(body_start, end, depth + 1)]
        return ent

    def _multipart(self, ent: Entity, depth: int) -> None:
        boundary = dict(ent.params).get("BOUNDARY")
        if not boundary:
            _opaque(ent)
            return
        bounds: list[tuple[int, int]] = []
        part_start = -1
        for start, end, close in _delimiters(self.data, b"--" + boundary, ent.body_start,
                                             ent.end):
            if part_start >= 0:
                # the CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1)
                bounds.append((part_start, max(part_start, start - 2)))
            if close:
                part_start = -1
                break
            part_start = end
        if part_start >= 0:  # no close delimiter: the last part runs to the end
            bounds.append((part_start, ent.end))
        if not bounds:
            _opaque(ent)
            return
        digest = ent.subtype == "digest"
        for start, end in bounds:
            if self.parts >= MAX_PARTS:
                rest = Entity(start, start, bounds[-1][1], [])
                ent.children.append(_opaque(rest))
                break
            ent.children.append(self.entity(start, end, depth + 1, digest))


_DELIMITER_TAIL = re.compile(rb"(--)?[ \t]*(?:\r\n|\Z)")


def _delimiters(data: bytes, marker: bytes, pos: int, end: int
                ) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is the close delimiter) of each boundary delimiter line of
    ``marker`` (``--boundary``) between ``pos`` and ``end``: at the start of a line,
    then optionally ``--``, blanks and the line end (RFC 2046 5.1.1).  Found with a
    substring search, not a regular expression tried at every offset: bodies are
    mostly long base64 runs."""
    while True:
        i = data.find(marker, pos, end)
        if i < 0:
            return
        pos = i + 1
        if i != 0 and data[i - 2:i] != b"\r\n":
            continue
        m = _DELIMITER_TAIL.match(data, i + len(marker), end)
        if m is None:
            continue
        yield i, m.end(), bool(m.group(1))
        pos = m.end()


def _is_message(ent: Entity) -> bool:
    if ent.ctype != "message" or ent.subtype not in ("rfc822", "global"):
        return False
    cte = (ent.header(b"Content-Transfer-Encoding") or b"7bit").strip().lower()
    return cte in (b"7bit", b"8bit", b"binary")


def _opaque(ent: Entity) -> Entity:
    """Describe ``ent`` as one opaque application/octet-stream part (a capped bomb)."""
    ent.ctype, ent.subtype, ent.params, ent.children, ent.opaque = (
        "application", "octet-stream", [], [], True)
    return ent


def parse(message: bytes) -> Entity:
    """The entity tree of ``message`` (taken with CRLF line ends, see :func:`to_crlf`)."""
    return _Parser(message).entity(0, len(message), 0)


# --- ENVELOPE -------------------------------------------------------------------------

def _tokens(text: bytes) -> list[tuple[str, bytes]]:
    """Address-list tokens: ('q', quoted text), ('a', <angle addr>), ('w', word) and
    the specials ',', ':', ';'.  Comments are dropped."""
    out: list[tuple[str, bytes]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i:i + 1]
        if c in b" \t\r\n":
            i += 1
        elif c == b'"':
            j, buf = i + 1, bytearray()
            while j < n and text[j:j + 1] != b'"':
                if text[j:j + 1] == b"\\" and j + 1 < n:
                    j += 1
                buf += text[j:j + 1]
                j += 1
            out.append(("q", bytes(buf)))
            i = j + 1
        elif c == b"(":
            level, j = 1, i + 1
            while j < n and level:
                ch = text[j:j + 1]
                if ch == b"\\":
                    j += 1
                elif ch == b"(":
                    level += 1
                elif ch == b")":
                    level -= 1
                j += 1
            i = j
        elif c == b"<":
            j = text.find(b">", i)
            j = n if j < 0 else j
            out.append(("a", text[i + 1:j].strip()))
            i = j + 1
        elif c in (b",", b":", b";"):
            out.append((c.decode(), c))
            i += 1
        else:
            j = i
            while j < n and text[j:j + 1] not in b' \t\r\n"(<,:;' :
                j += 1
            out.append(("w", text[i:j]))
            i = j
    return out


def _address(name: list[bytes], spec: bytes) -> Structure:
    adl: bytes | None = None
    if spec.startswith(b"@") and b":" in spec:  # obsolete source route
        route, _, spec = spec.partition(b":")
        adl = route
    mailbox, at, host = spec.rpartition(b"@")
    if not at:
        mailbox, host = spec, MISSING_HOST
    return [b" ".join(name) if name else None, adl, mailbox, host or MISSING_HOST]


def addresses(value: bytes | None) -> Structure:
    """An address list (RFC 9051 7.5.2 ENVELOPE): groups as (NIL NIL name NIL) ...
    (NIL NIL NIL NIL); NIL when the field is absent or holds no address."""
    if value is None:
        return None
    out: list[Structure] = []
    phrase: list[bytes] = []
    words: list[bytes] = []
    in_group = False

    def flush() -> None:
        if words:
            out.append(_address([], b"".join(words)))
        words.clear()
        phrase.clear()

    for kind, text in _tokens(value):
        if kind == "a":
            if text:
                out.append(_address(phrase + words, text))
            words.clear()
            phrase.clear()
        elif kind in ("w", "q"):
            words.append(text)
        elif kind == ":" and not in_group and words:
            out.append([None, None, b" ".join(words), None])
            words.clear()
            in_group = True
        elif kind == ";" and in_group:
            flush()
            out.append([None, None, None, None])
            in_group = False
        elif kind == ",":
            flush()
        else:  # a stray ':' or ';' is part of the word
            words.append(text)
    flush()
    if in_group:
        out.append([None, None, None, None])
    return out or None


def envelope(ent: Entity) -> Structure:
    """The ENVELOPE of the message whose header is ``ent``'s (RFC 9051 7.5.2)."""
    sender_from = addresses(ent.header(b"From"))

    def or_from(name: bytes) -> Structure:
        got = addresses(ent.header(name))
        return got if got is not None else sender_from

    return [
        ent.header(b"Date"), ent.header(b"Subject"), sender_from,
        or_from(b"Sender"), or_from(b"Reply-To"),
        addresses(ent.header(b"To")), addresses(ent.header(b"Cc")),
        addresses(ent.header(b"Bcc")), ent.header(b"In-Reply-To"),
        ent.header(b"Message-ID"),
    ]


# --- BODYSTRUCTURE --------------------------------------------------------------------

def _param_list(params: Sequence[tuple[str, bytes]]) -> Structure:
    if not params:
        return None
    out: list[Structure] = []
    for name, value in params:
        out += [name.encode("ascii", "surrogateescape"), value]
    return out


def _disposition(ent: Entity) -> Structure:
    raw = ent.header(b"Content-Disposition")
    if raw is None:
        return None
    main, params = _params(raw, "content-disposition")
    if not main:
        return None
    return [main.upper().encode("ascii", "surrogateescape"), _param_list(params)]


def _language(ent: Entity) -> Structure:
    raw = ent.header(b"Content-Language")
    if raw is None:
        return None
    tags: list[Structure] = [t for t in re.split(rb"[\s,]+", raw) if t]
    return tags or None


def _lines(body: bytes) -> int:
    """Lines of a body; a last line without a line end counts too."""
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def bodystructure(ent: Entity, data: bytes, extended: bool = True) -> Structure:
    """BODYSTRUCTURE (``extended``) or BODY of ``ent`` in ``data``."""
    ext: list[Structure] = []
    if ent.ctype == "multipart" and ent.children:
        out: list[Structure] = [bodystructure(c, data, extended) for c in ent.children]
        out.append(ent.subtype.upper().encode("ascii", "surrogateescape"))
        if extended:
            out += [_param_list(ent.params), _disposition(ent), _language(ent),
                    ent.header(b"Content-Location")]
        return out
    body = data[ent.body_start:ent.end]
    cte = b"7BIT" if ent.opaque else (ent.header(b"Content-Transfer-Encoding") or b"7BIT")
    params = ent.params
    if ent.ctype == "text" and not any(name.lower() == "charset" for name, _ in params):
        params = [("CHARSET", b"us-ascii"), *params]  # RFC 2045 5.2's default, as Dovecot
    out = [
        ent.ctype.upper().encode("ascii", "surrogateescape"),
        ent.subtype.upper().encode("ascii", "surrogateescape"),
        _param_list(params),
        None if ent.opaque else ent.header(b"Content-ID"),
        None if ent.opaque else ent.header(b"Content-Description"),
        cte.upper(),
        len(body),
    ]
    if ent.children:  # message/rfc822 or message/global
        inner = ent.children[0]
        out += [envelope(inner), bodystructure(inner, data, extended), _lines(body)]
    elif ent.ctype == "text":
        out.append(_lines(body))
    if extended and not ent.opaque:
        ext = [ent.header(b"Content-MD5"), _disposition(ent), _language(ent),
               ent.header(b"Content-Location")]
    elif extended:
        ext = [None, None, None, None]
    return out + ext


# --- storage form ---------------------------------------------------------------------

def dumps(value: Structure) -> str:
    """A compact text form of ``value`` for the index (JSON; octets as surrogate-escaped
    text, which JSON keeps as ``\\udcXX`` escapes)."""
    return json.dumps(_encode(value), separators=(",", ":"))


def loads(text: str) -> Structure:
    """The inverse of :func:`dumps`."""
    return _decode(json.loads(text))


def _encode(value: Structure) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: object) -> Structure:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return cast(Structure, value)
    raise ValueError(f"not a stored structure: {value!r}")


def compute(message: bytes) -> tuple[Structure, Structure]:
    """(ENVELOPE, BODYSTRUCTURE) of a message (any line ends)."""
    data = to_crlf(message)
    root = parse(data)
    return envelope(root), bodystructure(root, data)

"""IMAP responses as bytes (RFC 9051 7, grammar in 9).

Values are encoded by :func:`encode_value`: None is NIL, an int a number, a list a
parenthesised list, an :class:`Atom` verbatim, and ``str``/``bytes`` a string -- quoted
when that is possible and short, else a literal (RFC 9051 4.3: a quoted string cannot
hold CR, LF or NUL; 8-bit text needs UTF8=ACCEPT or IMAP4rev2, RFC 9051 4.3 and
RFC 6855 3).  :class:`Literal` forces a literal (message content), ``binary`` a
``~{n}`` literal8 (RFC 3516 4.2).  :class:`Joined` values follow each other without
a space, as the grammar wants for ``1*body`` and ``1*address`` (RFC 9051 9).
:class:`Encoded` octets are already in wire form (a cached BODYSTRUCTURE).

Human-readable text and response codes are sanitised: control characters become
spaces, so nothing an adapter passes can split a response line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailyard.proto.imap import mutf7

__all__ = [
    "Atom", "Encoded", "Joined", "Literal", "Value", "bye", "capability", "continuation", "enabled",
    "encode_mailbox", "encode_sequence", "encode_value", "esearch", "exists", "expunge",
    "fetch", "flags", "list_mailbox", "quota", "quotaroot", "search", "status",
    "tagged", "untagged", "untagged_status", "vanished",
]

MAX_QUOTED = 1024  # longer strings go as literals (easier for clients to buffer)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUOTE_AS_IS = re.compile(rb'[ !#-\[\]-~]*')  # printable ASCII but '"' and '\\'
_ATOM_SAFE = re.compile(rb"[^\x00-\x20\x7f-\xff(){%*\"\\\]]+\Z")


class Atom(str):
    """Written as is: flags, keywords, capability names, attribute names."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Literal:
    data: bytes
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Joined:
    """Values written one after the other, no space between and no parentheses
    around: the parts of a multipart BODYSTRUCTURE, the addresses of an address list
    (RFC 9051 9 ``body-type-mpart``, ``env-from``)."""

    items: Sequence[Value]


@dataclass(frozen=True, slots=True)
class Encoded:
    """Octets written as they are: a value encoded before (``proto/imap/structwire``)."""

    data: bytes


Value = None | int | str | bytes | Atom | Literal | Joined | Encoded | Sequence["Value"]


def _text(text: str) -> bytes:
    return _CONTROL.sub(" ", text).encode("utf-8")


def encode_string(data: bytes | str, utf8: bool = False) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    quotable = len(raw) <= MAX_QUOTED and b"\r" not in raw and b"\n" not in raw \
        and b"\x00" not in raw
    if quotable and not raw.isascii():
        quotable = utf8
        if quotable:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                quotable = False
    if quotable:
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(raw) + raw


def encode_value(value: Value, utf8: bool = False) -> bytes:
    # bytes and lists first: ENVELOPE and BODYSTRUCTURE are mostly short ASCII
    # strings in lists, hundreds per message (FETCH 1:* ALL).
    if isinstance(value, bytes):
        if len(value) <= MAX_QUOTED and _QUOTE_AS_IS.fullmatch(value):
            return b'"' + value + b'"'
        return encode_string(value, utf8)
    if isinstance(value, list):
        return b"(" + b" ".join([encode_value(v, utf8) for v in value]) + b")"
    if value is None:
        return b"NIL"
    if isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, Atom):
        return value.encode("ascii")
    if isinstance(value, (str, bytes)):
        return encode_string(value, utf8)
    if isinstance(value, Encoded):
        return value.data
    if isinstance(value, Literal):
        marker = b"~{%d}\r\n" if value.binary else b"{%d}\r\n"
        return marker % len(value.data) + value.data
    if isinstance(value, Joined):
        return b"".join([encode_value(v, utf8) for v in value.items])
    return b"(" + b" ".join([encode_value(v, utf8) for v in value]) + b")"


def encode_mailbox(name: str, utf8: bool = False) -> bytes:
    """A mailbox name: UTF-8 when enabled (RFC 9051 5.1, RFC 6855 3), else modified
    UTF-7 (RFC 3501 5.1.3); an atom when it is one, else quoted."""
    raw = name.encode("utf-8") if utf8 else mutf7.encode(name)
    if _ATOM_SAFE.match(raw) and raw.upper() != b"NIL":
        return raw
    return encode_string(raw, utf8)


def encode_sequence(numbers: Iterable[int]) -> bytes:
    """Numbers as a compact sequence set (``1:3,7``); numbers must be ascending."""
    out: list[bytes] = []
    start = prev = -2
    for n in numbers:
        if n == prev + 1:
            prev = n
            continue
        if start >= 0:
            out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = n
    if start >= 0:
        out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(out)


def _code(code: str) -> bytes:
    return b"[" + _text(code).replace(b"]", b" ") + b"] " if code else b""


def tagged(tag: str, status: str, text: str, code: str = "") -> bytes:
    """``tag OK [CODE] text`` (RFC 9051 7.1)."""
    return b"%s %s %s%s\r\n" % (tag.encode("ascii"), status.encode("ascii"), _code(code),
                               _text(text or status.lower()))


def untagged_status(status: str, text: str, code: str = "") -> bytes:
    """``* OK|NO|BAD|PREAUTH|BYE [CODE] text``."""
    return b"* %s %s%s\r\n" % (status.encode("ascii"), _code(code), _text(text))


def bye(text: str, code: str = "") -> bytes:
    return untagged_status("BYE", text, code)


def untagged(*parts: Value, utf8: bool = False) -> bytes:
    """``* `` then the values separated by spaces (atoms for keywords)."""
    return b"* " + b" ".join(encode_value(p, utf8) for p in parts) + b"\r\n"


def continuation(text: bytes = b"") -> bytes:
    """``+ text`` (RFC 9051 7.6): a prompt text, or base64 SASL data."""
    return b"+ " + text.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def capability(capabilities: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(capabilities).encode("ascii") + b"\r\n"


def enabled(capabilities: Iterable[str]) -> bytes:
    caps = " ".join(capabilities)
    return b"* ENABLED" + (b" " + caps.encode("ascii") if caps else b"") + b"\r\n"


def exists(count: int) -> bytes:
    return b"* %d EXISTS\r\n" % count


def expunge(number: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % number


def flags(names: Iterable[str]) -> bytes:
    return b"* FLAGS (" + " ".join(names).encode("ascii") + b")\r\n"


def fetch(number: int, items: Sequence[tuple[str, Value]], utf8: bool = False) -> bytes:
    """``* n FETCH (NAME value ...)``; names as :meth:`FetchAttribute.label` gives
    them (``BODY[HEADER]<0>``)."""
    body = b" ".join([name.encode("ascii") + b" " + encode_value(value, utf8)
                      for name, value in items])
    return b"* %d FETCH (%s)\r\n" % (number, body)


def list_mailbox(attributes: Iterable[str], delimiter: str | None, name: str,
                 utf8: bool = False, extended: Sequence[Value] = (), lsub: bool = False
                 ) -> bytes:
    """``* LIST (\\HasNoChildren) "/" name`` (RFC 9051 7.3.1), with extended data
    items (RFC 5258 CHILDINFO, RFC 9051 OLDNAME) as values."""
    head = b"* LSUB (" if lsub else b"* LIST ("
    out = head + " ".join(attributes).encode("ascii") + b") "
    out += encode_value(delimiter, utf8) + b" " + encode_mailbox(name, utf8)
    if extended:
        out += b" " + encode_value(list(extended), utf8)
    return out + b"\r\n"


def status(name: str, items: Sequence[tuple[str, int]], utf8: bool = False) -> bytes:
    body = b" ".join(b"%s %d" % (k.encode("ascii"), v) for k, v in items)
    return b"* STATUS " + encode_mailbox(name, utf8) + b" (" + body + b")\r\n"


def search(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """RFC 3501 7.2.5 ``* SEARCH 2 3 6`` (with ``(MODSEQ n)``, RFC 7162 3.1.5)."""
    out = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
    if modseq is not None:
        out += b" (MODSEQ %d)" % modseq
    return out + b"\r\n"


def esearch(tag: str | None, uid: bool, results: Sequence[tuple[str, int | bytes]]) -> bytes:
    """RFC 9051 7.3.4 ``* ESEARCH (TAG "a1") UID MIN 2 ALL 2:5``; ALL's value is a
    sequence set (bytes, see :func:`encode_sequence`)."""
    out = b"* ESEARCH"
    if tag is not None:
        out += b' (TAG "' + tag.encode("ascii") + b'")'
    if uid:
        out += b" UID"
    for name, value in results:
        out += b" " + name.encode("ascii") + b" "
        out += value if isinstance(value, bytes) else b"%d" % value
    return out + b"\r\n"


def vanished(uids: bytes, earlier: bool = False) -> bytes:
    """RFC 7162 3.2.10 ``* VANISHED (EARLIER) 41,43:116``."""
    return b"* VANISHED " + (b"(EARLIER) " if earlier else b"") + uids + b"\r\n"


def quota(root: str, resources: Sequence[tuple[str, int, int]]) -> bytes:
    """RFC 9208 5.1 ``* QUOTA "" (STORAGE 10 512)``."""
    body = b" ".join(b"%s %d %d" % (n.encode("ascii"), used, limit)
                     for n, used, limit in resources)
    return b"* QUOTA " + encode_string(root, True) + b" (" + body + b")\r\n"


def quotaroot(mailbox: str, roots: Sequence[str], utf8: bool = False) -> bytes:
    out = b"* QUOTAROOT " + encode_mailbox(mailbox, utf8)
    for root in roots:
        out += b" " + encode_string(root, True)
    return out + b"\r\n"

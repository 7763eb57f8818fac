"""Reading a received report with the standard library's ``email`` package, safely.

The ``email`` package is tolerant of most damage but not all of it: its header value
parsers and charset lookups have raised ValueError, LookupError, IndexError,
AttributeError or RecursionError on crafted input.  Every call into it goes through
this module, which catches exactly those (:data:`PARSE_ERRORS`) and answers "absent",
and caps what is read: the input size, the number of MIME parts and their nesting
depth, and the characters taken from one text part.  The parser's time grows with the
number of lines, faster still with MIME parts and with blocks of a delivery-status part,
so before parsing the input is cut after :data:`MAX_LINES` lines,
:data:`MAX_BLANK_LINES` empty lines or :data:`MAX_BOUNDARY_LINES` lines starting with
``--``.  A report puts what is read here first (the text, the status or feedback
fields, the header of the returned message), so a cut only loses the tail of a
returned message, and the result notes it.  Header values are read raw
(``raw_items``) and unfolded here, so a malformed address or Message-ID field cannot
make the structured header parser fail.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import html
import quopri
import re
from collections.abc import Iterator
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser

from mailyard.feedback.model import OriginalHeaders

MAX_INPUT = 1024 * 1024  # bytes of a report parsed
MAX_PARTS = 256
MAX_DEPTH = 10
MAX_TEXT = 256 * 1024  # characters read from one text part
MAX_FIELD = 2048  # characters kept of one header field
MAX_BOUNDARY_LINES = 2 * MAX_PARTS + 16
MAX_BLANK_LINES = 1000
MAX_LINES = 20_000

PARSE_ERRORS: tuple[type[BaseException], ...] = (
    email.errors.MessageError, ValueError, TypeError, LookupError, UnicodeError,
    AttributeError, RecursionError, AssertionError)

_FOLD = re.compile(r"\r?\n[ \t]+")
_SPACE = re.compile(r"\s+")
_BREAKS = frozenset({"br", "p", "/p", "div", "/div", "tr", "/tr", "li", "/li", "h1", "/h1",
                     "h2", "/h2", "h3", "/h3", "table", "/table"})

ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers",
                  "message/global-headers")


def parse(raw: bytes, max_bytes: int = MAX_INPUT) -> Message | None:
    try:
        return BytesParser(policy=policy.default).parsebytes(cap(raw, max_bytes))
    except PARSE_ERRORS:
        return None


def cap(raw: bytes, max_bytes: int = MAX_INPUT) -> bytes:
    """``raw`` cut to the size and line caps (at the end of a line)."""
    raw = raw[:max_bytes]
    cut = len(raw)
    for needle, limit in ((b"\n", MAX_LINES), (b"\n\n", MAX_BLANK_LINES),
                          (b"\n\r\n", MAX_BLANK_LINES), (b"\n--", MAX_BOUNDARY_LINES)):
        pos = -1
        for _ in range(limit):
            pos = raw.find(needle, pos + 1, cut)
            if pos < 0:
                break
        else:
            cut = min(cut, pos + 1)
    return raw[:cut]


def header(msg: Message, name: str) -> str | None:
    """The first field called ``name``, unfolded and trimmed (raw, not decoded)."""
    values = headers(msg, name, limit=1)
    return values[0] if values else None


def headers(msg: Message, name: str, limit: int = 100) -> list[str]:
    wanted = name.lower()
    out: list[str] = []
    try:
        for key, value in msg.raw_items():
            if str(key).lower() == wanted:
                out.append(_unfold(str(value)))
                if len(out) >= limit:
                    break
    except PARSE_ERRORS:
        pass
    return out


def decoded_header(msg: Message, name: str) -> str | None:
    """The first field called ``name`` with RFC 2047 encoded words decoded."""
    raw = header(msg, name)
    if raw is None:
        return None
    try:
        return _unfold(str(make_header(decode_header(raw))))
    except PARSE_ERRORS:
        return raw


def content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except PARSE_ERRORS:
        return "text/plain"


def param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except PARSE_ERRORS:
        return None
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        value = value[2]
    return None if value is None else str(value)[:MAX_FIELD]


def walk(msg: Message) -> Iterator[Message]:
    """Parts in document order, not descending into attached messages, with depth and
    part-count caps."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        yield part
        if depth >= MAX_DEPTH or not _is_multipart(part):
            continue
        children = _payload(part)
        if isinstance(children, list):
            kids = [c for c in children[:MAX_PARTS] if isinstance(c, Message)]
            stack.extend((child, depth + 1) for child in reversed(kids))


def text_of(part: Message) -> str:
    """The decoded text of a leaf part (charset errors replaced), capped."""
    payload = _payload(part)
    if isinstance(payload, list | Message):
        blocks = payload if isinstance(payload, list) else [payload]
        return _transfer_decoded(part, serialise_fields(blocks))[:MAX_TEXT]
    try:
        data = part.get_payload(decode=True)
    except PARSE_ERRORS:
        data = None
    if not isinstance(data, bytes):
        return str(payload or "")[:MAX_TEXT]
    data = data[:MAX_TEXT * 4]
    charset = param(part, "charset") or "utf-8"
    try:
        return data.decode(charset, errors="replace")[:MAX_TEXT]
    except PARSE_ERRORS:
        return data.decode("utf-8", errors="replace")[:MAX_TEXT]


def _transfer_decoded(part: Message, text: str) -> str:
    """A ``message/*`` status or report part sent base64 or quoted-printable encoded
    (which RFC 2046 5.2 forbids, and some systems do anyway), decoded."""
    cte = (header(part, "content-transfer-encoding") or "").lower()
    data = text.encode("ascii", "ignore")
    try:
        if cte == "base64":
            data = base64.b64decode(b"".join(data.split()), validate=False)
        elif cte == "quoted-printable":
            data = quopri.decodestring(data)
        else:
            return text
    except (binascii.Error, ValueError):
        return text
    return data[:MAX_TEXT].decode("utf-8", "replace")


def serialise_fields(blocks: list[object]) -> str:
    """The text of header blocks the parser made into messages (``message/delivery-
    status`` blocks, a ``message/feedback-report``; the parser puts all but the first
    block of other ``message/*`` types into a body), blocks separated by blank lines."""
    texts: list[str] = []
    for block in blocks[:MAX_PARTS]:
        if not isinstance(block, Message):
            continue
        try:
            lines = [f"{k}: {_unfold(str(v))}" for k, v in block.raw_items()]
        except PARSE_ERRORS:
            lines = []
        text = "\n".join(lines)
        body = _body_text(block)
        if body.strip():
            text += "\n\n" + body
        texts.append(text)
    return "\n\n".join(texts)


def human_text(msg: Message) -> str:
    """The first text/plain part that is not inside an attached message, else the first
    text/html part with tags removed; the empty string if there is neither."""
    html_part: Message | None = None
    for part in walk(msg):
        ctype = content_type(part)
        if ctype == "text/plain" and not _is_attachment(part):
            return text_of(part)
        if ctype == "text/html" and html_part is None:
            html_part = part
    if html_part is not None:
        return strip_html(text_of(html_part))
    return ""


def strip_html(text: str) -> str:
    """The text of an HTML part: tags removed (line breaks for block ends), script and
    style content skipped, entities decoded.  One pass with ``find``: linear, unlike
    regular expressions over unterminated tags."""
    lower = text.lower()
    out: list[str] = []
    pos = 0
    while pos < len(text):
        lt = text.find("<", pos)
        if lt < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:lt])
        gt = text.find(">", lt)
        if gt < 0:
            break
        words = lower[lt + 1:min(gt, lt + 12)].split()
        name = words[0].rstrip("/") if words else ""
        out.append("\n" if name in _BREAKS else " ")
        pos = gt + 1
        if name in ("script", "style"):
            end = lower.find(f"</{name}", pos)
            if end < 0:
                break
            pos = end
    return html.unescape("".join(out))


def field_blocks(text: str) -> list[list[tuple[str, str]]]:
    """RFC 3464 / RFC 5965 field blocks: ``Name: value`` lines (folded lines joined),
    blocks separated by blank lines."""
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in _FOLD.sub(" ", text.replace("\r\n", "\n")).split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
            continue
        name, colon, value = line.partition(":")
        if colon and name.strip() and " " not in name.strip():
            current.append((name.strip().lower(), value.strip()[:MAX_FIELD]))
    if current:
        blocks.append(current)
    return blocks


def original_headers(msg: Message) -> OriginalHeaders | None:
    """Header fields of the message returned inside a report, if there is one."""
    for part in walk(msg):
        ctype = content_type(part)
        if ctype not in ORIGINAL_TYPES:
            continue
        payload = _payload(part)
        inner: Message | None = None
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            inner = payload[0]
        elif isinstance(payload, Message):
            inner = payload
        if inner is not None and inner.keys():
            return headers_of(inner)
        return headers_from_text(text_of(part))
    return None


def headers_from_text(text: str) -> OriginalHeaders | None:
    """Header fields of a message copied as text (a returned message quoted inline)."""
    try:
        inner = HeaderParser(policy=policy.default).parsestr(text[:MAX_TEXT].lstrip(),
                                                            headersonly=True)
    except PARSE_ERRORS:
        return None
    if not inner.keys():
        return None
    found = headers_of(inner)
    return found if any(vars(found).values()) else None


def headers_of(inner: Message) -> OriginalHeaders:
    return OriginalHeaders(
        message_id=header(inner, "message-id"),
        return_path=header(inner, "return-path"),
        list_id=header(inner, "list-id"),
        feedback_id=header(inner, "feedback-id"),
        sender=header(inner, "from"),
        to=header(inner, "to"),
        subject=decoded_header(inner, "subject"),
    )


def _body_text(block: Message) -> str:
    """The body of a parsed header block as UTF-8 text (the parser's own str view
    decodes 8-bit bytes as ASCII, losing RFC 6533 UTF-8 addresses)."""
    if _is_multipart(block):
        return ""
    try:
        data = block.get_payload(decode=True)
    except PARSE_ERRORS:
        return ""
    if not isinstance(data, bytes):
        return ""
    return data[:MAX_TEXT].decode("utf-8", "replace")


def _is_multipart(part: Message) -> bool:
    try:
        return part.is_multipart() and content_type(part).startswith("multipart/")
    except PARSE_ERRORS:
        return False


def _is_attachment(part: Message) -> bool:
    try:
        return (part.get_content_disposition() or "") == "attachment"
    except PARSE_ERRORS:
        return False


def _payload(part: Message) -> object:
    try:
        return part.get_payload()
    except PARSE_ERRORS:
        return None


def _unfold(value: str) -> str:
    return _clean(_SPACE.sub(" ", _FOLD.sub(" ", value)).strip()[:MAX_FIELD])


def _clean(text: str) -> str:
    """Raw 8-bit bytes the parser kept as surrogate escapes, read as UTF-8 (RFC 6532)."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")

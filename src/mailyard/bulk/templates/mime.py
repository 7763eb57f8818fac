"""The message bytes of one rendered contact: header section and MIME body.

Built directly rather than through ``email.message.EmailMessage`` and its generator,
which cost more than the whole render (``email.header.Header`` alone took 0.5 ms
per contact, measuring each character for quoted-printable); a subject or display name
that is not ASCII becomes RFC 2047 "B" encoded-words (``email.base64mime``), cut on
character boundaries so each word holds whole UTF-8 sequences (RFC 2047 5) and fits
a 78-character line (RFC 2047 2: at most 75 characters a word).

Every value that reaches a header field goes through one of three gates:

* free text (subject, display names, the List-Id phrase): controls, CR and LF first,
  become spaces, so a contact named ``"Eve\\r\\nBcc: ..."`` gets a one-line name and
  never a header field of her own;
* addresses, URLs, Message-ID, Feedback-ID and extra fields: refused
  (:class:`HeaderRefused`) when they hold a CR, LF, control character or anything
  else their syntax does not allow;
* everything is folded at 78 characters where a space allows.

Bodies are quoted-printable UTF-8, so the message is 7-bit unless an address needs
SMTPUTF8 (RFC 6531/6532: a non-ASCII local part stays UTF-8 in the header), and the
MIME boundary, which contains ``=_``, can never occur in a quoted-printable body
(RFC 2045 6.7 encodes every ``=``).
"""

from __future__ import annotations

import binascii
import functools
import itertools
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import base64mime
from typing import Any

from mailyard.bulk.templates.render import (
    CompiledTemplate,
    ContactFields,
    FailureKind,
    Part,
    RenderedContent,
    RenderFailure,
    Tracking,
    one_line,
)
from mailyard.message.headers import fold_field, format_date


class HeaderRefused(ValueError):
    """A value that cannot be put into a header field as it is."""


@dataclass(frozen=True)
class Mailbox:
    address: str
    name: str = ""


@dataclass(frozen=True)
class ListHeaders:
    """The list fields of bulk mail.

    ``unsubscribe_url`` is the https link that unsubscribes with one POST (RFC 8058:
    ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` is added with it);
    ``unsubscribe_mailto`` the mailto: fallback (RFC 2369 3.2).  ``list_id`` is the
    RFC 2919 identifier (``newsletter.example.com``), ``list_name`` its phrase.
    ``feedback_id`` is the ``a:b:c:SenderId`` value mailbox providers report
    complaint rates by.
    """

    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    list_id: str | None = None
    list_name: str = ""
    feedback_id: str | None = None


@dataclass(frozen=True)
class BuiltMessage:
    data: bytes  # CRLF line ends
    message_id: str
    smtputf8: bool  # an address in the header is not ASCII


_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_ADDRESS = re.compile(rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*"
                      r"@[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9.\u0080-\U0010ffff-]*"
                      r"[A-Za-z0-9\u0080-\U0010ffff])?")
_PHRASE_ATOMS = re.compile(rf"[{_ATEXT} ]*")
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_MSG_ID = re.compile(rf"<[{_ATEXT}.]+@[{_ATEXT}.\[\]:]+>")
# A URI inside <...> in List-Unsubscribe: printable ASCII without space, <, > or quotes.
_URI = re.compile(r"[!#-;=?-~]+")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_VISIBLE = re.compile(r"[ -~]*")
_STRUCTURAL = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
    "content-type", "content-transfer-encoding", "list-id", "list-unsubscribe",
    "list-unsubscribe-post", "feedback-id", "sender", "return-path", "received",
})


def check_address(address: str) -> str:
    """The address as it may stand in a header, or HeaderRefused."""
    if not _ADDRESS.fullmatch(address):
        raise HeaderRefused(f"not an address that can be put in a header: {address!r}")
    return address


def format_mailbox(box: Mailbox) -> str:
    """``name <address>``: an ASCII name as atoms or a quoted string, any other
    through RFC 2047 encoded-words."""
    address = check_address(box.address)
    name = one_line(box.name)
    if not name:
        return address
    return f"{phrase(name)} <{address}>"


_WORD_BYTES = 39  # 52 base64 characters: "=?utf-8?b?" + 52 + "?=" is 64


def encoded_words(text: str) -> str:
    """``text`` as RFC 2047 encoded-words, one per folded line."""
    words: list[str] = []
    chunk = b""
    for char in text:
        octets = char.encode("utf-8")
        if len(chunk) + len(octets) > _WORD_BYTES:
            words.append(base64mime.header_encode(chunk, "utf-8"))
            chunk = b""
        chunk += octets
    if chunk:
        words.append(base64mime.header_encode(chunk, "utf-8"))
    return "\r\n ".join(words)


def _plain(text: str) -> bool:
    """ASCII that folds into lines under 998 characters (RFC 5322 2.1.1)."""
    return text.isascii() and max(map(len, text.split()), default=0) <= _LONGEST_WORD


_LONGEST_WORD = 900


def phrase(text: str) -> str:
    if not _plain(text):
        return encoded_words(text)
    if _PHRASE_ATOMS.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _subject(subject: str) -> str:
    if _plain(subject):
        return fold_field("Subject", subject)
    return f"Subject: {encoded_words(subject)}\r\n"


def _line(name: str, value: str) -> str:
    if "\r\n" in value:  # encoded-words, already one to a line
        return f"{name}: {value}\r\n"
    return fold_field(name, value)


def _uri(uri: str, scheme: str) -> str:
    if not uri.lower().startswith(scheme) or not _URI.fullmatch(uri) or \
            len(uri) > _LONGEST_WORD:
        raise HeaderRefused(f"not a {scheme} URI that can be put in a header: {uri!r}")
    return uri


def list_fields(lists: ListHeaders) -> list[str]:
    lines: list[str] = []
    if lists.list_id is not None:
        if not _DOT_ATOM.fullmatch(lists.list_id) or "." not in lists.list_id:
            raise HeaderRefused(f"not a List-Id (RFC 2919): {lists.list_id!r}")
        name = one_line(lists.list_name)
        value = f"{phrase(name)} <{lists.list_id}>" if name else \
            f"<{lists.list_id}>"
        lines.append(_line("List-Id", value))
    targets = []
    if lists.unsubscribe_url is not None:
        targets.append(f"<{_uri(lists.unsubscribe_url, 'https:')}>")
    if lists.unsubscribe_mailto is not None:
        targets.append(f"<{_uri(lists.unsubscribe_mailto, 'mailto:')}>")
    if targets:
        lines.append(_line("List-Unsubscribe", ", ".join(targets)))
    if lists.unsubscribe_url is not None:
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    if lists.feedback_id is not None:
        if not _VISIBLE.fullmatch(lists.feedback_id) or not lists.feedback_id.strip():
            raise HeaderRefused(f"not a Feedback-ID: {lists.feedback_id!r}")
        lines.append(_line("Feedback-ID", lists.feedback_id))
    return lines


def extra_field(name: str, value: str) -> str:
    if not _FIELD_NAME.fullmatch(name) or name.lower() in _STRUCTURAL:
        raise HeaderRefused(f"not a header field that may be added: {name!r}")
    if "\r" in value or "\n" in value or one_line(value) != value.strip():
        raise HeaderRefused(f"the value of {name} holds a line break or control character")
    if _plain(value):
        return _line(name, value)
    return _line(name, encoded_words(value))


# Boundaries: a random prefix per process and a counter.  ``=_`` already keeps them out
# of quoted-printable parts; the prefix only keeps two messages' from looking alike.
# One urandom read per message was measurable at campaign rates.
_BOUNDARY_PREFIX = f"=_{secrets.token_hex(8)}."
_boundaries = itertools.count(1)


def _boundary() -> str:
    return f"{_BOUNDARY_PREFIX}{next(_boundaries):x}"


# Quoted-printable lines already encoded, by their text.  The encoding of a line does
# not depend on the lines around it (b2a_qp starts each line afresh), and most lines of
# a campaign's parts are the template's own, the same in every contact's message: a
# 3 KB HTML part with a text part made from it is about 80 lines, of which a handful
# carry a value.  Bounded in lines and characters: emptied when full (lines with values
# never come again), and a line longer than _QP_LINE_LONGEST is not kept.
_QP_LINES: dict[str, bytes] = {}
_QP_LINES_MAX = 4096
_QP_LINES_CHARS = 2_000_000
_QP_LINE_LONGEST = 20_000
_qp_cached_chars = 0


def quoted_printable(text: str) -> bytes:
    """UTF-8, quoted-printable (RFC 2045 6.7), CRLF line ends."""
    lf = text.replace("\r\n", "\n").replace("\r", "\n")
    if not lf.endswith("\n"):
        lf += "\n"
    lines = lf.split("\n")
    lines.pop()  # the "" after the last line end
    global _qp_cached_chars
    cache = _QP_LINES
    out: list[bytes] = []
    for line in lines:
        encoded = cache.get(line)
        if encoded is None:
            encoded = binascii.b2a_qp(f"{line}\n".encode(), istext=True).replace(
                b"\n", b"\r\n")
            if len(line) <= _QP_LINE_LONGEST:
                if len(cache) >= _QP_LINES_MAX or _qp_cached_chars > _QP_LINES_CHARS:
                    cache.clear()
                    _qp_cached_chars = 0
                cache[line] = encoded
                _qp_cached_chars += len(line)
        out.append(encoded)
    return b"".join(out)


@functools.lru_cache(maxsize=64)
def _mailbox_field(name: str, box: Mailbox) -> str:
    """The From or Reply-To field of ``box``: the same in every message of a campaign,
    so made once (HeaderRefused is raised each time, exceptions are not kept)."""
    return _line(name, format_mailbox(box))


def build_message(content: RenderedContent, *, sender: Mailbox, to: Mailbox,
                  date: float, message_id: str | None = None,
                  reply_to: Mailbox | None = None, lists: ListHeaders | None = None,
                  extra: Sequence[tuple[str, str]] = (),
                  also_to: Sequence[Mailbox] = ()) -> BuiltMessage:
    """The message; HeaderRefused for a value that cannot be put in a header.
    ``also_to``: more addressees of the same message (a transactional message to
    several people), in the same To field."""
    domain = check_address(sender.address).rpartition("@")[2]
    if message_id is None:
        message_id = f"<{secrets.token_hex(12)}@{domain}>"
    elif not _MSG_ID.fullmatch(message_id):
        raise HeaderRefused(f"not a Message-ID: {message_id!r}")
    head = [f"Date: {format_date(date)}\r\n",
            _mailbox_field("From", sender),
            _line("To", ", ".join(format_mailbox(m) for m in (to, *also_to))),
            _subject(content.subject),
            f"Message-ID: {message_id}\r\n"]
    if reply_to is not None:
        head.append(_mailbox_field("Reply-To", reply_to))
    if lists is not None:
        head += list_fields(lists)
    head += [extra_field(name, value) for name, value in extra]
    head.append("MIME-Version: 1.0\r\n")
    text = quoted_printable(content.text)
    if content.html is None:
        head.append("Content-Type: text/plain; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
        body = text
    else:
        boundary = _boundary()
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
        delimiter = f"--{boundary}\r\n".encode()
        part = (b"Content-Type: text/%s; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
        # The CRLF before a delimiter belongs to it (RFC 2046 5.1.1): one more keeps
        # each part's own last line end.
        body = b"".join([delimiter, part % b"plain", text, b"\r\n", delimiter,
                         part % b"html", quoted_printable(content.html), b"\r\n",
                         f"--{boundary}--\r\n".encode()])
    header = "".join(head)
    smtputf8 = not header.isascii()
    return BuiltMessage(header.encode("utf-8") + body, message_id, smtputf8)


@dataclass(frozen=True)
class Envelope:
    """The per-message values besides the contact's content."""

    sender: Mailbox
    date: float
    message_id: str | None = None
    reply_to: Mailbox | None = None
    lists: ListHeaders | None = None
    extra: tuple[tuple[str, str], ...] = ()


def compose(template: CompiledTemplate, contact: ContactFields, envelope: Envelope, *,
            unsubscribe_url: str, view_online_url: str = "",
            variables: Mapping[str, Any] | None = None,
            tracking: Tracking | None = None) -> BuiltMessage | RenderFailure:
    """One contact's message, or the reason it cannot be sent (reported, then skipped)."""
    content = template.render(contact, unsubscribe_url=unsubscribe_url,
                              view_online_url=view_online_url, variables=variables,
                              tracking=tracking)
    if isinstance(content, RenderFailure):
        return content
    try:
        return build_message(content, sender=envelope.sender,
                             to=Mailbox(contact.address, contact.name), date=envelope.date,
                             message_id=envelope.message_id, reply_to=envelope.reply_to,
                             lists=envelope.lists, extra=envelope.extra)
    except HeaderRefused as exc:
        return RenderFailure(Part.HEADERS, FailureKind.HEADER, str(exc))

"""Messages handed over by local programs (``mailyard send``, ``mailyard sendmail``).

Local submissions get CRLF line endings and a ``From:`` when missing (``-f``/``-F``);
``-t`` takes the recipients from To/Cc/Bcc and removes Bcc.  What every submission
gets (the Received trace line, a Date and a Message-ID when missing, RFC 6409 8) is
added by ingest (:mod:`mailyard.ingest`), where the message is queued with
:func:`local_submission`.  Parsing uses the standard ``email``
package; only the line-ending and header-block handling is done here, on bytes, so
the body is passed through untouched.
"""

from __future__ import annotations

import email.utils
import pwd
import re
from email import errors
from email.message import EmailMessage
from email.parser import HeaderParser
from email.policy import SMTP, SMTPUTF8, compat32

from mailyard.envelope import Envelope, made_here
from mailyard.ingest.api import Origin, Submission
from mailyard.proto.smtp.address import AddressError, parse_forward_path

_BARE_LF = re.compile(rb"(?<!\r)\n")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def to_crlf(raw: bytes) -> bytes:
    raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return raw.replace(b"\n", b"\r\n")


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    """(header block including its final CRLF, body) of a CRLF message."""
    if raw.startswith(b"\r\n"):
        return b"", raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw if raw.endswith(b"\r\n") or not raw else raw + b"\r\n", b""
    return raw[: end + 2], raw[end + 4 :]


class SubmissionError(ValueError):
    """A locally submitted message or argument that cannot be queued as given."""


# Defects that do not make an address list ambiguous: obsolete syntax that is still
# parsed one way only (RFC 5322 4.4), and UTF-8 local parts (RFC 6532).
_HARMLESS_DEFECTS = (errors.ObsoleteHeaderDefect, errors.NonASCIILocalPartDefect)
_ADDRESS_FIELDS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


def recipients_from_headers(head: bytes) -> list[str]:
    """The recipients named in To/Cc/Bcc (and their Resent- forms), for ``sendmail -t``.

    The fields are parsed with the standard library's RFC 5322 address-list parser
    (``email.headerregistry``), not with ``email.utils.getaddresses``, whose lenient
    parser can read a different address than the one a mail reader shows
    (CVE-2023-27043: ``x@remote.org)<alice@example.test>`` yields ``x@remote.org``).
    A field the strict parser reports as invalid is refused, as is an address
    without a domain: guessing which recipient was meant is not safe.
    Raises SubmissionError."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SubmissionError("the message header is not valid UTF-8") from exc
    msg = HeaderParser(policy=compat32).parsestr(text + "\r\n")  # raw field values
    found: list[str] = []
    for name in _ADDRESS_FIELDS:
        for raw in msg.get_all(name, []):
            unfolded = "".join(str(raw).splitlines())  # RFC 5322 2.2.3
            field = f"{name.title()}: {unfolded.strip()}"
            try:
                value = SMTPUTF8.header_factory(name, unfolded)
                addresses = value.addresses
                bad = [d for d in value.defects if not isinstance(d, _HARMLESS_DEFECTS)]
            except (errors.HeaderParseError, ValueError, AttributeError, IndexError) as exc:
                raise SubmissionError(f"cannot parse the address list in {field!r}") from exc
            if bad:
                raise SubmissionError(f"ambiguous or invalid address list in {field!r}: {bad[0]}")
            for address in addresses:
                addr = address.addr_spec
                if not address.domain or not is_valid_address(addr):
                    raise SubmissionError(f"not a valid recipient address in {field!r}: "
                                          f"{addr!r}")
                if addr not in found:
                    found.append(addr)
    return found


def remove_header(head: bytes, name: str) -> bytes:
    """Drop every field called ``name`` (with its folded continuation lines)."""
    out: list[bytes] = []
    skipping = False
    prefix = name.lower().encode() + b":"
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(prefix)
        if not skipping:
            out.append(line)
    return b"\r\n".join(out)


def has_header(head: bytes, name: str) -> bool:
    prefix = name.lower().encode() + b":"
    return any(line.lower().startswith(prefix) for line in head.split(b"\r\n"))


def prepare_local_message(raw: bytes, *, user: str, strip_bcc: bool,
                          sender: str = "", full_name: str = "") -> bytes:
    """Normalise a locally submitted message for ingest (which adds the trace field,
    and Date and Message-ID when missing)."""
    head, body = split_head(to_crlf(raw))
    if strip_bcc:
        head = remove_header(head, "bcc")
    if head and not head.endswith(b"\r\n"):
        head += b"\r\n"
    extra = []
    if not has_header(head, "from") and sender:
        extra.append(f"From: {from_field(full_name, sender)}\r\n".encode())
    check_text("the user name", user)
    return head + b"".join(extra) + b"\r\n" + body


def check_text(what: str, text: str) -> None:
    """Refuse a control character (CR and LF above all) in text bound for a header."""
    if _CONTROL.search(text):
        raise SubmissionError(f"{what} must not contain control characters (such as CR or LF)")


def from_field(full_name: str, sender: str) -> str:
    """The value of a ``From:`` field for ``sendmail -F NAME -f SENDER``.

    A non-ASCII name is RFC 2047-encoded; with a non-ASCII sender address the message
    is an SMTPUTF8 one anyway (RFC 6532 3.2), so the name stays UTF-8, quoted."""
    check_text("the full name (-F)", full_name)
    if not full_name:
        return sender
    if sender.isascii():
        return email.utils.formataddr((full_name, sender), charset="utf-8")
    return f'"{email.utils.quote(full_name)}" <{sender}>'


def compose(sender: str, to: list[str], subject: str, body: str, cc: list[str] | None = None,
            hostname: str = "localhost") -> bytes:
    """A plain-text message, as ``mailyard send`` builds it."""
    check_text("the subject", subject)
    for address in (sender, *to, *(cc or ())):
        check_text("an address", address)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    msg.set_content(body)
    try:
        return msg.as_bytes()
    except UnicodeEncodeError:
        return msg.as_bytes(policy=SMTPUTF8)


def local_submission(sender: str, recipients: list[str], content: bytes,
                     user: str) -> Submission:
    """What ingest needs to queue a local submission by ``user``."""
    return Submission(origin=Origin.LOCAL, local_user=user,
                      envelope=local_envelope(sender, recipients, content, user))


def local_envelope(sender: str, recipients: list[str], content: bytes, user: str) -> Envelope:
    """The envelope of a local submission by ``user`` (a name from :func:`user_name`)."""
    return made_here(sender, recipients, content, auth_user=user)


_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def user_name(uid: int) -> str:
    """The login name of ``uid`` from the password database, for the ``Received:``
    trace line and the envelope's submitter.  A name that is not a plain login name
    (or a uid without one) is given as the uid number."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
    return name if _USER_NAME.fullmatch(name) and len(name) <= 64 else str(uid)


def is_valid_address(address: str) -> bool:
    """An address that could be given in MAIL FROM or RCPT TO (RFC 5321 4.1.2, with the
    UTF-8 of RFC 6531), with a domain."""
    try:
        mailbox, rest = parse_forward_path(f"<{address}>")
    except AddressError:
        return False
    return bool(mailbox.domain) and not rest

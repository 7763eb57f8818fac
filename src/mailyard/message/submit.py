"""Messages handed over by local programs (``mailyard send``, ``mailyard sendmail``).

Local submissions get what a submission server adds (RFC 6409 8): a Date and a
Message-ID when missing, a Received trace line, CRLF line endings; ``-t`` takes the
recipients from To/Cc/Bcc and removes Bcc.  Parsing uses the standard ``email``
package; only the line-ending and header-block handling is done here, on bytes, so
the body is passed through untouched.
"""

from __future__ import annotations

import email.utils
import re
import time
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, SMTPUTF8

_BARE_LF = re.compile(rb"(?<!\r)\n")


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


def recipients_from_headers(head: bytes) -> list[str]:
    msg = BytesHeaderParser(policy=SMTPUTF8).parsebytes(head + b"\r\n")
    found: list[str] = []
    for name in ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"):
        for value in msg.get_all(name, []):
            for _, addr in email.utils.getaddresses([str(value)]):
                if addr and "@" in addr and addr not in found:
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


def prepare_local_message(raw: bytes, hostname: str, *, user: str, strip_bcc: bool,
                          sender: str = "", full_name: str = "") -> bytes:
    """Normalise a locally submitted message for the queue."""
    head, body = split_head(to_crlf(raw))
    if strip_bcc:
        head = remove_header(head, "bcc")
    if head and not head.endswith(b"\r\n"):
        head += b"\r\n"
    extra = []
    if not has_header(head, "from") and sender:
        frm = email.utils.formataddr((full_name, sender)) if full_name else sender
        extra.append(f"From: {frm}\r\n".encode("utf-8"))
    if not has_header(head, "date"):
        extra.append(f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode())
    if not has_header(head, "message-id"):
        extra.append(f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\n".encode())
    received = (f"Received: by {hostname} (Mailyard, from user {user});\r\n"
                f"\t{email.utils.formatdate(time.time(), localtime=True)}\r\n").encode()
    return received + head + b"".join(extra) + b"\r\n" + body


def compose(sender: str, to: list[str], subject: str, body: str, cc: list[str] | None = None,
            hostname: str = "localhost") -> bytes:
    """A plain-text message, as ``mailyard send`` builds it."""
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


def is_valid_address(address: str) -> bool:
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return "@" in address

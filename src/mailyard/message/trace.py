"""The ``Received:`` trace field (RFC 5321 4.4, RFC 5322 3.6.7), built in one place.

Ingest (:mod:`mailyard.ingest`) puts one at the top of every message that enters
through SMTP or a local submission::

    Received: from <helo> ([ip])
        (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)
        by <hostname> (Mailyard) with ESMTPS id <qid>
        for <rcpt>; <RFC 5322 date>

    Received: by <hostname> (Mailyard, from user <name>);
        <RFC 5322 date>

The ``with`` keyword follows RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA) and RFC 6531
(UTF8SMTP...); ``for`` names the recipient only when there is exactly one, so Bcc
recipients are not revealed to each other.  Everything client-supplied is made safe
for a header: the HELO name is reduced to domain characters (no CR, LF or spaces), and
any other text with a control character in it is refused.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Sequence

__all__ = ["TraceError", "address_literal", "local_received", "protocol_name",
           "rfc5322_date", "smtp_received"]

_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]\u0080-\U0010ffff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_date_cache: tuple[int, str] = (-1, "")


class TraceError(ValueError):
    """Text bound for the trace field that cannot be put in a header."""


def rfc5322_date(now: float | None = None) -> str:
    """The date in RFC 5322 3.3 form (UTC), computed at most once a second."""
    global _date_cache
    now = time.time() if now is None else now
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, email.utils.formatdate(second, localtime=False, usegmt=False)
                       .replace("-0000", "+0000"))
    return _date_cache[1]


def protocol_name(extended: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """The ``with`` keyword for an SMTP session (RFC 3848, RFC 6531)."""
    if not extended:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def address_literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def _safe(what: str, text: str) -> str:
    if _CONTROL.search(text):
        raise TraceError(f"{what} must not contain control characters (such as CR or LF)")
    return text


def smtp_received(*, helo: str, ip: str, hostname: str, protocol: str, qid: str,
                  recipients: Sequence[str], tls: str = "", now: float | None = None) -> bytes:
    """The whole field for a message received over SMTP, folded, ending in CRLF.
    ``helo`` is client-supplied and is reduced to domain characters; ``tls`` is e.g.
    "TLSv1.3 with cipher X"."""
    helo_name = _UNSAFE.sub("?", helo)[:255] or "unknown"
    lines = [f"Received: from {helo_name} ({address_literal(_safe('the address', ip))})"]
    if tls:
        lines.append(f"\t(using {_safe('the TLS description', tls)})")
    lines.append(f"\tby {hostname} (Mailyard) with {_safe('the protocol', protocol)} id {qid}")
    stamp = rfc5322_date(now)
    if len(recipients) == 1:
        lines.append(f"\tfor <{_safe('the recipient', recipients[0])}>; {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def local_received(*, hostname: str, user: str, now: float | None = None) -> bytes:
    """The field for a local submission (``mailyard send``/``sendmail``, the maildrop):
    names the submitting Unix user, whom the kernel vouches for."""
    stamp = email.utils.formatdate(time.time() if now is None else now, localtime=True)
    return (f"Received: by {hostname} (Mailyard, from user {_safe('the user name', user)});"
            f"\r\n\t{stamp}\r\n").encode()

"""The Received trace field smtpd puts at the top of every message (RFC 5321 4.4).

    Received: from <helo> ([ip])
    	(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)
    	by <hostname> (Mailyard) with ESMTPS id <qid>
    	for <rcpt>; <RFC 5322 date>

The ``with`` keyword follows RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA) and RFC 6531
(UTF8SMTP...); ``for`` names the recipient only when there is exactly one, so
Bcc recipients are not revealed to each other.
"""

from __future__ import annotations

import email.utils
import re
import time

_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]\u0080-\U0010ffff]")
_date_cache: tuple[int, str] = (-1, "")


def rfc5322_date(now: float | None = None) -> str:
    """The current date in RFC 5322 3.3 form, computed at most once a second."""
    global _date_cache
    now = time.time() if now is None else now
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, email.utils.formatdate(second, localtime=False, usegmt=False)
                       .replace("-0000", "+0000"))
    return _date_cache[1]


def protocol_name(extended: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    if not extended:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def address_literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def received_header(*, helo: str, ip: str, hostname: str, protocol: str, qid: str,
                    recipients: tuple[str, ...], tls: str = "", now: float | None = None) -> bytes:
    """The whole field, folded, ending in CRLF.  ``helo`` is client-supplied and is
    reduced to domain characters; ``tls`` is e.g. "TLSv1.3 with cipher X"."""
    helo_name = _UNSAFE.sub("?", helo)[:255] or "unknown"
    lines = [f"Received: from {helo_name} ({address_literal(ip)})"]
    if tls:
        lines.append(f"\t(using {tls})")
    lines.append(f"\tby {hostname} (Mailyard) with {protocol} id {qid}")
    stamp = rfc5322_date(now)
    if len(recipients) == 1:
        lines.append(f"\tfor <{recipients[0]}>; {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")

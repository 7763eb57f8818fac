"""Small header-field helpers for messages Mailyard writes itself (DSNs, notices).

The date is written as ``email.utils`` would; the rest is what the ``email`` package
does not do on raw bytes: one field line built from a name and a value, with CR/LF and
control characters removed (no header injection from remote replies) and folded at
spaces (RFC 5322 2.2.3) so no line exceeds 78 characters where a space allows it.
"""

from __future__ import annotations

import datetime
import re
import secrets

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LINE_SOFT_LIMIT = 78


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")


def format_date(timestamp: float) -> str:
    """RFC 5322 3.3 date-time in UTC: ``Sat, 01 Mar 2025 12:00:00 +0000`` (what
    ``email.utils.format_datetime`` writes, without its ``strftime`` call for the
    zone, which cost more than the rest of a campaign message's header)."""
    t = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return (f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} +0000")


def make_message_id(hostname: str, now: float) -> str:
    """A new globally unique Message-ID (RFC 5322 3.6.4) at ``hostname``."""
    return f"<{int(now)}.{secrets.token_hex(10)}@{hostname}>"


def clean_value(value: str) -> str:
    """One line of text: CR, LF, TAB and other controls become single spaces."""
    return " ".join(_CONTROL.sub(" ", value.replace("\t", " ")).split())


def fold_field(name: str, value: str) -> str:
    """``Name: value`` with CRLF line ends, folded at spaces before 78 characters."""
    head = f"{name}:"
    lines: list[str] = []
    current = head
    for word in clean_value(value).split(" "):
        if current != head and len(current) + 1 + len(word) > _LINE_SOFT_LIMIT:
            lines.append(current)
            current = ""
        current = f"{current} {word}" if word else current
    lines.append(current)
    return "\r\n".join(lines) + "\r\n"

"""Auto-replies (out of office, vacation, "thanks for writing"), which must never count
as bounces: the address works and a person will read the mail later.

RFC 3834 5 asks automatic responders to send ``Auto-Submitted: auto-replied``; older
ones say so with ``X-Autoreply``/``X-Autorespond`` fields or ``Precedence:
auto_reply``, and some only with a subject such as "Automatic reply:" or "Out of
Office".  Bounces carry ``Auto-Submitted`` too (RFC 3464 reports and most MTAs' text
bounces), so that field alone is a weak sign, weighed by :mod:`.classify` only after
the bounce formats; the other signs are strong and win over bounce-like text quoted
in a reply.
"""

from __future__ import annotations

import re
from email.message import Message

from mailyard.feedback import mime

_FLAG_FIELDS = ("x-autoreply", "x-autorespond", "x-autoresponse", "x-auto-reply",
                "x-autoresponder", "x-vacation")
_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:auto(?:matic)?[ -]?(?:reply|response|answer|antwort)|"
    r"auto:|autoreply|out of (?:the )?office|ooo\b|on vacation|vacation (?:reply|notice)|"
    r"away from (?:the )?office|abwesen|r[ée]ponse automatique|absence|autosvar|"
    r"risposta automatica|respuesta autom[aá]tica|automatisch antwoord|fuera de la oficina)",
    re.I)


def is_auto_reply(msg: Message) -> bool:
    """Any sign of an automatic message, Auto-Submitted included."""
    submitted = (mime.header(msg, "auto-submitted") or "").split(";")[0].strip().lower()
    return bool(submitted and submitted != "no") or is_clear_auto_reply(msg)


def is_clear_auto_reply(msg: Message) -> bool:
    """A sign that only auto-replies carry (not the Auto-Submitted of bounces)."""
    for name in _FLAG_FIELDS:
        value = mime.header(msg, name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            return True
    precedence = (mime.header(msg, "precedence") or "").strip().lower()
    if precedence == "auto_reply":
        return True
    return bool(_SUBJECT.search(mime.decoded_header(msg, "subject") or ""))

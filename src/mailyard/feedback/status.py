"""From an RFC 3463 enhanced status code (and the remote server's text) to a severity.

The class digit decides first: ``2`` is success, ``4`` is transient (soft), ``5`` is
permanent.  But a permanent failure is not always a fault of the *address*, and a
hard bounce suppresses the address for good, so only failures that say the address
or its domain does not work are hard:

- ``5.1.x`` (addressing: no such user, no such domain, bad syntax), ``5.2.0`` and
  ``5.2.1`` (mailbox unavailable or disabled), ``5.4.4`` (unable to route: no MX/A) and
  the generic ``5.0.0`` are hard; without an enhanced code, the basic replies 550, 551
  and 553 (RFC 5321 4.2.3: mailbox unavailable, not local, name not allowed) are hard;
- ``5.2.2`` mailbox full is **soft**: the person exists and may clean up their
  mailbox; repeated soft bounces suppress through :mod:`.policy` anyway;
- ``5.2.3``/``5.3.4`` message too large, ``5.6.x`` content, ``5.5.x`` protocol and
  ``5.7.x`` policy (spam filtering, a block list listing the sending IP, DMARC) are
  **soft**: they are about this message or the sender, and counting them as hard would
  suppress a whole domain's readers after one block listing;
- ``5.4.7`` (delivery time expired) and other ``5.3.x``/``5.4.x`` are soft.

The server's text overrides a code in two cases: text saying the mailbox is full or
over quota makes any failure soft, and text saying the user is unknown makes any
permanent failure hard, whatever its code: large providers answer a missing mailbox
with codes of other subjects ("550 5.5.0 Requested action not taken: mailbox
unavailable", "550 5.4.1 Recipient address rejected: Access denied", "550 5.7.1
Recipient address rejected: user unknown").
"""

from __future__ import annotations

import re

from mailyard.feedback.model import Severity

STATUS = re.compile(r"(?<![\d.])([245])\.([0-7])\.(\d{1,3})(?![\d.]*\d)")
SMTP_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?=[ \-]|$)", re.M)

_HARD = {(1, None), (2, 0), (2, 1), (4, 4), (0, 0)}  # (subject, detail); None: any
_HARD_BASIC = {"550", "551", "553"}
_FULL = re.compile(r"mailbox (is )?full|over ?quota|quota exceeded|exceeded (the )?quota|"
                   r"insufficient (system )?storage|mailbox size limit|out of storage|"
                   r"storage (space )?(limit|quota)", re.I)
_UNKNOWN = re.compile(r"user unknown|unknown user|no such (user|mailbox|recipient|address)|"
                      r"(user|mailbox|recipient|address)( \S+)? (does not|doesn'?t) exist|"
                      r"recipient not found|address not found|invalid (recipient|mailbox)|"
                      r"mailbox unavailable|unknown (recipient|mailbox|address)|"
                      r"account (is )?(disabled|deactivated)|recipnotfound|"
                      r"address rejected: (?:user|access denied)|"
                      r"(?:does not|doesn'?t) have an? (?:\S+ )?account", re.I)


def find_status(text: str) -> str | None:
    """The first enhanced status code in ``text`` (``5.1.1``), if any."""
    match = STATUS.search(text)
    return ".".join(match.groups()) if match else None


def find_smtp_code(text: str) -> str | None:
    """The first basic SMTP reply code in ``text`` (``550``), if any."""
    match = SMTP_CODE.search(text)
    return match.group(1) if match else None


def severity(status: str | None, text: str = "") -> Severity:
    """Severity of a failure with enhanced status ``status`` (may be None) and the
    remote server's text; a missing status falls back to the basic reply code in the
    text, then to the text alone, then to soft (an unreadable failure is not enough to
    suppress an address for good)."""
    text = text or ""
    status = status or find_status(text)
    basic = None if status else find_smtp_code(text)
    klass = status[0] if status else (basic[0] if basic else None)
    if klass == "2":
        return Severity.NONE
    if _FULL.search(text):
        return Severity.SOFT
    if klass == "4":
        return Severity.SOFT
    unknown = bool(_UNKNOWN.search(text))
    if klass != "5":
        return Severity.HARD if unknown else Severity.SOFT
    if status is None:
        return Severity.HARD if unknown or basic in _HARD_BASIC else Severity.SOFT
    subject, detail = (int(x) for x in status.split(".")[1:])
    if (subject, None) in _HARD or (subject, detail) in _HARD:
        return Severity.HARD
    if unknown:
        return Severity.HARD
    return Severity.SOFT

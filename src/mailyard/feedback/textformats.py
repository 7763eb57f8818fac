"""Bounces that are not RFC 3464 reports: plain text written for people by qmail,
Exim, Postfix and sendmail (when they send no DSN), Microsoft Exchange and Office 365,
Gmail, and the rest.

Each known format is a row of :data:`FORMATS`: a pattern that recognises it, a pattern
that says it is only a delay warning, where the list of recipients starts and where it
ends (before the returned copy of the message).  Inside that section a recipient is a
line that starts with an address (``<user@example.com>:``, ``  user@example.com``,
``user@example.com on <date>``); the lines up to the next address are its
diagnostic, from which :mod:`.status` takes the status code and the severity.  Formats
that name the recipient in a sentence ("Your message wasn't delivered to X because")
are read with :data:`INLINE`.  A message from MAILER-DAEMON or with a bounce-like
subject that matches no row is read the same way as :attr:`ReportFormat.GENERIC`.
A report that names no recipient (nor in X-Failed-Recipients) gives one outcome without
an address: the VERP address it was sent to says whose it is.

Patterns are bounded (no nested quantifiers) and run on text capped by :mod:`.mime`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailyard.feedback.model import RecipientOutcome, ReportFormat, Severity
from mailyard.feedback.status import find_status, severity

ADDR = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,10}"
LINE_ADDR = re.compile(rf"^[ \t]*<?({ADDR})>?(?=[\s:(,;]|$)", re.M)
INLINE = re.compile(
    rf"(?:(?:wasn't|was not|couldn't be|could not be) delivered to|"
    rf"Your message to|problem delivering your message to|"
    rf"could not deliver (?:your|the) message to)\s+<?({ADDR})>?", re.I)
MAX_RECIPIENTS = 50
MAX_DIAGNOSTIC = 1000

_COPY = (r"^[ \t]*-{2,}[ \t]*(?:Below this line is a copy|This is a copy of the message|"
         r"The header of the original message|Original message|Message header follows|"
         r"Undelivered message|Forwarded message)|^[ \t]*Original message headers:")


@dataclass(frozen=True)
class TextFormat:
    format: ReportFormat
    detect: re.Pattern[str]
    delayed: re.Pattern[str] | None
    start: re.Pattern[str] | None
    end: re.Pattern[str]


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I | re.M)


FORMATS = (
    TextFormat(ReportFormat.QMAIL,
               _re(r"This is the qmail-send program|I'm afraid I wasn't able to deliver "
                   r"your message"),
               None, _re(r"to the following addresses\.?"),
               _re(_COPY)),
    TextFormat(ReportFormat.EXIM,
               _re(r"This message was created automatically by mail delivery software"),
               _re(r"has not yet been delivered to one or more of its\s+recipients|"
                   r"Delivery attempts will continue"),
               _re(r"following address(?:\(es\)|es)? failed:|address(?:es)? to which the "
                   r"message has not yet been delivered (?:is|are):"),
               _re(_COPY + r"|^[ \t]*No action is required|^[ \t]*Reporting-MTA:")),
    TextFormat(ReportFormat.POSTFIX,
               _re(r"This is the (?:mail system|Postfix program) at host"),
               _re(r"THIS IS A WARNING ONLY|Delayed Mail \(still being retried\)"),
               _re(r"^[ \t]*The (?:mail system|Postfix program)[ \t]*$"),
               _re(_COPY + r"|^[ \t]*Reporting-MTA:|^Received:|^Return-Path:")),
    TextFormat(ReportFormat.SENDMAIL,
               _re(r"-{3,} ?The following addresses had (?:permanent fatal|transient "
                   r"non-fatal) errors|-{3,} ?Transcript of session follows"),
               _re(r"THIS IS A WARNING MESSAGE ONLY|transient non-fatal errors|"
                   r"Warning: could not send message for past"),
               _re(r"The following addresses had (?:permanent fatal|transient non-fatal) "
                   r"errors -*"),
               _re(r"^[ \t]*-{3,} ?(?:Original message follows|Message header follows|"
                   r"Returned message)")),
    TextFormat(ReportFormat.EXCHANGE,
               _re(r"Delivery has failed to these recipients or groups|Your message did "
                   r"not reach some or all of the intended recipients|The following "
                   r"recipient\(s\) (?:cannot|could not) be reached|Delivery is delayed "
                   r"to these recipients or groups|Remote Server returned '|Your message "
                   r"to \S+ couldn't be delivered"),
               _re(r"Delivery is delayed to these recipients|(?:hasn't|has not) been "
                   r"delivered yet"),
               _re(r"Delivery has failed to these recipients or groups:|The following "
                   r"recipient\(s\) (?:cannot|could not) be reached:|Delivery is delayed "
                   r"to these recipients or groups:|Diagnostic information for "
                   r"administrators:"),
               _re(_COPY)),
    TextFormat(ReportFormat.GMAIL,
               _re(r"Delivery to the following recipients? (?:failed permanently|has been "
                   r"delayed)|\*\* ?(?:Address not found|Message not delivered|Delivery "
                   r"incomplete|Message blocked) ?\*\*|Google tried to deliver your message|"
                   r"Technical details of (?:permanent|temporary) failure"),
               _re(r"has been delayed|Delivery incomplete|temporary problem delivering|"
                   r"Technical details of temporary failure|will retry for"),
               _re(r"Delivery to the following recipients? (?:failed permanently|has been "
                   r"delayed):|\*\* ?[A-Za-z ]{3,40} ?\*\*"),
               _re(_COPY)),
)

GENERIC = TextFormat(
    ReportFormat.GENERIC, _re(r"$^"),
    _re(r"\(Delay\)|\bdelayed\b|Warning: could not send|still being retried|not yet been "
        r"delivered|will (?:continue to )?(?:retry|try again)"),
    _re(r"following (?:recipients?|address(?:\(es\)|es)?|destination addresses)[^\n:]{0,80}:"),
    _re(_COPY))

_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster@|mail delivery (?:subsystem|system)",
                            re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered mail|delivery status notification|mail delivery failed|"
    r"delivery (?:failure|failed|has failed|problem|notification)|failure notice|"
    r"returned mail|returning message to sender|could not be delivered|"
    r"non remis|unzustellbar|nicht zustellbar|delayed mail|delivery delayed|"
    r"warning: could not send", re.I)


def looks_like_bounce(sender: str, subject: str) -> bool:
    """Sender or subject typical of a bounce (for the generic reading)."""
    return bool(_BOUNCE_SENDER.search(sender) or _BOUNCE_SUBJECT.search(subject))


def known_format(text: str) -> TextFormat | None:
    for fmt in FORMATS:
        if fmt.detect.search(text):
            return fmt
    return None


def read(fmt: TextFormat, text: str, subject: str = "",
         failed_header: tuple[str, ...] = (), ignore: frozenset[str] = frozenset(),
         ) -> tuple[RecipientOutcome, ...]:
    """The recipients a text bounce of format ``fmt`` names.  ``failed_header`` are the
    addresses of an X-Failed-Recipients field (used when the text names none);
    ``ignore`` are addresses that are not recipients (the bounce's own To)."""
    delayed = fmt.delayed is not None and bool(
        fmt.delayed.search(text) or fmt.delayed.search(subject))
    section = _section(fmt, text)
    found = _line_recipients(section, ignore)
    if not found:
        found = {m.group(1).lower(): (m.group(1), section)
                 for m in INLINE.finditer(section)
                 if m.group(1).lower() not in ignore}
    if not found:
        found = {a.lower(): (a, section) for a in failed_header if a.lower() not in ignore}
    if not found:
        return (_outcome(None, section, delayed),)
    return tuple(_outcome(addr, diag or section, delayed)
                 for addr, diag in list(found.values())[:MAX_RECIPIENTS])


def inline_copy(text: str) -> str | None:
    """The text after a "copy of the message follows" marker, if there is one."""
    match = _re(_COPY).search(text)
    if match is None:
        return None
    rest = text[match.end():]
    _line, _nl, after = rest.partition("\n")
    return after.lstrip("\r\n")


def _section(fmt: TextFormat, text: str) -> str:
    start = 0
    if fmt.start is not None:
        match = fmt.start.search(text)
        if match is not None:
            start = match.end()
    end = fmt.end.search(text, start)
    return text[start:end.start() if end else len(text)]


def _line_recipients(section: str, ignore: frozenset[str]) -> dict[str, tuple[str, str]]:
    """{lower-case address: (address, diagnostic)} in order of appearance; an address
    met again (Postfix repeats it in the reply text, Exchange in the section for
    administrators) adds to its diagnostic."""
    found: dict[str, tuple[str, str]] = {}
    matches = list(LINE_ADDR.finditer(section))[:MAX_RECIPIENTS * 4]
    for i, match in enumerate(matches):
        addr = match.group(1).rstrip(".")
        key = addr.lower()
        if key in ignore:
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) else len(section)
        diag = section[match.end():end]
        old = found.get(key)
        found[key] = (addr, (old[1] + "\n" if old else "") + diag)
    return found


def _outcome(address: str | None, diagnostic: str, delayed: bool) -> RecipientOutcome:
    diag = " ".join(diagnostic.split())[:MAX_DIAGNOSTIC]
    status = find_status(diag)
    if delayed:
        return RecipientOutcome(address, Severity.SOFT, "delayed", status, diag or None)
    sev = severity(status, diag)
    if sev is Severity.NONE:
        sev = Severity.SOFT
    return RecipientOutcome(address, sev, "failed", status, diag or None)

"""One entry point: a received message (to a VERP bounce address, or to the abuse
feedback address) in, a :class:`Feedback` out.

The order matters:

1. an RFC 5965 feedback report is a complaint;
2. an RFC 3464 delivery-status report gives per-recipient outcomes;
3. an auto-reply with a sign only auto-replies carry (X-Autoreply, Precedence:
   auto_reply, an "Out of Office" subject), even if it quotes bounce-like text;
4. a known text bounce format (:mod:`.textformats`);
5. a message from MAILER-DAEMON/postmaster or with a bounce subject, read generically;
6. an auto-reply by ``Auto-Submitted`` alone: checked after the bounce readings
   because bounces carry that field as well;
7. anything else is not a bounce (a person answering the newsletter, spam).

Malformed input never raises: unparseable bytes are "not a bounce" with a note.
"""

from __future__ import annotations

import re
from email.message import Message

from mailyard.feedback import arf, autoreply, dsn, mime, textformats
from mailyard.feedback.model import (
    Feedback,
    OriginalHeaders,
    RecipientOutcome,
    ReportFormat,
    Severity,
    Verdict,
)
from mailyard.feedback.verp import VerpTarget, parse_verp_address

_ADDR = re.compile(textformats.ADDR)


def classify(raw: bytes, *, max_bytes: int = mime.MAX_INPUT) -> Feedback:
    truncated = len(mime.cap(raw, max_bytes)) < len(raw)
    msg = mime.parse(raw, max_bytes)
    if msg is None:
        return Feedback(Verdict.NOT_BOUNCE, ReportFormat.NONE, notes=("unparseable",))
    result = classify_message(msg)
    if truncated:
        return Feedback(result.verdict, result.format, result.recipients, result.complaint,
                        result.original, result.notes + ("truncated",))
    return result


def classify_message(msg: Message) -> Feedback:
    part = arf.report_part(msg)
    if part is not None:
        complaint = arf.parse_report(part)
        verdict = Verdict.COMPLAINT if arf.is_complaint(complaint) else Verdict.NOT_BOUNCE
        return Feedback(verdict, ReportFormat.ARF, complaint=complaint,
                        original=mime.original_headers(msg))
    part = dsn.status_part(msg)
    if part is not None:
        recipients = dsn.parse_status_text(mime.text_of(part))
        if recipients:
            return Feedback(_verdict(recipients), ReportFormat.DSN, recipients,
                            original=mime.original_headers(msg))
    return _text_bounce(msg)


def _text_bounce(msg: Message) -> Feedback:
    if autoreply.is_clear_auto_reply(msg):
        return Feedback(Verdict.AUTO_REPLY, ReportFormat.AUTO_REPLY)
    text = mime.human_text(msg)
    subject = mime.decoded_header(msg, "subject") or ""
    fmt = textformats.known_format(text)
    if fmt is None:  # Auto-Submitted alone does not tell an auto-reply from a bounce
        sender = " ".join(mime.headers(msg, "from", 3) + mime.headers(msg, "return-path", 3))
        if textformats.looks_like_bounce(sender, subject):
            fmt = textformats.GENERIC
    if fmt is None:
        if autoreply.is_auto_reply(msg):
            return Feedback(Verdict.AUTO_REPLY, ReportFormat.AUTO_REPLY)
        return Feedback(Verdict.NOT_BOUNCE, ReportFormat.NONE)
    failed = tuple(a for value in mime.headers(msg, "x-failed-recipients", 5)
                   for a in _ADDR.findall(value))
    ignore = frozenset(a.lower() for value in mime.headers(msg, "to", 5)
                       for a in _ADDR.findall(value))
    recipients = textformats.read(fmt, text, subject, failed, ignore)
    original = mime.original_headers(msg)
    if original is None:
        copy = textformats.inline_copy(text)
        original = mime.headers_from_text(copy) if copy else None
    return Feedback(_verdict(recipients), fmt.format, recipients, original=original)


def _verdict(recipients: tuple[RecipientOutcome, ...]) -> Verdict:
    severities = {r.severity for r in recipients}
    if Severity.HARD in severities:
        return Verdict.HARD_BOUNCE
    if Severity.SOFT in severities:
        return Verdict.SOFT_BOUNCE
    return Verdict.NOT_BOUNCE


def locate(feedback: Feedback, key: bytes, envelope_recipient: str | None = None, *,
           prefix: str = "bounces") -> VerpTarget | None:
    """The campaign/contact or message a report belongs to: from the envelope recipient
    the report was sent to (the VERP address), else from the Return-Path of the
    returned original (complaints arrive at the abuse address, not the VERP one)."""
    candidates = [envelope_recipient]
    original: OriginalHeaders | None = feedback.original
    if original is not None:
        candidates.append(original.return_path)
    if feedback.complaint is not None:
        candidates.append(feedback.complaint.original_mail_from)
    for candidate in candidates:
        if candidate:
            target = parse_verp_address(candidate, key, prefix=prefix)
            if target is not None:
                return target
    return None

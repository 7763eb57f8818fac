"""RFC 5965 Abuse Reporting Format: a ``multipart/report; report-type=feedback-report``
whose second part, ``message/feedback-report``, holds the fields of sections 3.1
(required: Feedback-Type, User-Agent, Version) and 3.2 (optional: Original-Mail-From,
Original-Rcpt-To, Arrival-Date, Source-IP, Reporting-MTA, Reported-Domain, ...), and
whose third part is the reported message or its header (section 2).

The reported message's own header fields (Message-ID, List-Id, Feedback-ID, and the
VERP Return-Path) map the complaint back to a campaign and contact, since mailbox
providers often redact the recipient's address.

Feedback types (RFC 5965 7.3 registry): ``abuse``, ``fraud``, ``virus``, ``other``,
and types unknown to us (which section 3.1 says to treat as ``other``) are complaints;
``not-spam`` (a user took a message out of the spam folder) and ``auth-failure``
(RFC 6591, an authentication failure report) are not.
"""

from __future__ import annotations

from email.message import Message

from mailyard.feedback import mime
from mailyard.feedback.model import Complaint

REPORT_TYPES = ("message/feedback-report",)
NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})
MAX_REPEATED = 50


def report_part(msg: Message) -> Message | None:
    for part in mime.walk(msg):
        if mime.content_type(part) in REPORT_TYPES:
            return part
    return None


def parse_report(part: Message) -> Complaint:
    fields: dict[str, list[str]] = {}
    for block in mime.field_blocks(mime.text_of(part))[:1]:
        for name, value in block:
            values = fields.setdefault(name, [])
            if len(values) < MAX_REPEATED:
                values.append(value)

    def first(name: str) -> str | None:
        values = fields.get(name)
        return values[0] if values else None

    return Complaint(
        feedback_type=(first("feedback-type") or "other").lower(),
        user_agent=first("user-agent"),
        original_mail_from=_address(first("original-mail-from")),
        original_rcpt_to=tuple(a for a in map(_address, fields.get("original-rcpt-to", []))
                               if a),
        source_ip=first("source-ip"),
        arrival_date=first("arrival-date") or first("received-date"),
        reporting_mta=first("reporting-mta"),
        reported_domain=tuple(fields.get("reported-domain", [])),
    )


def is_complaint(complaint: Complaint) -> bool:
    return complaint.feedback_type not in NOT_COMPLAINTS


def _address(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value or None

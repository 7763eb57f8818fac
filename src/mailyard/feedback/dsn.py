"""RFC 3464 delivery status notifications: the ``message/delivery-status`` part of a
``multipart/report; report-type=delivery-status`` (RFC 6522), and its RFC 6533
internationalised form ``message/global-delivery-status``.

The status part is one per-message block (RFC 3464 2.2) and one block per recipient
(2.3).  Each recipient block gives Final-Recipient (2.3.2), Original-Recipient
(2.3.1), Action (2.3.3), Status (2.3.4), Remote-MTA (2.3.5) and Diagnostic-Code
(2.3.6); addresses are ``type; address`` (``rfc822;`` or ``utf-8;``).  The severity of
a ``failed`` recipient comes from :mod:`.status`; ``delayed`` is soft; ``delivered``,
``relayed`` and ``expanded`` are no bounce.
"""

from __future__ import annotations

from email.message import Message

from mailyard.feedback import mime
from mailyard.feedback.model import RecipientOutcome, Severity
from mailyard.feedback.status import STATUS, severity

STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
MAX_RECIPIENTS = 100
_NO_BOUNCE_ACTIONS = ("delivered", "relayed", "expanded")


def status_part(msg: Message) -> Message | None:
    for part in mime.walk(msg):
        if mime.content_type(part) in STATUS_TYPES:
            return part
    return None


def parse_status_text(text: str) -> tuple[RecipientOutcome, ...]:
    """The recipients of a delivery-status body (the per-message block is skipped:
    a recipient block is one that has an Action or a Final-Recipient)."""
    out: list[RecipientOutcome] = []
    for block in mime.field_blocks(text):
        fields = dict(reversed(block))  # the first of a repeated field wins
        if "action" not in fields and "final-recipient" not in fields:
            continue
        out.append(_recipient(fields))
        if len(out) >= MAX_RECIPIENTS:
            break
    return tuple(out)


def _recipient(fields: dict[str, str]) -> RecipientOutcome:
    action = fields.get("action", "").split("(")[0].strip().lower() or "failed"
    diagnostic = _typed_value(fields.get("diagnostic-code")) or None
    status_field = fields.get("status", "")
    match = STATUS.search(status_field)
    status = ".".join(match.groups()) if match else None
    if action in _NO_BOUNCE_ACTIONS:
        sev = Severity.NONE
    elif action == "delayed":
        sev = Severity.SOFT
    else:
        sev = severity(status, diagnostic or "")
        if sev is Severity.NONE:  # "failed" with a 2.x.x status: a broken report
            sev = Severity.SOFT
    final = _typed_value(fields.get("final-recipient")) or None
    original = _typed_value(fields.get("original-recipient")) or None
    return RecipientOutcome(
        address=final or original, severity=sev, action=action, status=status,
        diagnostic=diagnostic, original_recipient=original,
        remote_mta=_typed_value(fields.get("remote-mta")) or None)


def _typed_value(value: str | None) -> str:
    """The value of an RFC 3464 ``type; value`` field, without the type and without
    angle brackets around an address."""
    if not value:
        return ""
    kind, semi, rest = value.partition(";")
    text = rest if semi and " " not in kind.strip() else value
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text

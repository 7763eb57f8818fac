"""The values a parsed report becomes.

One :class:`Feedback` per received message: its :class:`Verdict` (what the campaign
engine does with it), the :class:`ReportFormat` it was recognised as (for logs and
tests), one :class:`RecipientOutcome` per recipient the report speaks of, the
complaint fields of an ARF report, and the header fields of the returned original
message that map the report back to a campaign and contact.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(enum.StrEnum):
    """What one recipient's outcome means for the address."""

    HARD = "hard"  # the address does not work: suppress now
    SOFT = "soft"  # a temporary or message-specific failure: count it
    NONE = "none"  # delivered, relayed, expanded: nothing to do


class Verdict(enum.StrEnum):
    HARD_BOUNCE = "hard-bounce"
    SOFT_BOUNCE = "soft-bounce"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto-reply"
    NOT_BOUNCE = "not-bounce"


class ReportFormat(enum.StrEnum):
    DSN = "rfc3464"
    ARF = "rfc5965"
    QMAIL = "qmail"
    EXIM = "exim"
    POSTFIX = "postfix"
    SENDMAIL = "sendmail"
    EXCHANGE = "exchange"
    GMAIL = "gmail"
    GENERIC = "generic"
    AUTO_REPLY = "auto-reply"
    NONE = "none"


@dataclass(frozen=True)
class RecipientOutcome:
    """One recipient of a report.  ``address`` is the failed (final) recipient when the
    report names one; ``status`` is an RFC 3463 enhanced code such as ``5.1.1`` when
    known; ``action`` is the RFC 3464 2.3.3 action (``failed``, ``delayed``, ...)."""

    address: str | None
    severity: Severity
    action: str
    status: str | None = None
    diagnostic: str | None = None
    original_recipient: str | None = None
    remote_mta: str | None = None


@dataclass(frozen=True)
class OriginalHeaders:
    """Header fields of the returned original message (or of the message a complaint
    is about), as far as the report includes them."""

    message_id: str | None = None
    return_path: str | None = None
    list_id: str | None = None
    feedback_id: str | None = None
    sender: str | None = None
    to: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class Complaint:
    """The fields of an RFC 5965 feedback report (section 3.1 and 3.2)."""

    feedback_type: str
    user_agent: str | None = None
    original_mail_from: str | None = None
    original_rcpt_to: tuple[str, ...] = ()
    source_ip: str | None = None
    arrival_date: str | None = None
    reporting_mta: str | None = None
    reported_domain: tuple[str, ...] = ()


@dataclass(frozen=True)
class Feedback:
    verdict: Verdict
    format: ReportFormat
    recipients: tuple[RecipientOutcome, ...] = ()
    complaint: Complaint | None = None
    original: OriginalHeaders | None = None
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (for the CLI and logs)."""
        out: dict[str, object] = {"verdict": str(self.verdict), "format": str(self.format),
                                  "recipients": [_plain(r) for r in self.recipients]}
        if self.complaint is not None:
            out["complaint"] = _plain(self.complaint)
        if self.original is not None:
            out["original"] = _plain(self.original)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def _plain(obj: RecipientOutcome | Complaint | OriginalHeaders) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in vars(obj).items():
        if isinstance(value, tuple):
            out[name] = list(value)
        elif isinstance(value, enum.Enum):
            out[name] = str(value)
        else:
            out[name] = value
    return out

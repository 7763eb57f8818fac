"""From what came back to what to do: a received report (or a delivery result of our
own) becomes a list of :class:`FeedbackAction` values that the feedback service applies
to contacts, suppression and campaign events.

The rules, by the address the report came to (:class:`~.addresses.FeedbackKind`):

- ``unsubscribe+<token>``: a mailto unsubscribe (RFC 2369 3.2, RFC 8058 section 3 asks
  for the mailto form beside the one-click one).  Whatever the body says, the request
  is the message itself; only an auto-reply (an out-of-office answering a message
  nobody wrote to it) is not one.
- ``bounces+<token>``: an RFC 3464 DSN or a text bounce.  Each recipient the report
  names with a hard or soft outcome is an action; for a campaign recipient (one
  contact per token) the worst outcome stands for the message.  An ARF report sent to
  the Return-Path (some providers do) is a complaint about the token's contact.
- the complaint address: ARF reports only.  The contact is the VERP Return-Path (or
  Original-Mail-From) of the reported message; failing that, the campaign from its
  ``Feedback-ID`` and the recipient it names, which the service accepts only when
  that contact was sent that campaign (a report is easy to forge, a token is not).

Auto-replies, replies by people, and unreadable reports give no action, only a note
for the log: nothing here ever answers a report with mail.  Pure.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from mailyard.feedback.addresses import FeedbackAddress, FeedbackKind
from mailyard.feedback.model import Feedback, RecipientOutcome, Severity, Verdict
from mailyard.feedback.verp import CampaignRecipient, VerpTarget

_ADDRESS = re.compile(r"[^\s<>\"(),;:@]+@[A-Za-z0-9.\-\[\]:]+")
MAX_DETAIL = 500


class ActionKind(enum.StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    HARD_BOUNCE = "hard-bounce"
    SOFT_BOUNCE = "soft-bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


class Source(enum.StrEnum):
    """Where an action was learnt: our own delivery, or a report received."""

    DELIVERY = "delivery"
    REPORT = "report"
    MAILTO = "mailto"


@dataclass(frozen=True)
class FeedbackAction:
    kind: ActionKind
    target: VerpTarget | None  # None: a complaint located by Feedback-ID and address
    source: Source
    address: str | None = None  # the recipient the report or attempt is about
    status: str | None = None  # RFC 3463 enhanced status
    detail: str = ""  # the reply text, diagnostic or feedback type
    campaign_id: int | None = None  # from Feedback-ID when there is no target
    report_format: str = ""

    def data(self) -> dict[str, str]:
        """The event's details (stored with the campaign event)."""
        out = {"source": self.source.value}
        if self.status:
            out["status"] = self.status
        if self.detail:
            out["reply"] = self.detail[:MAX_DETAIL]
        if self.report_format:
            out["format"] = self.report_format
        return out


@dataclass(frozen=True)
class Plan:
    actions: tuple[FeedbackAction, ...] = ()
    note: str = ""  # why nothing (or what) is done, for the log


Locate = Callable[..., VerpTarget | None]


def plan(where: FeedbackAddress, feedback: Feedback, locate: Locate) -> Plan:
    """The actions for ``feedback`` received at ``where``; ``locate`` finds a VERP
    target among candidate addresses (:meth:`FeedbackAddresses.locate`)."""
    if not where.valid:
        return Plan(note="token does not verify")
    if where.kind is FeedbackKind.UNSUBSCRIBE:
        if feedback.verdict is Verdict.AUTO_REPLY:
            return Plan(note="auto-reply to the unsubscribe address")
        return Plan((FeedbackAction(ActionKind.UNSUBSCRIBE, where.target, Source.MAILTO),))
    if feedback.verdict is Verdict.COMPLAINT:
        return _complaint(where, feedback, locate)
    if where.kind is FeedbackKind.COMPLAINT:
        return Plan(note=f"{feedback.verdict.value} at the complaint address: ignored")
    if feedback.verdict in (Verdict.HARD_BOUNCE, Verdict.SOFT_BOUNCE):
        return _bounce(where.target, feedback)
    return Plan(note=f"{feedback.verdict.value}: nothing to do")


def _bounce(target: VerpTarget | None, feedback: Feedback) -> Plan:
    failed = [r for r in feedback.recipients if r.severity in (Severity.HARD, Severity.SOFT)]
    if not failed or target is None:
        return Plan(note="no failed recipient")
    fmt = feedback.format.value
    if isinstance(target, CampaignRecipient):
        worst = next((r for r in failed if r.severity is Severity.HARD), failed[0])
        return Plan((_bounce_action(target, worst, fmt),))
    seen: set[str] = set()
    actions = []
    for r in failed:
        if r.address and r.address.lower() not in seen:
            seen.add(r.address.lower())
            actions.append(_bounce_action(target, r, fmt))
    if not actions:
        return Plan(note="the report names no failed address")
    return Plan(tuple(actions))


def _bounce_action(target: VerpTarget, r: RecipientOutcome, fmt: str) -> FeedbackAction:
    kind = ActionKind.HARD_BOUNCE if r.severity is Severity.HARD else ActionKind.SOFT_BOUNCE
    return FeedbackAction(kind, target, Source.REPORT, r.address, r.status,
                          r.diagnostic or r.action, report_format=fmt)


def _complaint(where: FeedbackAddress, feedback: Feedback, locate: Locate) -> Plan:
    complaint = feedback.complaint
    original = feedback.original
    target = where.target
    if target is None:
        target = locate(original.return_path if original else None,
                        complaint.original_mail_from if complaint else None)
    address = None
    if complaint is not None and complaint.original_rcpt_to:
        address = complaint.original_rcpt_to[0]
    elif original is not None and original.to:
        found = _ADDRESS.search(original.to)
        address = found.group(0) if found else None
    detail = complaint.feedback_type if complaint else "abuse"
    fmt = feedback.format.value
    if target is not None:
        return Plan((FeedbackAction(ActionKind.COMPLAINT, target, Source.REPORT, address,
                                    detail=detail, report_format=fmt),))
    campaign_id = campaign_of_feedback_id(original.feedback_id if original else None)
    if campaign_id is None or address is None:
        return Plan(note="complaint names no campaign and contact of ours")
    return Plan((FeedbackAction(ActionKind.COMPLAINT, None, Source.REPORT, address,
                                detail=detail, campaign_id=campaign_id,
                                report_format=fmt),))


def campaign_of_feedback_id(value: str | None) -> int | None:
    """The campaign id of our ``Feedback-ID: <campaign>:<list>:campaign:<host>``."""
    if not value:
        return None
    parts = value.strip().split(":")
    if len(parts) < 3 or parts[2].strip() != "campaign" or not parts[0].strip().isdigit():
        return None
    campaign_id = int(parts[0])
    return campaign_id if 0 < campaign_id < 1 << 63 else None

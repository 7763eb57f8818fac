"""Delivery status notifications: RFC 3464 reports with RFC 3461 NOTIFY/RET/ENVID/ORCPT.

A DSN is a ``multipart/report; report-type=delivery-status`` (RFC 6522) with three
parts: a text for people, a ``message/delivery-status`` part (one per-message block,
then one block per recipient), and the original message (``message/rfc822``) or only
its header (``text/rfc822-headers``).  With non-ASCII addresses the internationalised
forms of RFC 6533 are used: ``message/global-delivery-status`` with ``utf-8``
address types, and ``message/global`` / ``message/global-headers`` when the original
carries UTF-8 header fields.

The report is written as bytes here instead of through ``email.message``: the
original message must be returned byte for byte (the ``email`` package re-folds and
re-encodes what it parses), and it is streamed from the spool file with a size cap.
Tests check the result with the ``email`` parser.

The DSN goes to the original envelope sender with the null reverse-path ``<>``, so a
DSN is never answered by another DSN (RFC 3461 6.2, RFC 5321 4.5.5), and it carries
``Auto-Submitted: auto-replied`` (RFC 3834 5).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO

from mailyard.envelope import Envelope, Recipient
from mailyard.message.headers import clean_value, fold_field, format_date, make_message_id
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import AttemptStatus, DeliveryReply

__all__ = [
    "DEFAULT_MAX_RETURN_SIZE",
    "DsnAction",
    "Notify",
    "ORIGINAL_READ_LIMIT",
    "RecipientReport",
    "action_of",
    "bounce_envelope_and_content",
    "build_report",
    "may_return_full",
    "should_notify",
    "status_of",
]

#: Largest original returned whole; larger ones come back as their header only.
DEFAULT_MAX_RETURN_SIZE = 256 * 1024
#: Largest header block copied into a report.
MAX_HEADER_BLOCK = 256 * 1024
_READ_CHUNK = 64 * 1024
#: Enough of the original for any report (see :func:`read_original`): callers that read
#: it off the event loop read this much and no more.
ORIGINAL_READ_LIMIT = max(DEFAULT_MAX_RETURN_SIZE, MAX_HEADER_BLOCK) + _READ_CHUNK + 1


class Notify(enum.StrEnum):
    """The RFC 3461 NOTIFY keywords (lower case) that ask for a notice."""

    FAILURE = "failure"
    DELAY = "delay"
    SUCCESS = "success"


class DsnAction(enum.StrEnum):
    """RFC 3464 2.3.3."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"

    @property
    def notify_kind(self) -> Notify:
        """The NOTIFY keyword that asks for this action."""
        if self is DsnAction.FAILED:
            return Notify.FAILURE
        if self is DsnAction.DELAYED:
            return Notify.DELAY
        return Notify.SUCCESS


def action_of(status: AttemptStatus, *, relayed: bool = False) -> DsnAction:
    """The one mapping from an attempt's outcome to a DSN action.  Mail handed to
    another MTA over SMTP was relayed, not delivered (RFC 3464 2.3.3, RFC 3461 5.2.2)."""
    if status is AttemptStatus.FAILED:
        return DsnAction.FAILED
    if status is AttemptStatus.DELIVERED:
        return DsnAction.RELAYED if relayed else DsnAction.DELIVERED
    if status is AttemptStatus.DEFERRED:
        return DsnAction.DELAYED
    raise ValueError(f"no DSN reports a {status.value} attempt")


def should_notify(recipient: Recipient, kind: str) -> bool:
    """RFC 3461 4.1: whether ``recipient``'s NOTIFY asks for a ``kind`` notice
    (:class:`Notify`).  Without NOTIFY: failure and delay; NOTIFY=NEVER: nothing."""
    try:
        kind = Notify(kind)
    except ValueError:
        raise ValueError(f"unknown notification kind {kind!r}") from None
    notify = {n.upper() for n in recipient.dsn.notify}
    if "NEVER" in notify:
        return False
    if not notify:
        return kind in (Notify.FAILURE, Notify.DELAY)
    return kind.upper() in notify


def status_of(reply: Reply) -> str:
    """The RFC 3463 status of a reply: its enhanced code, else its class from the
    reply code (RFC 3463 2: 2.0.0, 4.0.0, 5.0.0)."""
    return reply.status or f"{reply.code // 100}.0.0"


@dataclass(frozen=True)
class RecipientReport:
    """One recipient's block in a DSN (RFC 3464 2.3)."""

    recipient: Recipient
    action: DsnAction
    status: str  # "x.y.z"
    diagnostic: str = ""  # the reply, e.g. "550 5.1.1 User unknown"
    remote_mta: str = ""  # host name of the server that gave the reply
    last_attempt: float | None = None
    will_retry_until: float | None = None
    diagnostic_type: str = "X-Mailyard"  # RFC 3464 2.3.6: "smtp" for an SMTP reply

    @classmethod
    def from_reply(cls, recipient: Recipient, action: DsnAction, reply: Reply | DeliveryReply,
                   remote_mta: str = "", last_attempt: float | None = None,
                   will_retry_until: float | None = None) -> RecipientReport:
        if isinstance(reply, Reply):
            reply = DeliveryReply(reply)
        return cls(recipient, action, status_of(reply.reply), str(reply), remote_mta,
                   last_attempt, will_retry_until, "smtp")

    @classmethod
    def from_attempt(cls, recipient: Recipient, status: AttemptStatus, reply: DeliveryReply,
                     relay: str = "", last_attempt: float | None = None, *,
                     relayed: bool = False) -> RecipientReport:
        """From a delivery attempt's outcome (see :func:`action_of`)."""
        return cls.from_reply(recipient, action_of(status, relayed=relayed), reply, relay,
                              last_attempt)

    @property
    def diagnostic_field(self) -> str:
        """RFC 3464 2.3.6: ``smtp; <reply>`` for SMTP replies, an X- type otherwise."""
        if not self.diagnostic:
            return ""
        return f"{self.diagnostic_type}; {self.diagnostic}"


def _needs_utf8(envelope: Envelope, reports: Sequence[RecipientReport]) -> bool:
    values = [envelope.sender, envelope.envid]
    for r in reports:
        values += [r.recipient.address, r.recipient.dsn.orcpt]
    return not all(v.isascii() for v in values)


def _address_field(address: str) -> str:
    """RFC 3464 2.3.2 / RFC 6533 3: ``rfc822; a@b``, or ``utf-8; ...`` if non-ASCII."""
    return f"{'rfc822' if address.isascii() else 'utf-8'}; {address}"


def _orcpt_field(orcpt: str) -> str:
    addr_type, sep, address = orcpt.partition(";")
    if not sep:
        return _address_field(orcpt.strip())
    return f"{addr_type.strip()}; {address.strip()}"


def _field(name: str, value: str, utf8: bool) -> str:
    if not utf8:
        value = value.encode("ascii", "replace").decode("ascii")
    return fold_field(name, value)


def _status_part(hostname: str, envelope: Envelope, reports: Sequence[RecipientReport],
                 arrival: float, qid: str, utf8: bool) -> str:
    blocks = [_field("Reporting-MTA", f"dns; {hostname}", utf8)]
    if qid:
        blocks[0] += _field("X-Mailyard-Queue-ID", qid, utf8)
    if envelope.envid:
        blocks[0] += _field("Original-Envelope-Id", envelope.envid, utf8)
    if arrival:
        blocks[0] += _field("Arrival-Date", format_date(arrival), utf8)
    for r in reports:
        block = ""
        if r.recipient.dsn.orcpt:
            block += _field("Original-Recipient", _orcpt_field(r.recipient.dsn.orcpt), utf8)
        block += _field("Final-Recipient", _address_field(r.recipient.address), utf8)
        block += _field("Action", r.action.value, utf8)
        block += _field("Status", r.status, utf8)
        if r.remote_mta:
            block += _field("Remote-MTA", f"dns; {r.remote_mta}", utf8)
        if r.diagnostic_field:
            block += _field("Diagnostic-Code", r.diagnostic_field, utf8)
        if r.last_attempt:
            block += _field("Last-Attempt-Date", format_date(r.last_attempt), utf8)
        if r.action is DsnAction.DELAYED and r.will_retry_until:
            block += _field("Will-Retry-Until", format_date(r.will_retry_until), utf8)
        blocks.append(block)
    return "\r\n".join(blocks)


_INTRO = {
    DsnAction.FAILED: "Your message could not be delivered to the recipients below.\r\n"
                      "This is a permanent error; the mail system will not try again.",
    DsnAction.DELAYED: "Your message has not been delivered yet to the recipients below.\r\n"
                       "The mail system keeps trying; you do not need to send it again.",
    DsnAction.DELIVERED: "Your message was delivered to the recipients below\r\n"
                         "(you asked to be notified).",
}
_SUBJECT = {
    DsnAction.FAILED: "Undelivered Mail Returned to Sender",
    DsnAction.DELAYED: "Delayed Mail (still being retried)",
    DsnAction.DELIVERED: "Successful Mail Delivery Report",
}


def _headline_action(action: DsnAction) -> DsnAction:
    return action if action in (DsnAction.FAILED, DsnAction.DELAYED) else DsnAction.DELIVERED


def _human_part(hostname: str, reports: Sequence[RecipientReport], returned: str,
                retry_until: float | None) -> str:
    lines = [f"This is the mail system at {hostname}.", ""]
    for action in (DsnAction.FAILED, DsnAction.DELAYED, DsnAction.DELIVERED):
        group = [r for r in reports if _headline_action(r.action) is action]
        if not group:
            continue
        lines.append(_INTRO[action])
        if action is DsnAction.DELAYED and retry_until:
            lines.append(f"It will give up after {format_date(retry_until)}.")
        lines.append("")
        for r in group:
            where = f" (host {r.remote_mta})" if r.remote_mta else ""
            detail = clean_value(r.diagnostic) or f"status {r.status}"
            lines.append(f"<{r.recipient.address}>{where}: {detail}")
        lines.append("")
    lines.append(returned)
    return "\r\n".join(lines) + "\r\n"


def _split_header(data: bytes) -> tuple[bytes, bool]:
    """(header block, complete?) of the start of a message."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = data.find(sep)
        if end >= 0:
            return data[: end + len(sep) // 2], True
    return data, False


def read_original(content: BinaryIO | None, *, want_full: bool,
                  max_size: int) -> tuple[bytes, bool]:
    """(bytes to return, whole message?) read from ``content`` without ever holding
    more than ``max_size`` (or the header block cap) in memory."""
    if content is None:
        return b"", False
    limit = max(max_size, MAX_HEADER_BLOCK) if want_full else MAX_HEADER_BLOCK
    data = b""
    while len(data) <= limit:
        chunk = content.read(_READ_CHUNK)
        if not chunk:
            if want_full and len(data) <= max_size:
                return data, True
            break
        data += chunk
        if not want_full and _split_header(data)[1]:
            break
    return _split_header(data[:MAX_HEADER_BLOCK])[0], False


def _original_part(original: bytes, full: bool, smtputf8: bool) -> str:
    if not original:
        return ""
    head = _split_header(original)[0]
    utf8_head = smtputf8 and not head.isascii()
    if full:
        ctype = "message/global" if utf8_head else "message/rfc822"
        desc = "Undelivered Message"
    else:
        ctype = "message/global-headers" if utf8_head else "text/rfc822-headers"
        desc = "Undelivered Message Headers"
    cte = "7bit" if original.isascii() else "8bit"
    return (f"Content-Description: {desc}\r\nContent-Type: {ctype}\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n")


def may_return_full(envelope: Envelope, reports: Sequence[RecipientReport],
                    trusted: bool = False) -> bool:
    """Backscatter: the sender of mail that arrived without authentication may be
    forged, so its failure notices carry the header only (as with RET=HDRS), whatever
    RET says; so do notices about a mail loop (5.4.6), which a crafted header can
    cause.  Mail from an authenticated submitter (or a local program) gets it whole."""
    return ((trusted or bool(envelope.auth_user))
            and not any(r.status == "5.4.6" for r in reports))


def build_report(hostname: str, envelope: Envelope, reports: Sequence[RecipientReport],
                 content: BinaryIO | None, size: int = 0, arrival: float = 0.0, *,
                 now: float, retry_until: float | None = None, qid: str = "",
                 max_return_size: int = DEFAULT_MAX_RETURN_SIZE,
                 trusted: bool = False) -> tuple[Envelope, bytes]:
    """The DSN for ``reports`` about the message ``envelope``/``content``.

    Returns the envelope to queue it under (null sender, to the original sender) and
    its bytes.  The whole original is returned only in a report with failures, when
    RET is not HDRS (RFC 3461 4.3), the body is not BINARYMIME, it fits
    ``max_return_size`` and :func:`may_return_full` allows it; otherwise its header.
    ``size`` (the spool's content size) lets a large original be known too big without
    reading it.  ``retry_until`` fills Will-Retry-Until for delays.  The caller decides
    who gets notified (:func:`should_notify`) and never reports to a null sender.
    """
    if not envelope.sender:
        raise ValueError("no DSN for a message with a null sender (RFC 3461 6.2)")
    if not reports:
        raise ValueError("a DSN needs at least one recipient report")
    reports = [replace(r, will_retry_until=r.will_retry_until or retry_until)
               if r.action is DsnAction.DELAYED else r for r in reports]
    want_full = (any(r.action is DsnAction.FAILED for r in reports)
                 and envelope.ret.upper() != "HDRS"
                 and envelope.body_type.upper() != "BINARYMIME"
                 and not size > max_return_size
                 and may_return_full(envelope, reports, trusted))
    original, full = read_original(content, want_full=want_full, max_size=max_return_size)
    utf8 = _needs_utf8(envelope, reports)
    returned = ("The original message is attached." if full else
                "The header of the original message is attached." if original else
                "The original message is not available.")
    boundary = f"{secrets.token_hex(12)}/{hostname}"
    headline = next(a for a in (DsnAction.FAILED, DsnAction.DELAYED, DsnAction.DELIVERED)
                    if any(_headline_action(r.action) is a for r in reports))
    head = (
        fold_field("From", f'"Mail Delivery System" <MAILER-DAEMON@{hostname}>')
        + _field("To", envelope.sender, True)
        + fold_field("Subject", _SUBJECT[headline])
        + fold_field("Date", format_date(now))
        + fold_field("Message-ID", make_message_id(hostname, now))
        + fold_field("Auto-Submitted", "auto-replied")
        + fold_field("MIME-Version", "1.0")
        + f'Content-Type: multipart/report; report-type=delivery-status;\r\n'
          f' boundary="{boundary}"\r\n'
    )
    human = _human_part(hostname, reports, returned, retry_until)
    status = _status_part(hostname, envelope, reports, arrival, qid, utf8)
    status_type = "message/global-delivery-status" if utf8 else "message/delivery-status"
    text = (
        head + "\r\nThis is a MIME-encapsulated message (RFC 3464 delivery status).\r\n\r\n"
        + f"--{boundary}\r\nContent-Description: Notification\r\n"
        + "Content-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Transfer-Encoding: {'7bit' if human.isascii() else '8bit'}\r\n\r\n"
        + human + f"\r\n--{boundary}\r\nContent-Description: Delivery report\r\n"
        + f"Content-Type: {status_type}\r\n"
        + ("Content-Transfer-Encoding: 8bit\r\n" if utf8 else "")
        + "\r\n" + status
    )
    body = text.encode("utf-8")
    part = _original_part(original, full, envelope.smtputf8)
    if part:
        body += f"\r\n--{boundary}\r\n{part}".encode("ascii") + original
        if not original.endswith(b"\r\n"):
            body += b"\r\n"
    body += f"\r\n--{boundary}--\r\n".encode("ascii")
    dsn_envelope = Envelope(
        sender="",
        recipients=(Recipient(envelope.sender),),
        body_type="7BIT" if body.isascii() else "8BITMIME",
        smtputf8=not envelope.sender.isascii(),
        received_at=now,
    )
    return dsn_envelope, body


def bounce_envelope_and_content(hostname: str, envelope: Envelope,
                                reports: Sequence[RecipientReport], content: BinaryIO | None,
                                size: int = 0, arrival: float = 0.0, *, now: float,
                                retry_until: float | None = None, qid: str = "",
                                max_return_size: int = DEFAULT_MAX_RETURN_SIZE,
                                ) -> tuple[Envelope, bytes] | None:
    """Like :func:`build_report`, after applying the rules on who gets a notice: the
    reports whose recipients' NOTIFY asks for them, none for a null sender.  None when
    nothing is to be sent."""
    if not envelope.sender:
        return None
    wanted = [r for r in reports if should_notify(r.recipient, r.action.notify_kind)]
    if not wanted:
        return None
    return build_report(hostname, envelope, wanted, content, size, arrival, now=now,
                        retry_until=retry_until, qid=qid, max_return_size=max_return_size)

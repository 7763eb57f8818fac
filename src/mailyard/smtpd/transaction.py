"""One SMTP transaction (MAIL to end of data) as smtpd keeps it: what the log line
reports, and the message on its way through ingest.

The adapter feeds it; it owns the ingest writer and the "what went wrong" state, so
the adapter never touches a writer directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailyard.envelope import Envelope
from mailyard.ingest.api import Ingest, IngestWriter, Submission
from mailyard.message.headerblock import EMPTY as NO_HEADER
from mailyard.message.headerblock import HeaderSummary, inspect_header
from mailyard.metrics import MESSAGES_REJECTED
from mailyard.obs import Metrics, log_event
from mailyard.proto.smtp.replies import (
    REPLY_ADDRESS_LITERAL_DENIED,
    REPLY_AUTH_REQUIRED,
    REPLY_BARE_LINE_ENDING,
    REPLY_DELIVERED_TO_LOOP,
    REPLY_DISK_FULL,
    REPLY_HEADER_FROM_NOT_OWNED,
    REPLY_LINE_TOO_LONG,
    REPLY_LOOP,
    REPLY_MESSAGE_TOO_BIG,
    REPLY_MUST_STARTTLS,
    REPLY_RELAY_DENIED,
    REPLY_SENDER_NOT_OWNED,
    REPLY_STORAGE_ERROR,
    REPLY_TEMP_LOOKUP,
    REPLY_UNKNOWN_USER,
    Reply,
)
from mailyard.queue.api import StorageError
from mailyard.sending.limiter import SendAllowance
from mailyard.spf.result import SpfResult

log = logging.getLogger("mailyard.smtpd")

REJECT_REASONS: dict[Reply, str] = {
    REPLY_RELAY_DENIED: "relay_denied", REPLY_UNKNOWN_USER: "unknown_user",
    REPLY_SENDER_NOT_OWNED: "sender_not_owned", REPLY_MUST_STARTTLS: "tls_required",
    REPLY_AUTH_REQUIRED: "auth_required", REPLY_DISK_FULL: "disk_full",
    REPLY_STORAGE_ERROR: "storage_error", REPLY_MESSAGE_TOO_BIG: "too_big",
    REPLY_BARE_LINE_ENDING: "bare_line_ending", REPLY_LINE_TOO_LONG: "line_too_long",
    REPLY_LOOP: "loop", REPLY_TEMP_LOOKUP: "lookup_failure",
    REPLY_DELIVERED_TO_LOOP: "loop", REPLY_HEADER_FROM_NOT_OWNED: "header_from_not_owned",
    REPLY_ADDRESS_LITERAL_DENIED: "address_literal",
}


def reason_for(reply: Reply) -> str:
    if reply.code == 451 and reply.status == "4.7.0":
        return "send_limit"  # mailyard.sending.limiter
    return REJECT_REASONS.get(reply) or f"{reply.code}_{reply.status or 'none'}"


@dataclass
class InboundTransaction:
    """From MAIL to the end of the content."""

    sender: str
    client: str = ""  # the client's IP address, for the log lines
    recipients: list[str] = field(default_factory=list)
    last_refusal: Reply | None = None
    data_started: bool = False
    envelope: Envelope | None = None
    writer: IngestWriter | None = None
    write_failed: bool = False
    header: HeaderSummary = NO_HEADER
    allowance: SendAllowance | None = None  # the sender's sending limits, read at MAIL
    # SPF of the MAIL FROM identity (port 25; None: not checked), passed on to ingest
    # in the Submission for the Authentication-Results header (RFC 8601 2.7.2).
    spf_result: SpfResult | None = None
    spf_helo_result: SpfResult | None = None  # the HELO identity, checked separately
    log_fields: dict[str, str] = field(default_factory=dict)  # ingest's, for the log line

    @property
    def unfinished(self) -> bool:
        """Worth a log line when it ends without a message: refused or cut short."""
        return self.data_started or self.last_refusal is not None

    def open(self, ingest: Ingest, submission: Submission) -> None:
        """Start the message (raises StorageError or OSError; nothing is left open)."""
        self.data_started = True
        self.envelope = submission.envelope
        self.log_fields = submission.log_fields
        self.writer = ingest.open(submission)
        self.write_failed = False
        self.header = NO_HEADER

    def header_section(self, block: bytes, complete: bool) -> None:
        self.header = inspect_header(block, complete)
        if self.writer is not None and not self.write_failed:
            self._guard(self.writer.header, block, self.header)

    def write(self, data: bytes) -> None:
        writer = self.writer
        if writer is None or self.write_failed:
            return
        try:  # the hot path: no extra call for the guard
            writer.write(data)
        except (StorageError, OSError) as exc:
            self._failed(exc)

    def _guard(self, method: Callable[..., None], *args: object) -> None:
        try:
            method(*args)
        except (StorageError, OSError) as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        writer = self.writer
        log_event(log, "spool write failed", level=logging.ERROR, client=self.client,
                  qid=writer.qid if writer else "", error=str(exc))
        self.write_failed = True
        if writer is not None:
            writer.abort()

    def take_writer(self) -> IngestWriter | None:
        """The writer to commit, or None when there is nothing (left) to commit."""
        writer, self.writer = self.writer, None
        return None if self.write_failed else writer

    def discard(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.abort()

    def log(self, metrics: Metrics, client: str, helo: str, result: str,
            reply: Reply | None, qid: str = "", size: int = 0) -> None:
        if result not in ("queued", "delivered"):
            metrics.inc(MESSAGES_REJECTED,
                        reason=reason_for(reply) if reply else result)
        # Any: log_event's named parameters (exc_info) must not narrow the field values.
        extra: dict[str, Any] = {}
        if self.spf_result is not None:
            extra["spf"] = str(self.spf_result.status)
        if self.spf_helo_result is not None:
            extra["spf_helo"] = str(self.spf_helo_result.status)
        extra.update(self.log_fields)
        log_event(log, "smtp transaction", qid=qid, client=client, helo=helo,
                  sender=self.sender, to=",".join(self.recipients), size=size,
                  result=result, reply=str(reply) if reply else "", **extra)

"""Events the sans-IO SMTP client hands to its I/O adapter, and the results it reports.

The adapter calls :meth:`SmtpClient.next_event` until it gets a result: :class:`Send`,
:class:`NeedData`, :class:`StartTls` and :class:`NeedContent` are things to do;
:class:`SessionReady`, :class:`SessionFailed`, :class:`TransactionDone`, :class:`Closed`
and :class:`Idle` end a round.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailyard.envelope import Recipient
from mailyard.proto.smtp.replies import Reply


class Phase(enum.Enum):
    """Which RFC 5321 4.5.3.2 timeout applies while waiting for a reply."""

    COMMAND = "command"  # greeting, EHLO, MAIL, RCPT, DATA initiation, BDAT chunks
    DATA_END = "data_end"  # the reply to the final "." or BDAT LAST


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class NeedData:
    phase: Phase


@dataclass(frozen=True)
class StartTls:
    pass


@dataclass(frozen=True)
class NeedContent:
    pass


@dataclass(frozen=True)
class Idle:
    pass


@dataclass(frozen=True)
class SessionReady:
    """Greeting, EHLO, STARTTLS and AUTH are done (or an RSET probe succeeded)."""


@dataclass(frozen=True)
class SessionFailed:
    reply: Reply
    stage: str  # greeting, ehlo, helo, starttls, tls, auth, rset
    tls_failure: bool = False  # the handshake itself failed (RFC 3207 practice: retry in clear)

    @property
    def permanent(self) -> bool:
        """Only a 5xx greeting or HELO says "this host will never take mail"; refused
        STARTTLS or AUTH, and connection trouble, are worth another try later."""
        return self.reply.is_permanent and self.stage in ("greeting", "helo")


@dataclass(frozen=True)
class RecipientResult:
    recipient: Recipient
    reply: Reply  # 2xx delivered, 4xx try again later, 5xx failed
    retry_elsewhere: bool = False  # a session-level problem: another host may take it


@dataclass(frozen=True)
class TransactionResult:
    reply: Reply  # the reply that decided the message as a whole
    recipients: tuple[RecipientResult, ...]  # in the order given
    content_sent: bool = False


@dataclass(frozen=True)
class TransactionDone:
    result: TransactionResult


@dataclass(frozen=True)
class Closed:
    pass


Event = (Send | NeedData | StartTls | NeedContent | Idle | SessionReady | SessionFailed
         | TransactionDone | Closed)


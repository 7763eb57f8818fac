"""Events the SMTP server core hands to its I/O adapter.

Events marked *decision* pause the core: nothing further is read until the adapter
answers with :meth:`ServerConnection.accept` / :meth:`ServerConnection.reject` (or
:meth:`ServerConnection.accept_scram` for :class:`ScramLookup`).  That keeps replies in
command order under PIPELINING (RFC 2920) while the answers may come asynchronously
(a directory lookup, a password hash in a thread, an fsync).  The other events are
information the adapter acts on without answering.

Two sentinels end a round of ``next_event()`` calls: :data:`NEED_DATA` (feed more
bytes) and :data:`PAUSED` (a decision is outstanding, or STARTTLS is waiting for the
handshake); :data:`CLOSED` says the connection is over once the output is flushed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailyard.envelope import DsnRecipient
from mailyard.proto.sentinels import CLOSED as CLOSED
from mailyard.proto.sentinels import NEED_DATA as NEED_DATA
from mailyard.proto.sentinels import PAUSED as PAUSED
from mailyard.proto.sentinels import Sentinel as Sentinel
from mailyard.proto.smtp.address import Mailbox
from mailyard.proto.smtp.replies import Reply


class Event:
    """Base class; ``needs_decision`` tells the adapter it must answer."""

    __slots__ = ()
    needs_decision = False


class Decision(Event):
    __slots__ = ()
    needs_decision = True


# --- decisions ------------------------------------------------------------------

@dataclass(slots=True)
class Helo(Decision):
    """EHLO (``extended``) or HELO.  Accept: the core sends the greeting reply."""

    name: str
    extended: bool


@dataclass(slots=True)
class MailFrom(Decision):
    """MAIL FROM, syntax and parameters already checked (RFC 5321 4.1.1.2)."""

    address: str  # "" for the null reverse-path
    mailbox: Mailbox | None
    size: int | None  # SIZE= (RFC 1870)
    body: str  # 7BIT, 8BITMIME or BINARYMIME (RFC 6152, RFC 3030)
    smtputf8: bool  # RFC 6531
    ret: str  # RFC 3461 RET=, "" when absent
    envid: str  # RFC 3461 ENVID=, xtext-decoded


@dataclass(slots=True)
class RcptTo(Decision):
    """RCPT TO, syntax and parameters already checked (RFC 5321 4.1.1.3).  Policy may
    rewrite ``address`` before accepting (``<postmaster>`` gets our domain)."""

    address: str
    mailbox: Mailbox
    dsn: DsnRecipient = field(default_factory=DsnRecipient)


@dataclass(slots=True)
class DataStart(Decision):
    """DATA, or the first BDAT of a transaction: open storage for the content.
    Accept: DATA gets 354; BDAT's chunk is read as content."""

    chunking: bool


@dataclass(slots=True)
class MessageComplete(Decision):
    """The content is complete and passed every check.  Accept with the reply to send
    (``250 ... queued as``) once it is on stable storage, or reject."""

    size: int


@dataclass(slots=True)
class AuthCredentials(Decision):
    """PLAIN or LOGIN credentials to verify (RFC 4616, draft-murchison-sasl-login)."""

    mechanism: str
    username: str
    password: str


@dataclass(slots=True)
class ScramLookup(Decision):
    """SCRAM-SHA-256 needs the stored credentials of ``username`` (RFC 5802 5)."""

    username: str


@dataclass(slots=True)
class StartTlsRequested(Decision):
    """STARTTLS (RFC 3207).  Accept: the core sends 220, discards every byte after the
    command, and waits for :meth:`ServerConnection.tls_established`."""


@dataclass(slots=True)
class Vrfy(Decision):
    """VRFY (RFC 5321 3.5.3), only when the listener passes VRFY to policy."""

    argument: str


# --- information ------------------------------------------------------------------

@dataclass(slots=True)
class DataChunk(Event):
    """Message content, dot-stuffing removed, in arrival order."""

    data: bytes


@dataclass(slots=True)
class HeaderSection(Event):
    """The message's header section (RFC 5322 2.1), once per message: as soon as the
    empty line after it was read, before the :class:`DataChunk` that holds that line,
    or just before :class:`MessageComplete` for content without a body.  ``complete``
    is False when it was cut at ``content.MAX_HEADER_BLOCK`` octets."""

    block: bytes
    complete: bool


@dataclass(slots=True)
class MessageRefused(Event):
    """The content failed a check; the reply is already queued and the transaction
    is over.  The adapter discards what it stored."""

    reply: Reply
    size: int


@dataclass(slots=True)
class TransactionAborted(Event):
    """A transaction ended without a message (RSET, EHLO, QUIT, a refused BDAT,
    connection loss...).  The adapter discards anything it stored."""

    reason: str


@dataclass(slots=True)
class AuthResult(Event):
    """How an AUTH exchange ended (for metrics and logs); ``reply``: the refusal sent."""

    mechanism: str
    username: str
    success: bool
    reply: Reply | None = None

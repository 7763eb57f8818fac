"""The one way into the queue.

Every producer of mail (smtpd on 25/587/465, ``mailyard send``/``sendmail`` and the
maildrop pickup, bounces and delay notices, alias forwards, and later the HTTP API and
campaigns) hands its message to an :class:`Ingest`, like Postfix's cleanup(8) or
Stalwart's ``queue_message``; nobody else opens a queue writer.  Ingest owns what is
done to every message on its way in: the trace field (``Received:``) built in one
place, the submission fixes (missing ``Date:`` and ``Message-ID:``, RFC 6409 8), the
loop and size checks, and the hooks where ``Authentication-Results``, DKIM signing and
SRS plug in.

Headers computed after the body.  A DKIM signature depends on the body hash, which is
known only when the last byte has been streamed to disk.  Such fields are *appended
to the record at commit* (the queue record's ``prepend`` section, written with the
trailer) and put in front of the content by whoever reads the message back
(:meth:`mailyard.queue.api.WorkQueue.open_content`), so the body is never copied or
rewritten.  A hook that needs the header section returns its fields from
:meth:`IngestHook.at_commit`; one that needs the body (DKIM signing, see
:mod:`mailyard.dkim.hook`) is a :class:`StreamingHook`, whose
:class:`ContentObserver` is fed the content as it is stored and returns its fields
at commit, so the body is read once, while it streams.

What ingest does, by origin (see :mod:`mailyard.ingest.pipeline`):

* the trace field: ``INBOUND``/``SUBMISSION`` get the SMTP ``Received:`` field,
  ``LOCAL`` the "from user NAME" one (:mod:`mailyard.message.trace`);
* ``SUBMISSION`` and ``LOCAL``: ``Date:`` and ``Message-ID:`` when missing.  The
  content is held until the end of its header section, then the fields go out right
  after the trace field; the body streams through untouched;
* the whole-message origins (``submit``): the size limit and the ``Received:`` count
  (a mail loop, RFC 5321 6.3) where no SMTP core checked them while streaming;
* at commit, the hooks' fields go to the record's ``prepend`` section;
* at commit, a message the direct delivery service takes (``[delivery]
  direct_local``: one recipient, one local mailbox) goes into that mailbox and its
  queue record is discarded; see :class:`DirectDelivery`;
* the delivery pool (``Envelope.pool``, kept in the queue record): the producer's
  choice (``Submission.pool``), else for ``SUBMISSION``, ``LOCAL``, ``API`` and
  ``CAMPAIGN`` the pool whose ``senders`` list the envelope sender, its domain or the
  login user; bounces and forwards go through the default pool.

Relaying while the sender waits (end-to-end transports) is not ingest's business:
smtpd hands the committed message to a :class:`DeliverNow` service, which delivery
implements with the dispatcher's claim and record path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from mailyard.envelope import Envelope
from mailyard.message.headerblock import HeaderSummary
from mailyard.proto.smtp.replies import Reply
from mailyard.spf.result import SpfResult


class Origin(enum.StrEnum):
    """Where a message came from: decides which fixes and checks ingest applies."""

    INBOUND = "inbound"  # port 25, from another server
    SUBMISSION = "submission"  # 587/465, an authenticated user
    LOCAL = "local"  # mailyard send / sendmail / maildrop pickup, a local user
    DSN = "dsn"  # a bounce, delay or success notice we generate
    FORWARD = "forward"  # an alias's copy to an external address
    API = "api"  # the HTTP API
    CAMPAIGN = "campaign"  # bulk sending


@dataclass(frozen=True)
class Submission:
    """What the producer knows about a message before its content."""

    origin: Origin
    envelope: Envelope
    # Transport facts for the trace field (empty where they do not apply).
    protocol: str = ""  # "ESMTPSA", "ESMTPS", "ESMTP", "SMTP"... (RFC 3848); "" for local
    tls: str = ""  # "TLSv1.3 TLS_AES_256_GCM_SHA384" or ""
    local_user: str = ""  # the Unix user of a local submission
    # The delivery pool the producer chose (a campaign, an API key); "" lets ingest
    # route by sender (``delivery.pools[].senders``), else the default pool.
    pool: str = ""
    # The SPF result of the MAIL FROM identity (port 25), for Authentication-Results.
    spf: SpfResult | None = None
    spf_helo: SpfResult | None = None  # the HELO identity, when checked separately
    # CAMPAIGN only: DKIM-Signature fields the producer made over the content with our
    # keys; ingest checks them and stores them instead of signing (mailyard.dkim.hook).
    dkim: bytes = b""
    # What ingest's hooks found about the message (the inbound checks' results), for
    # the producer's log line of the transaction: smtpd adds them to its line.
    log_fields: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


class IngestRefused(Exception):
    """Ingest refuses the message (loop, too big, policy); ``reply`` says why in SMTP
    terms (a :class:`mailyard.proto.smtp.replies.Reply`)."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        super().__init__(str(reply))


class IngestWriter(Protocol):
    """Streams one message through ingest into the queue."""

    qid: str  # the queue id, known from the start (it goes into the Received field)
    # After commit: True when the message went straight into a local mailbox (see
    # :class:`DirectDelivery`) instead of into the queue.
    delivered: bool

    def write(self, data: bytes) -> None:
        """Content bytes as received (CRLF line ends).  Raises StorageError."""
        ...

    def header(self, block: bytes, summary: HeaderSummary) -> None:
        """The producer's parser found the end of the header section (``block``, as
        summarised by :func:`~mailyard.message.headerblock.inspect_header`): called at
        most once, before the content that follows the header section is written.
        A producer that does not call it gets its held content scanned for the end of
        the header at commit (fine for a message that is in memory anyway).
        Raises StorageError."""
        ...

    async def commit(self) -> str:
        """Run the at-commit hooks, make the message durable and return its queue id.
        Raises IngestRefused or StorageError."""
        ...

    def abort(self) -> None:
        """Discard everything written so far (idempotent)."""
        ...


class Ingest(Protocol):
    def open(self, submission: Submission) -> IngestWriter:
        """Start a message whose content is streamed (SMTP DATA/BDAT)."""
        ...

    async def submit(self, submission: Submission, content: bytes) -> str:
        """A whole message at once (bounces, forwards, the CLI); returns the queue id.
        Raises IngestRefused or StorageError."""
        ...

    def check(self, submission: Submission, content: bytes) -> None:
        """The checks :meth:`submit` makes on a message given whole, for a producer
        that must reserve the queue id with :meth:`open` first (the maildrop pickup).
        Raises IngestRefused."""
        ...


class IngestHook(Protocol):
    """A stage that sees every message of the origins it is registered for."""

    def at_commit(self, submission: Submission, header: bytes) -> bytes:
        """Header fields to put in front of the message, computed once the whole
        message is known (``header`` is its original header section)."""
        ...


class ContentObserver(Protocol):
    """Sees one message's content exactly as it is stored (trace field and submission
    fixes included), in pieces, then says what to prepend (a DKIM signature, whose body
    hash is computed as the content streams by, so the body is read only once)."""

    def feed(self, data: bytes) -> None: ...

    async def fields(self) -> bytes:
        """Header fields for the prepend section, at commit (may be empty).  Async, so
        an observer may look things up (the DNS, for a check that needs keys)."""
        ...


class StreamingHook(Protocol):
    """A stage that watches the content of the messages it chooses while it streams."""

    def observe(self, submission: Submission) -> ContentObserver | None:
        """An observer for this message, or None to leave it alone."""
        ...


class HeaderRewrite(Protocol):
    """Removes, from the header section of the messages it applies to, the fields
    that only we may write (an ``Authentication-Results`` claiming our authserv-id, the
    local agent's folder instruction).  Ingest holds the content of such messages
    until the end of the header section, so the body still streams through."""

    def applies(self, submission: Submission) -> bool: ...

    def rewrite(self, submission: Submission, block: bytes) -> bytes:
        """The header section as it is to be stored (``block`` ends with the CRLF of
        its last field)."""
        ...


class DirectDelivery(Protocol):
    """Final delivery instead of queueing (``[delivery] direct_local``): at commit,
    once the prepend fields are known, ingest offers the whole message to this service
    and, when it says delivered, discards the queue record it was writing.  Anything
    else (not applicable, a failure of any kind) and the message is committed to the
    queue as usual, so what the service cannot do the queue does, exactly as before."""

    def applies(self, submission: Submission) -> bool:
        """Worth trying for this message (cheap: origin, envelope, settings, cached
        lookups; called on the event loop)?"""
        ...

    async def deliver(self, qid: str, envelope: Envelope, content: bytes) -> bool:
        """Deliver ``content`` (the prepend fields included) for every recipient of
        ``envelope``; True only when all of it is durably stored, False when nothing
        was (the caller then queues the message).  Never raises for an outcome."""
        ...


class DeliverNow(Protocol):
    """Delivery while the sender waits (transports with ``mode = "end-to-end"``): the
    message is already committed to the queue; this claims it, delivers it and records
    the outcome through the same path as the dispatcher."""

    def applies(self, envelope: Envelope) -> bool:
        """Should this message be delivered now rather than only queued?"""
        ...

    async def deliver(self, qid: str, envelope: Envelope) -> Reply | None:
        """The reply for the sender, or None for the ordinary "queued" answer (the
        entry stays in the queue for the dispatcher)."""
        ...

    async def close(self) -> None: ...

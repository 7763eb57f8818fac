"""The queue's storage interfaces, split by role.

Everything above the queue talks to these protocols only:

* :class:`QueueWriter` (producers: ingest, hence smtpd, the CLI, bounces, forwards,
  later the HTTP API and campaigns) and :class:`CapacityProbe` (smtpd's free-space check);
* :class:`WorkQueue` (the dispatcher: claim due work under a lease, read content,
  record outcomes, postpone a destination's mail);
* :class:`QueueAdmin` (the operator: list, hold, release, delete, flush, stats).

The embedded implementation keeps message files on local disk with an SQLite index
(:class:`mailyard.queue.spool.FileSpool`, blocking) and serves the asynchronous
protocols from its own ``queue-io`` thread (:class:`mailyard.queue.threaded.ThreadedSpool`).
A PostgreSQL implementation will sit behind the same protocols, so nothing here may
assume a single process or a single machine: work is *claimed* with a lease, and
results are recorded per recipient.  Methods that may block are ``async``; nobody
probes an implementation for optional methods.

Outcomes are typed end to end: a :class:`DeliveryReply` (the SMTP :class:`Reply` plus
who said it) travels from the SMTP client and the local delivery agent through
:class:`Outcome` into the index (serialised there once, as JSON) and back out in
:attr:`QueuedRecipient.last_reply`, to DSNs, logs and ``mailyard queue``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from mailyard.envelope import Envelope
from mailyard.proto.smtp.replies import Reply

#: How long a claimed entry stays leased to its claimer (renewed by claiming again).
LEASE_SECONDS = 900.0


class StorageError(Exception):
    """Writing to or reading from the queue's storage failed (disk full, I/O error,
    a corrupt record).  smtpd answers 451 4.3.0 and keeps the message un-acknowledged."""


class RecipientState(enum.StrEnum):
    """Where a queued recipient stands (stored in the index)."""

    PENDING = "pending"  # never tried yet
    DEFERRED = "deferred"  # tried, temporary failure, next_attempt set
    DELIVERED = "delivered"  # final: accepted by the next hop or mailbox
    FAILED = "failed"  # final: permanent failure or lifetime exceeded (bounce due/sent)
    HELD = "held"  # operator hold: not tried until released

    @property
    def is_final(self) -> bool:
        return self in (RecipientState.DELIVERED, RecipientState.FAILED)


class AttemptStatus(enum.StrEnum):
    """The outcome of one delivery attempt for one recipient: the one vocabulary the
    SMTP client, the local agent, the retry policy, logs and DSNs share."""

    DELIVERED = "delivered"  # accepted by the next hop or written to the mailbox
    DEFERRED = "deferred"  # temporary failure: try again later
    FAILED = "failed"  # permanent failure: bounce
    POSTPONED = "postponed"  # not tried (destination suspended or busy): no attempt counted

    @classmethod
    def of_reply(cls, reply: Reply) -> AttemptStatus:
        """2xx/3xx delivered, 4xx deferred, 5xx failed (RFC 5321 4.2.1)."""
        if reply.code < 400:
            return cls.DELIVERED
        return cls.DEFERRED if reply.code < 500 else cls.FAILED

    @property
    def state(self) -> RecipientState:
        """The queue state an attempt with this outcome leads to (before the retry
        policy turns an expired DEFERRED into FAILED)."""
        return _STATE_OF_STATUS[self]


_STATE_OF_STATUS = {
    AttemptStatus.DELIVERED: RecipientState.DELIVERED,
    AttemptStatus.DEFERRED: RecipientState.DEFERRED,
    AttemptStatus.FAILED: RecipientState.FAILED,
    AttemptStatus.POSTPONED: RecipientState.DEFERRED,
}


class ReplyOrigin(enum.StrEnum):
    REMOTE = "remote"  # a next hop's own words
    LOCAL = "local"  # made up by Mailyard (local delivery, a connection that failed...)


@dataclass(frozen=True)
class DeliveryReply:
    """A reply about one recipient and who gave it."""

    reply: Reply
    remote_host: str = ""  # the server that said it; "" when Mailyard synthesised it

    @property
    def origin(self) -> ReplyOrigin:
        return ReplyOrigin.REMOTE if self.remote_host else ReplyOrigin.LOCAL

    @property
    def code(self) -> int:
        return self.reply.code

    @property
    def status(self) -> str:
        return self.reply.status

    @property
    def text(self) -> str:
        """The text on one line (multi-line replies joined with spaces)."""
        return " ".join(line.strip() for line in self.reply.text.split("\n") if line.strip())

    def __str__(self) -> str:
        """'550 5.1.1 text': the one-line form for logs and people."""
        return " ".join(part for part in (str(self.code), self.status, self.text) if part)

    def to_dict(self) -> dict[str, Any]:
        """The stored and displayed form (``mailyard queue list --json``)."""
        return {"code": self.code, "status": self.status, "text": self.reply.text,
                "origin": self.origin.value, "host": self.remote_host}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DeliveryReply:
        return cls(Reply(int(doc["code"]), str(doc.get("status", "")), str(doc.get("text", ""))),
                   str(doc.get("host", "")))

    @classmethod
    def local(cls, reply: Reply) -> DeliveryReply:
        return cls(reply)


@dataclass(frozen=True)
class QueuedRecipient:
    index: int  # position in Envelope.recipients
    address: str
    state: RecipientState
    attempts: int = 0
    next_attempt: float = 0.0  # unix time; 0 = as soon as possible
    last_attempt: float = 0.0
    last_reply: DeliveryReply | None = None  # None until an attempt or postponement
    delay_notified: bool = False
    # A previous attempt was claimed but never recorded (the process died mid-delivery):
    # delivery agents check for an earlier copy before delivering again.
    interrupted: bool = False


@dataclass(frozen=True)
class QueueEntry:
    qid: str
    envelope: Envelope
    size: int  # message bytes as delivered (prepended fields + content)
    created: float
    recipients: tuple[QueuedRecipient, ...]

    @property
    def is_done(self) -> bool:
        return all(r.state.is_final for r in self.recipients)


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery attempt for one recipient, as the queue records it."""

    index: int
    state: RecipientState  # DELIVERED, DEFERRED or FAILED
    reply: DeliveryReply
    next_attempt: float = 0.0  # for DEFERRED


@dataclass(frozen=True)
class PostponedRecipient:
    """A recipient that waits for its destination without an attempt being counted."""

    index: int
    until: float
    reason: DeliveryReply


@dataclass(frozen=True)
class FinishedEntry:
    """Everything a finished attempt on one entry records (and its lease given up)."""

    qid: str
    outcomes: Sequence[Outcome] = ()
    postponed: Sequence[PostponedRecipient] = ()


class MessageWriter(Protocol):
    """Streams one message's content to storage.  Nothing is visible to the queue until
    :meth:`commit` returns, and then it is on stable storage."""

    qid: str  # assigned when the writer is opened (used in the Received header)

    def write(self, data: bytes) -> None: ...

    def held(self) -> bytes | None:
        """The content written so far when it is all still in memory (small messages),
        else None; for ingest's direct delivery (:class:`mailyard.ingest.api.DirectDelivery`)."""
        ...

    async def commit(self, prepend: bytes = b"") -> str:
        """Make the message durable and return its queue id.  ``prepend``: header
        fields computed once the content is known (a DKIM signature), stored with the
        record and put in front of the content by :meth:`WorkQueue.open_content`.
        Raises StorageError."""
        ...

    def abort(self) -> None:
        """Discard everything written so far (idempotent)."""
        ...


class QueueWriter(Protocol):
    """The producer side.  Only ingest uses it (see :mod:`mailyard.ingest.api`)."""

    def open_message(self, envelope: Envelope) -> MessageWriter: ...

    async def enqueue(self, envelope: Envelope, content: bytes) -> str: ...


class CapacityProbe(Protocol):
    def free_bytes(self) -> int:
        """Free space where messages are stored (for the min_free_disk check)."""
        ...


class WorkQueue(Protocol):
    """The scheduler's side: due work under a lease, content, results."""

    async def claim_due(self, now: float, limit: int,
                        lease_seconds: float = LEASE_SECONDS) -> list[QueueEntry]:
        """Entries with at least one recipient due (PENDING, or DEFERRED with
        next_attempt <= now), not held and not leased by another worker; leases them.
        Also frees the leases of claimers that died (their recipients become
        ``interrupted``)."""
        ...

    async def claim(self, qid: str, now: float,
                    lease_seconds: float = LEASE_SECONDS) -> QueueEntry | None:
        """Lease this one entry if it is due and not leased (None otherwise)."""
        ...

    def open_content(self, qid: str) -> BinaryIO:
        """A binary file positioned at the start of the message (prepended fields, then
        the content), read-only.  Opening reads the record's framing: call it from a
        thread where blocking is fine (delivery agents do), or use :meth:`read_content`."""
        ...

    async def read_content(self, qid: str, limit: int | None = None) -> bytes:
        """The message (or its first ``limit`` bytes), read off the event loop."""
        ...

    async def record(self, qid: str, outcomes: Iterable[Outcome]) -> QueueEntry | None:
        """Store attempt results; returns the updated entry (None if it vanished).  When
        every recipient is final the entry is removed and its content deleted."""
        ...

    async def record_many(self, items: Sequence[FinishedEntry]) -> list[bool | None]:
        """:meth:`record` (plus postponements and the lease given up) for several
        entries in one transaction.  Per item: True when the message is finished,
        False when it stays queued, None when it was not queued."""
        ...

    async def postpone_domain(self, domain: str, until: float, reason: DeliveryReply) -> int:
        """Due recipients in ``domain`` not leased by anyone wait until ``until`` without
        counting an attempt (a destination that is down); returns how many."""
        ...

    async def release_lease(self, qid: str) -> None: ...

    async def mark_delay_notified(self, qid: str, indexes: Iterable[int]) -> None: ...

    async def recover(self) -> None:
        """Pick up messages a crashed producer made durable but did not index
        (after an SMTP worker died)."""
        ...


class QueueAdmin(Protocol):
    """The operator's side (``mailyard queue``, later the HTTP API)."""

    async def get(self, qid: str) -> QueueEntry | None: ...

    async def list(self) -> list[QueueEntry]: ...

    async def hold(self, qid: str) -> bool: ...

    async def release(self, qid: str) -> bool: ...

    async def delete(self, qid: str) -> bool: ...

    async def flush(self, qid: str | None = None) -> int:
        """Make deferred recipients due now; returns how many."""
        ...

    async def stats(self) -> dict[RecipientState, int]:
        """Recipients of queued messages, by state (every state present)."""
        ...


class Spool(QueueWriter, CapacityProbe, Protocol):
    """What an SMTP worker's smtpd uses of the embedded spool in-process: producing and
    the free-space check.  End-to-end relaying in the worker uses the asynchronous
    :class:`WorkQueue` (a :class:`~mailyard.queue.threaded.ThreadedSpool` over the same
    spool), as does daemon code outside the workers."""

"""The queue's storage interface.

Everything above the queue (smtpd, the CLI, bounces, later the HTTP API and
campaigns) talks to these protocols only.  The embedded implementation keeps message
files on local disk with an SQLite index (``mailyard.queue.spool``); a PostgreSQL
implementation will sit behind the same interface, so nothing here may assume a single
process or a single machine: work is *claimed* with a lease, and results are recorded
per recipient.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Protocol

from mailyard.envelope import Envelope


class StorageError(Exception):
    """Writing to or reading from the queue's storage failed (disk full, I/O error,
    a corrupt record).  smtpd answers 451 4.3.0 and keeps the message un-acknowledged."""


class RecipientState(str, enum.Enum):
    PENDING = "pending"  # never tried yet
    DEFERRED = "deferred"  # tried, temporary failure, next_attempt set
    DELIVERED = "delivered"  # final: accepted by the next hop or mailbox
    FAILED = "failed"  # final: permanent failure or lifetime exceeded (bounce due/sent)
    HELD = "held"  # operator hold: not tried until released

    @property
    def is_final(self) -> bool:
        return self in (RecipientState.DELIVERED, RecipientState.FAILED)


@dataclass(frozen=True)
class QueuedRecipient:
    index: int  # position in Envelope.recipients
    address: str
    state: RecipientState
    attempts: int = 0
    next_attempt: float = 0.0  # unix time; 0 = as soon as possible
    last_attempt: float = 0.0
    last_reply: str = ""  # e.g. "451 4.3.0 Try later" or a local error text
    delay_notified: bool = False
    # A previous attempt was claimed but never recorded (the process died mid-delivery):
    # delivery agents check for an earlier copy before delivering again.
    interrupted: bool = False


@dataclass(frozen=True)
class QueueEntry:
    qid: str
    envelope: Envelope
    size: int  # content bytes
    created: float
    recipients: tuple[QueuedRecipient, ...]

    @property
    def is_done(self) -> bool:
        return all(r.state.is_final for r in self.recipients)


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery attempt for one recipient."""

    index: int
    state: RecipientState  # DELIVERED, DEFERRED or FAILED
    reply: str
    next_attempt: float = 0.0  # for DEFERRED


class MessageWriter(Protocol):
    """Streams one message's content to storage.  Nothing is visible to the queue until
    :meth:`commit` returns, and then it is on stable storage."""

    qid: str  # assigned when the writer is opened (used in the Received header)

    def write(self, data: bytes) -> None: ...

    async def commit(self) -> str:
        """Make the message durable and return its queue id.  Raises StorageError."""
        ...

    def abort(self) -> None:
        """Discard everything written so far (idempotent)."""
        ...


class Spool(Protocol):
    # --- producers (smtpd, CLI send, bounces, API) ---
    def open_message(self, envelope: Envelope) -> MessageWriter: ...

    async def enqueue(self, envelope: Envelope, content: bytes) -> str: ...

    def free_bytes(self) -> int:
        """Free space where messages are stored (for the min_free_disk check)."""
        ...

    # --- scheduler / delivery ---
    def claim_due(self, now: float, limit: int, lease_seconds: float) -> list[QueueEntry]:
        """Entries with at least one recipient due (PENDING, or DEFERRED with
        next_attempt <= now), not held and not leased by another worker; leases them."""
        ...

    def claim(self, qid: str, now: float, lease_seconds: float) -> QueueEntry | None:
        """Lease this one entry if it is due and not leased (None otherwise)."""
        ...

    def open_content(self, qid: str) -> BinaryIO:
        """A binary file positioned at the start of the message content (read-only)."""
        ...

    def record(self, qid: str, outcomes: Iterable[Outcome]) -> QueueEntry | None:
        """Store attempt results; returns the updated entry (None if it vanished).  When
        every recipient is final the entry is removed and its content deleted."""
        ...

    def release_lease(self, qid: str) -> None: ...

    def mark_delay_notified(self, qid: str, indexes: Iterable[int]) -> None: ...

    # --- operator ---
    def get(self, qid: str) -> QueueEntry | None: ...

    def list(self) -> list[QueueEntry]: ...

    def hold(self, qid: str) -> bool: ...

    def release(self, qid: str) -> bool: ...

    def delete(self, qid: str) -> bool: ...

    def flush(self, qid: str | None = None) -> int:
        """Make deferred recipients due now; returns how many."""
        ...

"""The mail store's interface: what delivery (and later IMAP) asks of mailboxes.

:class:`MailStore` hands out the :class:`Mailbox` of a local user; a mailbox stores
a message durably and idempotently under a *delivery key* and finds it again by that
key.  ``store/maildir.py`` implements both on Maildir++ directories; the local
delivery agent (``delivery/local.py``) uses nothing else.

**Blocking.**  Every method here is synchronous and may block on the disk (open,
write, fsync, rename, and the wait for a directory fsync shared with other
deliveries).  Callers run them in a worker thread, never on an event loop: the local
delivery agent runs whole in the dispatcher's delivery executor.  Why not ``async``:
a delivery is a chain of blocking system calls, so an async API would need one
executor hop per step (each a thread wake-up and a contended interpreter lock, which
is what the queue's group commit found to dominate), and the grouped directory fsync
is a wait between threads that would block a loop just the same.  One hop per
recipient, around the whole agent, is the cheapest.  The IMAP server will call these
through ``asyncio.to_thread`` (or its own executor) in the same way.

**Extension points** for the IMAP work are marked ``EXTENSION POINT`` below: UIDs,
flags and mod-sequences belong to an index kept beside each folder, which this
module does not build yet.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from mailyard.store.quota import QuotaUsage

#: A message to store: a binary file (read in chunks) or an iterable of chunks.
Source = BinaryIO | Iterable[bytes]

INBOX = "INBOX"


class MailboxNameError(ValueError):
    """An address or folder name that cannot name a mailbox safely."""


@dataclass(frozen=True)
class StoredMessage:
    """One message in a mailbox folder, as the store names it."""

    folder: str  # "INBOX" or a sub-folder's name
    ref: str  # the store's own name for it (a Maildir file name); stable until moved
    size: int  # octets as stored (LF line ends)
    rfc822_size: int | None  # octets with CRLF line ends (IMAP RFC822.SIZE), if known
    # EXTENSION POINT (IMAP index): uid, flags, modseq, internal date.


@dataclass(frozen=True)
class InboxMessage:
    """One INBOX message as a retrieval session (POP3) lists it."""

    key: str  # the store's handle for it: stable across sessions, flag changes and moves
    size: int  # octets with CRLF line ends (as POP3 and IMAP carry the message)
    received: float  # delivery time, seconds since the epoch


class MailboxBusy(Exception):
    """The mailbox's exclusive lock is held by another session (POP3 ``[IN-USE]``)."""


class MailboxLock(abc.ABC):
    """An exclusive lock on a mailbox, held until :meth:`release` (or the process
    ends).  Blocking-free: release never waits."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock up; idempotent."""


class Mailbox(abc.ABC):
    """One user's mailbox: the INBOX and its folders.  Blocking (see the module doc)."""

    address: str

    @abc.abstractmethod
    def deliver(self, source: Source, *, prefix: bytes = b"", key: str,
                folder: str = INBOX) -> StoredMessage:
        """Store ``prefix`` then the stream in ``folder`` (the INBOX, or a folder
        named as :meth:`special_folder` names it), durably: when this returns,
        the message survives a crash.  ``key`` names this copy (queue id and
        mailbox); :meth:`find` finds it again, so a retried delivery can tell it was
        already done.  The stream is read in chunks, never held whole.  Raises
        OSError (ENOSPC, EDQUOT, EIO, ...) with nothing half-written left visible."""

    @abc.abstractmethod
    def find(self, *keys: str, folder: str = INBOX) -> StoredMessage | None:
        """A message delivered to ``folder`` with one of ``keys`` (in any state: new or
        seen), or None."""

    @abc.abstractmethod
    def special_folder(self, use: str) -> str | None:
        """The name of the folder with the SPECIAL-USE attribute ``use`` (RFC 6154,
        ``"\\Junk"``), or None when the mailbox has none."""

    @abc.abstractmethod
    def folders(self) -> list[str]:
        """The folder names, ``INBOX`` first."""

    # --- retrieval (POP3; see mailyard.pop3d) -----------------------------------------

    @abc.abstractmethod
    def inbox_messages(self) -> list[InboxMessage]:
        """The INBOX messages (new and seen), oldest delivery first."""

    @abc.abstractmethod
    def open_message(self, key: str) -> BinaryIO:
        """The stored message ``key`` for reading in chunks (line ends as stored: LF,
        or CRLF in files of earlier versions).  Raises FileNotFoundError when it is
        gone."""

    @abc.abstractmethod
    def remove_messages(self, keys: Iterable[str]) -> int:
        """Remove these INBOX messages durably; a message already gone is not an
        error.  Returns how many were removed by this call.  Raises OSError when one
        could not be removed (the others still are)."""

    @abc.abstractmethod
    def lock_exclusive(self, purpose: str) -> MailboxLock:
        """Take the mailbox's exclusive ``purpose`` lock (``"pop3"``: one POP3 session
        per maildrop, RFC 1939 8), shared by every process on the node.  Raises
        :class:`MailboxBusy` when another session holds it."""

    # EXTENSION POINT (IMAP): select(folder) -> a view with uid_validity, uid_next,
    # highest_modseq; fetch/store flags by UID; append (deliver into a folder with
    # flags and an internal date); expunge.  These read and write the folder's index,
    # which deliver() will then update as well (assigning the UID at delivery).


class MailStore(abc.ABC):
    """Where the local users' mailboxes live.  Blocking (see the module doc)."""

    @abc.abstractmethod
    def mailbox(self, address: str, *, create: bool = True) -> Mailbox:
        """The mailbox of ``address`` (a canonical, lower-case mailbox address),
        created when missing if ``create``.  Raises :class:`MailboxNameError` when the
        address cannot name a mailbox, OSError when it cannot be created."""

    @abc.abstractmethod
    def exists(self, address: str) -> bool:
        """Whether the mailbox of ``address`` has been created."""

    @abc.abstractmethod
    def usage(self, address: str) -> QuotaUsage:
        """What the mailbox of ``address`` holds over all its folders (RFC 9208
        STORAGE and MESSAGE), read from its index; nothing for a mailbox not created
        yet.  The quota decision is the caller's (:func:`~mailyard.store.quota.over_quota`
        with the directory's limits)."""

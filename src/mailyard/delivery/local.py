"""The local delivery agent: queued mail for our own domains into Maildir mailboxes.

For one queued recipient it asks the directory where the address goes (aliases may
name several local mailboxes and some external addresses), writes a copy into each
mailbox with ``Return-Path:`` and ``Delivered-To:`` prepended (RFC 5321 4.4, RFC 9228),
and reports one result for the recipient.  A message that already carries a
``Delivered-To:`` naming a mailbox has come back through a forwarding loop and is not
delivered there again (554 5.4.6).  External alias targets are returned, not
queued: the caller queues the forwarded copy once the local copies are safe.

A mailbox gets one copy of a queued message, however many of its recipients lead
there (``To: alice@`` plus ``Bcc: sales@`` where sales expands to alice), as Postfix
does: the caller passes the set of mailboxes already written for this message, and a
recipient whose mailboxes all hold a copy is reported delivered without a second one.
Each copy's Maildir name carries the key ``<qid>.<mailbox>``; on a retry, or after an
attempt that died before its result was recorded, the agent looks for that key first
(and for ``<qid>.<recipient index>``, the key of earlier versions), so a retry never
makes a second copy either.

The agent is synchronous (file I/O with fsync); the dispatcher runs it in a thread pool.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailyard.config import Config
from mailyard.directory.addresses import address_key
from mailyard.directory.api import Directory, DirectoryError
from mailyard.proto.smtp.replies import (
    REPLY_BAD_MAILBOX_NAME,
    REPLY_DISK_FULL,
    REPLY_FORWARDING_LOOP,
    REPLY_LOCAL_DELIVERY_ERROR,
    REPLY_MAILBOX_DELIVERED,
    REPLY_MAILBOX_FULL,
    REPLY_TEMP_LOOKUP,
    REPLY_UNKNOWN_USER,
    Reply,
)
from mailyard.queue.api import (
    AttemptStatus,
    DeliveryReply,
    QueuedRecipient,
    QueueEntry,
    StorageError,
)
from mailyard.store.maildir import MailboxNameError, Maildir, mailbox_path

#: The local agent's outcomes are attempt outcomes (never POSTPONED).
LocalStatus = AttemptStatus


@dataclass(frozen=True)
class LocalDeliveryResult:
    """The outcome for one queued recipient."""

    status: AttemptStatus  # DELIVERED, DEFERRED or FAILED
    reply: DeliveryReply  # our own (local origin): 250 2.0.0, 452 4.2.2, 550 5.1.1 ...
    mailboxes: tuple[str, ...] = ()  # mailboxes that hold a copy (new or found)
    external: tuple[str, ...] = ()  # alias targets to forward (set only when delivered)

    @classmethod
    def of(cls, status: AttemptStatus, reply: Reply, mailboxes: tuple[str, ...] = (),
           external: tuple[str, ...] = ()) -> LocalDeliveryResult:
        return cls(status, DeliveryReply(reply), mailboxes, external)


def delivery_key(entry: QueueEntry, mailbox: str) -> str:
    """The Maildir ``unique`` key of the queued message's copy in ``mailbox``."""
    return f"{entry.qid}.{mailbox}"


def legacy_delivery_key(entry: QueueEntry, recipient: QueuedRecipient) -> str:
    """The key earlier versions used (per queued recipient), still looked for."""
    return f"{entry.qid}.{recipient.index}"


def trace_headers(sender: str, mailbox: str) -> bytes:
    """``Return-Path`` (RFC 5321 4.4, RFC 5322 3.6.7) and ``Delivered-To`` (RFC 9228)."""
    def clean(value: str) -> str:
        return value.replace("\r", "").replace("\n", "")

    return (f"Return-Path: <{clean(sender)}>\r\n"
            f"Delivered-To: {clean(mailbox)}\r\n").encode()


MAX_HEADER_SCAN = 256 * 1024


def delivered_to(content: BinaryIO) -> set[str]:
    """The addresses in the message's ``Delivered-To:`` headers (lower-case), read from
    the header section only (at most :data:`MAX_HEADER_SCAN` bytes)."""
    found: set[str] = set()
    scanned = 0
    while scanned < MAX_HEADER_SCAN:
        line = content.readline(8192)
        scanned += len(line)
        if line in (b"", b"\r\n", b"\n"):
            break
        if line[:13].lower() == b"delivered-to:":
            value = line[13:].decode("utf-8", "replace").strip().strip("<>")
            found.add(address_key(value))
    return found


def os_error_reply(exc: OSError) -> Reply:
    """A temporary reply for a failed write: mail stays queued and is retried."""
    if exc.errno == errno.EDQUOT:
        return REPLY_MAILBOX_FULL
    if exc.errno == errno.ENOSPC:
        return REPLY_DISK_FULL
    reason = exc.strerror or type(exc).__name__
    return REPLY_LOCAL_DELIVERY_ERROR.fill(error=reason)


class LocalDeliveryAgent:
    def __init__(self, config: Config, directory: Directory, *,
                 mail_root: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.directory = directory
        self.mail_root = mail_root or config.data_path / "mail"
        self.clock = clock

    def maildir(self, mailbox: str) -> Maildir:
        return Maildir(mailbox_path(self.mail_root, mailbox), self.config.hostname, self.clock)

    def deliver(self, entry: QueueEntry, recipient: QueuedRecipient,
                open_content: Callable[[], BinaryIO],
                written: set[str] | None = None) -> LocalDeliveryResult:
        """Deliver ``entry`` for ``recipient``.  ``written`` holds the mailboxes that
        already have a copy of this queued message (from its other recipients in this
        round); they are not written again, and the mailboxes this call fills are
        added to it."""
        if written is None:
            written = set()
        try:
            resolution = self.directory.resolve(recipient.address)
        except DirectoryError as exc:
            return LocalDeliveryResult.of(
                AttemptStatus.DEFERRED,
                REPLY_TEMP_LOOKUP.with_text(f"{REPLY_TEMP_LOOKUP.text} ({exc})"))
        if resolution.unknown:
            reply = REPLY_UNKNOWN_USER.with_text(
                f"<{recipient.address}>: Recipient address rejected: user unknown")
            return LocalDeliveryResult.of(AttemptStatus.FAILED, reply)
        try:
            looped = self._looped(resolution.mailboxes, open_content)
        except (StorageError, OSError) as exc:
            reason = f"cannot read queued message: {exc}"
            return LocalDeliveryResult.of(AttemptStatus.DEFERRED,
                                          REPLY_LOCAL_DELIVERY_ERROR.fill(error=reason))
        mailboxes = [m for m in resolution.mailboxes if m not in looped]
        if looped and not mailboxes:
            reply = REPLY_FORWARDING_LOOP.fill(address=", ".join(sorted(looped)))
            return LocalDeliveryResult.of(AttemptStatus.FAILED, reply)
        done: list[str] = []
        shared = 0
        problem: LocalDeliveryResult | None = None
        for mailbox in mailboxes:
            if mailbox in written:
                done.append(mailbox)
                shared += 1
                continue
            result = self._deliver_one(entry, recipient, mailbox, open_content)
            if result is None:
                done.append(mailbox)
                written.add(mailbox)
            elif problem is None or (problem.status is AttemptStatus.FAILED
                                     and result.status is AttemptStatus.DEFERRED):
                problem = result  # a temporary problem wins: the whole recipient is retried
        if problem is not None:
            return LocalDeliveryResult(problem.status, problem.reply, tuple(done))
        reply = self._success_reply(done, resolution.external, shared)
        return LocalDeliveryResult.of(AttemptStatus.DELIVERED, reply, tuple(done),
                                      resolution.external)

    @staticmethod
    def _looped(mailboxes: tuple[str, ...],
                open_content: Callable[[], BinaryIO]) -> set[str]:
        """Mailboxes this message was already delivered to (a ``Delivered-To:`` header
        names them): it has come back through a forwarding loop."""
        if not mailboxes:
            return set()
        with open_content() as content:
            return delivered_to(content) & set(mailboxes)

    def _deliver_one(self, entry: QueueEntry, recipient: QueuedRecipient, mailbox: str,
                     open_content: Callable[[], BinaryIO]) -> LocalDeliveryResult | None:
        """Write one copy; None when it is in place, else the problem."""
        key = delivery_key(entry, mailbox)
        try:
            box = self.maildir(mailbox)
        except MailboxNameError:
            return LocalDeliveryResult.of(AttemptStatus.FAILED,
                                          REPLY_BAD_MAILBOX_NAME.fill(address=mailbox))
        try:
            if _tried_before(entry) and box.find(key, legacy_delivery_key(entry, recipient)):
                return None
            box.create()
            with open_content() as content:
                box.deliver(content, trace_headers(entry.envelope.sender, mailbox), key)
        except StorageError as exc:
            reason = f"cannot read queued message: {exc}"
            return LocalDeliveryResult.of(AttemptStatus.DEFERRED,
                                          REPLY_LOCAL_DELIVERY_ERROR.fill(error=reason))
        except OSError as exc:
            return LocalDeliveryResult.of(AttemptStatus.DEFERRED, os_error_reply(exc))
        return None

    @staticmethod
    def _success_reply(done: list[str], external: tuple[str, ...], shared: int = 0) -> Reply:
        if not done:
            return REPLY_MAILBOX_DELIVERED.with_text(
                f"Forwarding to {len(external)} address(es)")
        text = REPLY_MAILBOX_DELIVERED.text
        if len(done) > 1:
            text += f" ({len(done)} mailboxes)"
        if shared:
            text += (f"; {shared} mailbox(es) already had this message "
                     "from another recipient")
        if external:
            text += f"; forwarding to {len(external)} address(es)"
        return REPLY_MAILBOX_DELIVERED.with_text(text)


def _tried_before(entry: QueueEntry) -> bool:
    """Whether an earlier attempt on this message may have left copies in mailboxes
    (then :meth:`Maildir.find` is asked before writing)."""
    return any(r.attempts > 0 or r.interrupted for r in entry.recipients)

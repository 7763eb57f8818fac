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

A mailbox with a quota (``[mailbox]`` defaults, ``mailyard user quota``) that the
copy would take over its limit does not get it: the recipient fails with 552 5.2.2
and the sender gets a bounce (smtpd refuses such recipients at RCPT already, when it
knows; this check is the exact one).  A copy found from an earlier attempt counts as
delivered whatever the quota.  The usage comes from the store (the mailbox index),
cached a few seconds per mailbox and charged with each copy written here.

Mailboxes are reached only through the :class:`~mailyard.store.api.MailStore`
interface (injected; by default the Maildir++ store under ``<data_dir>/mail``).  The
agent is synchronous, as the store's methods are (file I/O with fsync, and the wait
for a ``new/`` fsync shared with concurrent deliveries into the same mailbox); the
dispatcher runs it in its delivery thread pool, never on the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailyard.config import Config
from mailyard.directory.addresses import address_key
from mailyard.directory.api import Directory, DirectoryError
from mailyard.obs import log_event
from mailyard.proto.smtp.replies import (
    REPLY_BAD_MAILBOX_NAME,
    REPLY_DISK_FULL,
    REPLY_FORWARDING_LOOP,
    REPLY_LOCAL_DELIVERY_ERROR,
    REPLY_MAILBOX_DELIVERED,
    REPLY_MAILBOX_FULL,
    REPLY_OVER_QUOTA,
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
from mailyard.store.api import INBOX, MailboxNameError, MailStore
from mailyard.store.maildir import MaildirStore
from mailyard.store.quota import over_quota
from mailyard.store.usage import UsageCache

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


log = logging.getLogger("mailyard.delivery")

READ_FAILED = "cannot read the queued message"
MAX_HEADER_SCAN = 256 * 1024


def delivered_to(content: BinaryIO) -> set[str]:
    """The addresses in the message's ``Delivered-To:`` headers (lower-case), read from
    the header section only (at most :data:`MAX_HEADER_SCAN` bytes)."""
    return header_facts(content)[0]


FOLDER_FIELD = b"x-mailyard-folder:"
JUNK_INSTRUCTION = "junk"


def header_facts(content: BinaryIO) -> tuple[set[str], str]:
    """The ``Delivered-To:`` addresses (lower-case) and the folder instruction (the
    value of ``X-Mailyard-Folder:``, lower-case, "" without one), read from the header
    section only (at most :data:`MAX_HEADER_SCAN` bytes).  Ingest removes that field
    from every message that enters from someone else
    (:class:`mailyard.senderauth.hook.OwnFields`), so one found here was written by
    ingest itself: a DMARC quarantine."""
    found: set[str] = set()
    folder = ""
    scanned = 0
    while scanned < MAX_HEADER_SCAN:
        line = content.readline(8192)
        scanned += len(line)
        if line in (b"", b"\r\n", b"\n"):
            break
        if line[:13].lower() == b"delivered-to:":
            value = line[13:].decode("utf-8", "replace").strip().strip("<>")
            found.add(address_key(value))
        elif line[:18].lower() == FOLDER_FIELD and not folder:  # ingest's comes first
            folder = line[18:].decode("ascii", "replace").strip().lower()
    return found, folder


def os_error_reply(exc: OSError) -> Reply:
    """A temporary reply for a failed write: mail stays queued and is retried."""
    if exc.errno == errno.EDQUOT:
        return REPLY_MAILBOX_FULL
    if exc.errno == errno.ENOSPC:
        return REPLY_DISK_FULL
    return deferred_reply("cannot write to the mailbox", exc)


def deferred_reply(what: str, exc: BaseException, mailbox: str = "") -> Reply:
    """``451 4.3.0 Local delivery failed: <what>`` for a failure of the server's own
    storage.  The reply travels to the queue, the logs and delay or failure reports
    (to the sender), so it says what failed, not how: the details (paths, SQLite's
    words) are logged here."""
    log_event(log, "local delivery failed", level=logging.WARNING, mailbox=mailbox,
              reason=what, error=str(exc) or type(exc).__name__)
    return REPLY_LOCAL_DELIVERY_ERROR.fill(error=what)


def _lookup_failed(exc: DirectoryError, address: str) -> LocalDeliveryResult:
    log_event(log, "local delivery: directory lookup failed", level=logging.WARNING,
              address=address, error=str(exc))
    return LocalDeliveryResult.of(AttemptStatus.DEFERRED, REPLY_TEMP_LOOKUP)


class LocalDeliveryAgent:
    def __init__(self, config: Config, directory: Directory, *,
                 mail_root: Path | None = None,
                 store: MailStore | None = None,
                 clock: Callable[[], float] = time.time,
                 usage: UsageCache | None = None) -> None:
        self.config = config
        self.directory = directory
        self.clock = clock
        self.store = store or MaildirStore(mail_root or config.data_path / "mail",
                                           config.hostname, clock=clock)
        self.usage = usage or UsageCache(self.store.usage)

    def deliver(self, entry: QueueEntry, recipient: QueuedRecipient,
                open_content: Callable[[], BinaryIO],
                written: set[str] | None = None) -> LocalDeliveryResult:
        """Deliver ``entry`` for ``recipient``.  ``written`` holds the mailboxes that
        already have a copy of this queued message (from its other recipients in this
        round); they are not written again, and the mailboxes this call fills are
        added to it."""
        if written is None:
            written = set()
        content = _OpenedOnce(open_content)
        try:
            return self._deliver(entry, recipient, content, written)
        finally:
            content.close()

    def deliver_many(self, entry: QueueEntry, recipients: Sequence[QueuedRecipient],
                     open_content: Callable[[], BinaryIO]) -> list[LocalDeliveryResult]:
        """:meth:`deliver` for several recipients of ``entry`` in one call (one thread
        hand-off per message): the queued message is opened once for all of them, and
        a mailbox gets one copy whatever the recipients (and aliases) that lead to it."""
        written: set[str] = set()
        content = _OpenedOnce(open_content)
        try:
            return [self._deliver(entry, r, content, written) for r in recipients]
        finally:
            content.close()

    def _deliver(self, entry: QueueEntry, recipient: QueuedRecipient,
                 content: _OpenedOnce, written: set[str]) -> LocalDeliveryResult:
        try:
            resolution = self.directory.resolve(recipient.address)
        except DirectoryError as exc:
            return _lookup_failed(exc, recipient.address)
        if resolution.unknown:
            reply = REPLY_UNKNOWN_USER.with_text(
                f"<{recipient.address}>: Recipient address rejected: user unknown")
            return LocalDeliveryResult.of(AttemptStatus.FAILED, reply)
        try:
            looped, folder = self._looped(resolution.mailboxes, content)
        except (StorageError, OSError) as exc:
            return LocalDeliveryResult.of(AttemptStatus.DEFERRED,
                                          deferred_reply(READ_FAILED, exc))
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
            result = self._deliver_one(entry, recipient, mailbox, content, folder)
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
    def _looped(mailboxes: tuple[str, ...], content: _OpenedOnce) -> tuple[set[str], str]:
        """Mailboxes this message was already delivered to (a ``Delivered-To:`` header
        names them): it has come back through a forwarding loop; and the folder
        instruction (see :func:`header_facts`)."""
        if not mailboxes:
            return set(), ""
        found, folder = header_facts(content.rewound())
        return found & set(mailboxes), folder

    def _deliver_one(self, entry: QueueEntry, recipient: QueuedRecipient, mailbox: str,
                     content: _OpenedOnce, instruction: str = "") -> LocalDeliveryResult | None:
        """Write one copy; None when it is in place, else the problem.  With the junk
        instruction the copy goes to the mailbox's ``\\Junk`` folder (the INBOX when
        it has none)."""
        key = delivery_key(entry, mailbox)
        try:
            box = self.store.mailbox(mailbox)
            folder = INBOX
            if instruction == JUNK_INSTRUCTION:
                folder = box.special_folder("\\Junk") or INBOX
            if _tried_before(entry) and box.find(key, legacy_delivery_key(entry, recipient),
                                                 folder=folder):
                return None
            prefix = trace_headers(entry.envelope.sender, mailbox)
            refusal = self._check_quota(mailbox, entry.size + len(prefix))
            if refusal is not None:
                return refusal
            stored = box.deliver(content.rewound(), prefix=prefix, key=key, folder=folder)
            self.usage.charge(mailbox, stored.rfc822_size or stored.size)
        except MailboxNameError:
            return LocalDeliveryResult.of(AttemptStatus.FAILED,
                                          REPLY_BAD_MAILBOX_NAME.fill(address=mailbox))
        except StorageError as exc:
            return LocalDeliveryResult.of(AttemptStatus.DEFERRED,
                                          deferred_reply(READ_FAILED, exc, mailbox))
        except OSError as exc:
            return LocalDeliveryResult.of(AttemptStatus.DEFERRED, os_error_reply(exc))
        return None

    def _check_quota(self, mailbox: str, size: int) -> LocalDeliveryResult | None:
        """None when the copy fits the mailbox's quota, else the failure (permanent:
        552 5.2.2); a limit or usage that cannot be read defers the recipient."""
        try:
            limits = self.directory.quota_limits(mailbox)
        except DirectoryError as exc:
            return _lookup_failed(exc, mailbox)
        if limits.unlimited:
            return None
        try:
            usage = self.usage.get(mailbox)
        except sqlite3.Error as exc:
            return LocalDeliveryResult.of(AttemptStatus.DEFERRED, deferred_reply(
                "cannot read the mailbox index", exc, mailbox))
        if not over_quota(usage, limits, size):
            return None
        return LocalDeliveryResult.of(AttemptStatus.FAILED, REPLY_OVER_QUOTA.with_text(
            f"<{mailbox}>: {REPLY_OVER_QUOTA.text}"))

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


class _OpenedOnce:
    """The queued message, opened once for every read one recipient needs (the loop
    check, then a copy per mailbox); each read starts from the beginning.  Opening a
    queue file (open, fstat, read and check its header) costs more than a seek."""

    def __init__(self, open_content: Callable[[], BinaryIO]) -> None:
        self._open = open_content
        self._file: BinaryIO | None = None

    def rewound(self) -> BinaryIO:
        """The content at offset 0 (opened on first use; reopened if not seekable)."""
        if self._file is not None:
            if self._file.seekable():
                self._file.seek(0)
                return self._file
            self.close()
        self._file = self._open()
        return self._file

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):  # read-only: nothing is lost
                f.close()


def _tried_before(entry: QueueEntry) -> bool:
    """Whether an earlier attempt on this message may have left copies in mailboxes
    (then :meth:`Maildir.find` is asked before writing)."""
    return any(r.attempts > 0 or r.interrupted for r in entry.recipients)

"""A user's quota usage, read from the mailbox index, and a short-lived cache of it.

The usage is the index's count and size sum over every folder
(:meth:`MailboxIndex.usage`).  Local delivery writes into the INBOX's ``new/``
without touching the index, so the INBOX is synced first whenever ``new/`` holds a
file (or the INBOX was never indexed): that mail counts too, and its UIDs and
cached structure are then ready for IMAP.  Like an IMAP SELECT, the sync moves the
files to ``cur/`` (still unread; mutt shows them as old rather than new).  Only
users with a limit are read this way by smtpd and local delivery.  Other folders
count as indexed: mail only gets there through the index (IMAP APPEND, COPY, MOVE)
or is picked up at the next SELECT.

Reading the usage is blocking (a directory scan, SQLite, perhaps parsing new
messages): callers run it in a worker thread.  :class:`UsageCache` keeps each
user's usage for a few seconds so that a flood of RCPTs or deliveries to one
mailbox costs one read, not one per message; the cache is per process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from mailyard.store.api import INBOX
from mailyard.store.index import MailboxIndex
from mailyard.store.maildir import Maildir
from mailyard.store.quota import QuotaUsage

#: Seconds a cached usage is used before it is read again.
USAGE_TTL = 5.0
CACHE_LIMIT = 10_000


def usage(index: MailboxIndex) -> QuotaUsage:
    """The usage of the mailbox ``index`` covers, INBOX synced first when needed."""
    if _has_new_mail(index.inbox) or not index.folder_known(INBOX):
        index.sync(INBOX)
    return index.usage()


def mailbox_usage(inbox: Maildir) -> QuotaUsage:
    """The usage of the mailbox whose INBOX is ``inbox``; nothing used (and nothing
    created) when the mailbox does not exist yet."""
    if not inbox.exists():
        return QuotaUsage()
    index = MailboxIndex(inbox)
    try:
        return usage(index)
    finally:
        index.close()


def _has_new_mail(inbox: Maildir) -> bool:
    try:
        with os.scandir(inbox.path / "new") as entries:
            return any(not e.name.startswith(".") for e in entries)
    except FileNotFoundError:
        return False


class UsageCache:
    """Each user's usage as last read, for ``ttl`` seconds, plus what was delivered
    since (:meth:`charge`).  Thread-safe; per process (each SMTP worker and the
    delivery dispatcher has its own)."""

    def __init__(self, read: Callable[[str], QuotaUsage], *, ttl: float = USAGE_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, QuotaUsage]] = {}

    def cached(self, address: str) -> QuotaUsage | None:
        """The usage read less than ``ttl`` seconds ago, else None.  Never blocks on I/O."""
        with self._lock:
            entry = self._entries.get(address)
        if entry is None or self.clock() - entry[0] >= self.ttl:
            return None
        return entry[1]

    def read(self, address: str) -> QuotaUsage:
        """Read the usage now (blocking) and remember it."""
        found = self._read(address)
        with self._lock:
            if len(self._entries) >= CACHE_LIMIT:
                self._entries.clear()
            self._entries[address] = (self.clock(), found)
        return found

    def get(self, address: str) -> QuotaUsage:
        """The cached usage, or a fresh read (blocking)."""
        found = self.cached(address)
        return found if found is not None else self.read(address)

    def charge(self, address: str, octets: int, messages: int = 1) -> None:
        """A message was stored: count it in the cached usage until the next read."""
        with self._lock:
            entry = self._entries.get(address)
            if entry is not None:
                when, was = entry
                self._entries[address] = (when, QuotaUsage(was.storage_bytes + octets,
                                                           was.messages + messages))

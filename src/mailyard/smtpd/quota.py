"""The quota check at RCPT: refuse mail for a mailbox that is full (552 5.2.2).

Refusing in the session is better than accepting and bouncing: the sending server
tells its user, and no bounce goes to a possibly forged sender.  The limits come
from the directory (cached per transaction, as every RCPT lookup); the usage from
the mailbox index through a :class:`~mailyard.store.usage.UsageCache`, read in a
worker thread and kept for a few seconds, so a flood of RCPTs for one user costs
one read, and concurrent RCPTs for a user nobody has read yet share that read.
The cache is per process (each SMTP worker has its own), which is also why the
check is a best effort: local delivery checks again, exactly, and bounces what
the RCPT check let through (``delivery/local.py``).

A recipient is refused only when nothing it leads to could take the message: every
mailbox it resolves to is over quota and it has no external alias target.  An alias
whose list has one full member is accepted; that member's copy bounces at delivery.
A failure to read the usage accepts the recipient (delivery decides).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Coroutine
from typing import Any

from mailyard.directory.api import Directory, DirectoryError
from mailyard.obs import log_event
from mailyard.proto.smtp.replies import REPLY_OVER_QUOTA, Reply
from mailyard.store.api import MailboxNameError
from mailyard.store.quota import QuotaLimits, QuotaUsage, over_quota
from mailyard.store.usage import UsageCache

log = logging.getLogger("mailyard.smtpd")

#: A verdict now, or one that needs the usage read first (await it).
QuotaVerdict = Reply | None | Coroutine[Any, Any, Reply | None]


class RcptQuota:
    """The RCPT quota check of one process (shared by its listeners)."""

    def __init__(self, directory: Directory, usage: UsageCache) -> None:
        self.directory = directory
        self.usage = usage
        self._reading: dict[str, asyncio.Future[QuotaUsage]] = {}

    def check(self, address: str, size: int | None) -> QuotaVerdict:
        """The verdict for a recipient already known to exist; ``size`` is the
        declared SIZE= (RFC 1870), if any.  Answers at once when no quota applies or
        the usage is cached; else returns a coroutine that reads it in a thread."""
        try:
            targets = self._limited(address)
        except DirectoryError:
            return None  # local delivery checks again
        if not targets:
            return None
        known = {m: self.usage.cached(m) for m in targets}
        if all(u is not None for u in known.values()):
            return self._verdict(targets, {m: u for m, u in known.items() if u is not None},
                                 size)
        return self._read_then_decide(targets, size)

    def _limited(self, address: str) -> dict[str, QuotaLimits]:
        """The mailboxes the recipient leads to and their limits; empty when one of
        them has no limit, or the recipient also goes elsewhere (then it is taken)."""
        resolution = self.directory.resolve(address)
        if resolution.unknown or resolution.external or not resolution.mailboxes:
            return {}
        out: dict[str, QuotaLimits] = {}
        for mailbox in resolution.mailboxes:
            limits = self.directory.quota_limits(mailbox)
            if limits.unlimited:
                return {}
            out[mailbox] = limits
        return out

    @staticmethod
    def _verdict(targets: dict[str, QuotaLimits], usage: dict[str, QuotaUsage],
                 size: int | None) -> Reply | None:
        adding = max(size or 0, 1)  # a message has at least one octet
        if all(over_quota(usage[m], limits, adding) for m, limits in targets.items()):
            return REPLY_OVER_QUOTA
        return None

    async def _read_then_decide(self, targets: dict[str, QuotaLimits],
                                size: int | None) -> Reply | None:
        usage: dict[str, QuotaUsage] = {}
        for mailbox in targets:
            try:
                usage[mailbox] = self.usage.cached(mailbox) or await self._read(mailbox)
            except (OSError, sqlite3.Error, MailboxNameError) as exc:
                log_event(log, "quota usage unreadable", level=logging.WARNING,
                          mailbox=mailbox, error=str(exc))
                return None
        return self._verdict(targets, usage, size)

    async def _read(self, mailbox: str) -> QuotaUsage:
        """One read in a worker thread per mailbox at a time, whoever asks."""
        future = self._reading.get(mailbox)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(None, self.usage.read, mailbox)
            self._reading[mailbox] = future
            future.add_done_callback(lambda _: self._reading.pop(mailbox, None))
        # shield: a session that goes away must not cancel the read others wait for
        return await asyncio.shield(future)

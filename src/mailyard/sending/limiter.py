"""The sending limits as producers use them: SMTP submission, ``mailyard send`` and
the HTTP API.

A message from a user counts against two subjects: the user (``user:ADDRESS``) and
the user's domain (``domain:DOMAIN``).  Each has four limits (messages and recipients
per hour and per 24 hours, :mod:`mailyard.sending.window`): the user's come from its
own settings (``mailyard user limits``) or else the ``[sending] user_*`` defaults,
the domain's from ``[sending] domain_*``.

Counts are taken when a message is accepted (queued), never earlier, so a refused or
abandoned transaction costs nothing.  The check before and the count after are two
steps, so concurrent senders may overshoot a limit by the messages in flight at that
moment; that is the price of never holding a lock across a transaction.

* :meth:`SendLimiter.check` / :meth:`SendLimiter.record` are the blocking calls for a
  producer that has the recipient count up front (the HTTP API answers a refusal with
  ``429`` and ``Retry-After: refusal.retry_after``; ``mailyard send``);
* :meth:`SendLimiter.allowance` reads the usage once at MAIL for an SMTP transaction:
  the :class:`SendAllowance` then answers each RCPT without further I/O;
* :class:`ThreadedSendLimiter` runs them in one worker thread for the event loop.
  A store that cannot be read or written is logged and lets the mail through.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from mailyard.config import SendingConfig
from mailyard.directory.addresses import address_key
from mailyard.envelope import split_address
from mailyard.obs import log_event
from mailyard.proto.smtp.replies import Reply
from mailyard.sending.store import LimitOverrides, SendCounters, close_quietly
from mailyard.sending.window import Bucket, Exceeded, SendLimits, exceeded, minute_of, oldest_minute

log = logging.getLogger("mailyard.sending")

T = TypeVar("T")


def user_subject(address: str) -> str:
    return f"user:{address_key(address)}"


def domain_subject(address: str) -> str:
    return f"domain:{split_address(address)[1]}"


def _wait(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 7200:
        return f"{(seconds + 59) // 60} minutes"
    return f"{(seconds + 1799) // 3600} hours"


@dataclass(frozen=True)
class SendRefusal:
    """A limit is reached: whose, which, and when to try again."""

    subject: str  # "user:alice@example.org" or "domain:example.org"
    exceeded: Exceeded

    @property
    def retry_after(self) -> int:
        return self.exceeded.retry_after

    @property
    def text(self) -> str:
        ex = self.exceeded
        kind, _, name = self.subject.partition(":")
        per = "24 hours" if ex.window == "day" else "hour"
        what = f"{ex.limit} {ex.resource} per {per} for {kind} {name}"
        if ex.permanent:
            return f"Sending limit: more {ex.resource} than allowed at once ({what})"
        return f"Sending limit reached ({what}), try again in {_wait(ex.retry_after)}"

    @property
    def reply(self) -> Reply:
        """RFC 3463 3.8 X.7.0: a policy refusal, temporary."""
        return Reply(451, "4.7.0", self.text)


@dataclass(frozen=True)
class SendAllowance:
    """A sender's usage and limits, read once at the start of a transaction."""

    user: str
    now: float
    limits: dict[str, SendLimits] = field(default_factory=dict)
    buckets: dict[str, list[Bucket]] = field(default_factory=dict)

    def _refusal(self, messages: int, recipients: int,
                 pending: int = 0) -> SendRefusal | None:
        worst: SendRefusal | None = None
        taken = [Bucket(minute_of(self.now), 0, pending)] if pending else []
        for subject, limits in self.limits.items():
            found = exceeded([*self.buckets.get(subject, ()), *taken], limits, self.now,
                             messages=messages, recipients=recipients)
            if found is not None and (worst is None or found.retry_after > worst.retry_after):
                worst = SendRefusal(subject, found)
        return worst

    def message_refusal(self) -> SendRefusal | None:
        """May one more message start (MAIL)?"""
        return self._refusal(1, 0)

    def recipient_refusal(self, accepted: int) -> SendRefusal | None:
        """May a transaction that has ``accepted`` recipients take one more (RCPT)?"""
        return self._refusal(0, 1, pending=accepted)


class SendLimiter:
    """The limits over a :class:`SendCounters` store.  Blocking."""

    def __init__(self, store: SendCounters, config: SendingConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    def user_limits(self, address: str) -> tuple[SendLimits, LimitOverrides]:
        """The user's limits in effect, and its own settings."""
        own = self.store.overrides(user_subject(address))
        default = self.config.user_limits

        def pick(name: str) -> int:
            value: int | None = getattr(own, name)
            return getattr(default, name) if value is None else value

        return SendLimits(*(pick(n) for n in ("messages_per_hour", "messages_per_day",
                                              "recipients_per_hour",
                                              "recipients_per_day"))), own

    def allowance(self, address: str) -> SendAllowance:
        now = self.clock()
        limits = {user_subject(address): self.user_limits(address)[0],
                  domain_subject(address): self.config.domain_limits}
        limited = [s for s, lim in limits.items() if not lim.unlimited]
        buckets = self.store.buckets(limited, oldest_minute(now)) if limited else {}
        return SendAllowance(address, now, {s: limits[s] for s in limited}, buckets)

    def check(self, address: str, recipients: int, messages: int = 1) -> SendRefusal | None:
        """Would ``address`` go over a limit with this send?"""
        return self.allowance(address)._refusal(messages, recipients)

    def record(self, address: str, recipients: int, messages: int = 1) -> None:
        """Count an accepted message."""
        now = self.clock()
        self.store.add([user_subject(address), domain_subject(address)], minute_of(now),
                       messages, recipients)
        self.store.prune(oldest_minute(now))

    def close(self) -> None:
        close_quietly(self.store)


class ThreadedSendLimiter:
    """A :class:`SendLimiter` for the event loop: its calls run in one thread of
    their own; a store failure is logged and allows the mail."""

    def __init__(self, limiter: SendLimiter) -> None:
        self.limiter = limiter
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="send-limits")
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: object) -> T | None:
        if self._closed:
            return None
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., T], *args: object) -> T | None:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            log_event(log, "sending limits unavailable", level=logging.WARNING,
                      error=str(exc))
            return None

    async def allowance(self, address: str) -> SendAllowance | None:
        return await self._run(self.limiter.allowance, address)

    async def check(self, address: str, recipients: int) -> SendRefusal | None:
        """:meth:`SendLimiter.check` off the event loop (the HTTP API: 429 with
        ``Retry-After: refusal.retry_after``)."""
        return await self._run(self.limiter.check, address, recipients)

    async def record(self, address: str, recipients: int) -> None:
        await self._run(self.limiter.record, address, recipients)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._thread.submit(self.limiter.close)
        self._thread.shutdown(wait=False)

"""The session's deadline arithmetic, as a pure function of ``now``.

The adapter (:mod:`mailyard.smtpd.session`) records activity and state changes here
and asks, when its timer fires, what to do: nothing yet (and when to look again), or
close with a timeout reply.  No clock is read here, so the rules are unit-tested
without waiting:

* while waiting for a command: ``command`` seconds of silence, and a command line
  must be complete within ``command`` seconds of its first octet;
* during message content: ``data`` seconds between packets, and after
  ``rate_grace`` seconds the average rate must stay above ``min_rate``;
* between commands, a session older than ``max_session`` is closed;
* time spent waiting for our own answers never counts (the caller says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.proto.smtp.replies import REPLY_SESSION_TOO_LONG, REPLY_TIMEOUT, REPLY_TOO_SLOW, Reply
from mailyard.smtpd.context import SessionTimers

RATE_CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class Verdict:
    """Close with ``reply``, or (``reply`` None) look again at ``next_check``."""

    reply: Reply | None
    next_check: float


class Deadlines:
    def __init__(self, timers: SessionTimers, now: float) -> None:
        self.timers = timers
        self.last_activity = now
        self.session_deadline = now + timers.max_session
        self.in_content = False
        self.content_started = 0.0
        self.content_bytes = 0
        self.line_started: float | None = None

    def activity(self, now: float, size: int) -> None:
        self.last_activity = now
        if self.in_content:
            self.content_bytes += size

    def idle_limit(self) -> float:
        return self.timers.data if self.in_content else self.timers.command

    def first_check(self, early: bool = False) -> float:
        """When the timer should first fire (at connection time).  ``early``: no later
        than the first check of message content started right away, so that a timer
        armed now needs no re-arming when content starts or ends (the adapter only
        re-arms for an earlier check; a check before a deadline just looks again)."""
        first = min(self.last_activity + self.idle_limit(), self.session_deadline)
        if early:
            first = min(first, self.last_activity + self._content_window())
        return first

    def _content_window(self) -> float:
        """How long after content starts its first check is due."""
        grace = self.timers.rate_grace if self.timers.min_rate else self.timers.data
        return min(grace, self.timers.data)

    def content(self, started: bool, now: float) -> float:
        """Content started (or ended, back to commands); returns the next check."""
        self.in_content = started
        if started:
            self.content_started = now
            self.content_bytes = 0
            return now + self._content_window()
        return min(now + self.idle_limit(), self.session_deadline)

    def line(self, pending: bool, now: float) -> None:
        """An incomplete command line waits (its first octet's time is kept), or not."""
        if not pending:
            self.line_started = None
        elif self.line_started is None:
            self.line_started = now

    def check(self, now: float, waiting_for_us: bool) -> Verdict:
        if waiting_for_us:  # our own answer (or a handshake with its own timeout)
            return Verdict(None, now + self.idle_limit())
        limit = self.idle_limit()
        deadline = self.last_activity + limit
        if not self.in_content:
            if now >= self.session_deadline:
                return Verdict(REPLY_SESSION_TOO_LONG, now)
            if self.line_started is not None:
                deadline = min(deadline, self.line_started + limit)
            deadline = min(deadline, self.session_deadline)
        if now >= deadline:
            return Verdict(REPLY_TIMEOUT, now)
        if self.in_content and self.too_slow(now):
            return Verdict(REPLY_TOO_SLOW, now)
        if self.in_content and self.timers.min_rate:
            deadline = min(deadline, now + RATE_CHECK_INTERVAL)
        return Verdict(None, deadline)

    def too_slow(self, now: float) -> bool:
        elapsed = now - self.content_started
        if not self.timers.min_rate or elapsed < self.timers.rate_grace or elapsed <= 0:
            return False
        return self.content_bytes / elapsed < self.timers.min_rate

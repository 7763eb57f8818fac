"""Open-file limits: every process raises its ``RLIMIT_NOFILE`` soft limit to the hard
limit at start, and a worker lowers ``smtpd.max_connections`` when its connections
could not all get a descriptor.

The limit is per process, so the check is per worker: each worker holds at most
``smtpd.max_connections`` client sockets, plus while a message is being received its
spool file (and, for end-to-end routes, the connection to the next hop), plus a few
descriptors of its own (listening sockets, log file, directory database, pipes).
With the connection caps inside the limit, a flood of connections is refused with
``421`` (or, on port 465, closed) by the caps instead of exhausting descriptors.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailyard.config import Config
from mailyard.obs import log_event

__all__ = ["FdBudget", "AcceptErrorReporter", "connection_budget", "plan_worker",
           "raise_nofile_limit", "open_descriptors"]

log = logging.getLogger("mailyard.limits")

# Descriptors a worker needs besides its connections (listening sockets, log file,
# SQLite database and its WAL, pipes, the TLS certificate being read, uvloop's own).
RESERVED_DESCRIPTORS = 64
# Ceiling when the hard limit is "unlimited" (the kernel refuses more than nr_open).
UNLIMITED_TARGET = 1 << 20


def raise_nofile_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        # If refused, keep what we have: plan_worker() fits the caps to it.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else soft


def descriptors_per_connection(config: Config) -> int:
    """The socket and the spool file of a message being received; one more for the
    next hop when some route relays end to end."""
    end_to_end = any(t.mode == "end-to-end" for t in config.delivery.transports)
    return 3 if end_to_end else 2


def connection_budget(max_connections: int, nofile: int, per_connection: int,
                      reserved: int = RESERVED_DESCRIPTORS) -> int:
    """The most connections that fit in ``nofile`` descriptors (at least 1), and never
    more than ``max_connections``."""
    fit = max(1, (nofile - reserved) // per_connection)
    return min(max_connections, fit)


@dataclass(frozen=True)
class FdBudget:
    nofile: int
    configured: int
    max_connections: int

    @property
    def clamped(self) -> bool:
        return self.max_connections < self.configured


def plan_worker(config: Config, nofile: int) -> FdBudget:
    configured = config.smtpd.max_connections
    return FdBudget(nofile, configured,
                    connection_budget(configured, nofile, descriptors_per_connection(config)))


def log_budget(budget: FdBudget) -> None:
    if budget.clamped:
        log_event(log, "smtpd.max_connections lowered to fit the open-file limit",
                  level=logging.WARNING, key="smtpd.max_connections",
                  configured=budget.configured, effective=budget.max_connections,
                  nofile=budget.nofile,
                  hint="raise the hard RLIMIT_NOFILE (LimitNOFILE= in systemd) or lower "
                       "smtpd.max_connections")


def open_descriptors() -> int | None:
    """How many descriptors this process has open (Linux), else None."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


class AcceptErrorReporter:
    """One log line, at most every ``interval`` seconds, when accepting connections
    fails for want of descriptors (``EMFILE``/``ENFILE``); the event loop keeps
    retrying on its own.  Installed as the loop's exception handler; other errors go
    to the default handler."""

    def __init__(self, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last = float("-inf")
        self.suppressed = 0

    def __call__(self, loop: Any, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            self.report(exc.errno)
            return
        loop.default_exception_handler(context)

    def report(self, code: int, what: str = "accept failed: out of file descriptors") -> bool:
        """Log (rate-limited); True when a line was written."""
        now = self.clock()
        if now - self.last < self.interval:
            self.suppressed += 1
            return False
        self.last = now
        log_event(log, what, level=logging.ERROR, error=errno.errorcode.get(code, str(code)),
                  suppressed=self.suppressed,
                  nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.suppressed = 0
        return True

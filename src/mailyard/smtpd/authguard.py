"""The AUTH guard: what a password guess costs, and how many a client gets.

Every PLAIN or LOGIN try costs an argon2id verification (64 MiB, most of a CPU core
for a fraction of a second), unknown users included.  Two limits keep that cost
bounded:

* **Verification slots, per worker process** (:class:`AuthGate`).  At most
  ``smtpd.auth_concurrency`` verifications run at once in a worker, on a thread pool of
  that size (not the event loop's default executor); ``smtpd.auth_queue`` more may wait
  for a slot (and are checked against the counters again once they have one, since the
  tries ahead of them may have failed).  Beyond that the try is answered ``454 4.7.0``
  (RFC 4954 6, temporary authentication failure) at once, without hashing.  Memory thus
  stays under about ``auth_concurrency`` x 64 MiB per worker whatever the number of
  clients.

* **Failure counters, per node** (:class:`AuthGuard`): shared by every worker process of
  one server through ``<data_dir>/run/authguard.db``, not shared between servers (a
  second node keeps its own counts).  Failures are counted per client address (IPv6 by
  /64, since one host usually holds a whole /64) and per user name, in a window of
  ``smtpd.auth_failure_window`` seconds that starts at the first failure.  With ``n``
  failures counted for the address or the name, the next try waits
  ``auth_failure_delay`` x 2^(n-1) seconds (at most ``auth_failure_delay_max``) before
  it is verified; at ``auth_max_failures_per_ip`` (or ``_per_user``) failures it is
  answered ``421 4.7.0`` and the connection closed, without hashing, until the window
  ends.  A successful AUTH clears the user name's counter (not the address's).

Why SQLite for the shared counters: the workers are separate processes started by the
supervisor and share nothing but the data directory.  A small SQLite database in WAL
mode gives atomic read-modify-write of a counter across processes (the upsert below)
with no daemon to run, survives a worker restart (so crashing a worker does not reset
an attacker's count), and one transaction is a few tens of microseconds.  A shared mmap
file would be cheaper still, but needs its own locking, hashing and eviction; a
counter service (Dovecot's anvil) would be one more process to supervise.  The
database is never opened by hand (closing any descriptor of a SQLite file drops the
process's locks on it); it is created by SQLite and then made owner-only (0600).
Its calls block, so :class:`AuthGate` runs them on one dedicated thread, never on the
event loop.  If the database cannot be used, the counters are skipped (logged) and
AUTH still works, still bounded by the verification slots.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mailyard.config import SmtpdConfig
from mailyard.obs import log_event
from mailyard.proto.smtp.replies import (
    REPLY_AUTH_BUSY,
    REPLY_AUTH_FAILED,
    REPLY_AUTH_LOCKED_OUT,
    Reply,
)
from mailyard.sqlitedb import open_counters

__all__ = ["AuthGate", "AuthGuard", "AuthLimits", "Verdict", "guard_path"]

log = logging.getLogger("mailyard.smtpd")
T = TypeVar("T")

BUSY_TIMEOUT_MS = 2000
MAX_KEY_LENGTH = 320  # user names longer than any address are cut here
PRUNE_INTERVAL = 60.0  # seconds between sweeps of expired counters

_SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_failures (
    scope TEXT NOT NULL,          -- 'ip' or 'user'
    key TEXT NOT NULL,            -- client address (IPv6: its /64) or lower-cased user name
    count INTEGER NOT NULL,
    first REAL NOT NULL,          -- when the window started (the first failure in it)
    last REAL NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS auth_failures_first ON auth_failures (first);
"""

_FAIL = """
INSERT INTO auth_failures (scope, key, count, first, last) VALUES (?, ?, 1, ?, ?)
ON CONFLICT (scope, key) DO UPDATE SET
    count = CASE WHEN first < ? THEN 1 ELSE count + 1 END,
    first = CASE WHEN first < ? THEN excluded.first ELSE first END,
    last = excluded.last
"""


def guard_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "run" / "authguard.db"


@dataclass(frozen=True)
class AuthLimits:
    window: float = 600.0
    max_per_ip: int = 10  # 0: no limit
    max_per_user: int = 5  # 0: no limit
    delay: float = 0.5
    delay_max: float = 8.0

    @classmethod
    def from_config(cls, smtpd: SmtpdConfig) -> AuthLimits:
        return cls(window=smtpd.auth_failure_window,
                   max_per_ip=smtpd.auth_max_failures_per_ip,
                   max_per_user=smtpd.auth_max_failures_per_user,
                   delay=smtpd.auth_failure_delay, delay_max=smtpd.auth_failure_delay_max)

    def delay_after(self, failures: int) -> float:
        if failures <= 0 or self.delay <= 0:
            return 0.0
        return min(self.delay * 2.0 ** min(failures - 1, 30), self.delay_max)


@dataclass(frozen=True)
class Verdict:
    """What the counters say about the next try: refuse it (``locked`` names the
    counter: "ip" or "user"), or verify it after ``delay`` seconds."""

    ip_failures: int = 0
    user_failures: int = 0
    locked: str = ""
    delay: float = 0.0


def ip_key(ip: str) -> str:
    """The counted unit: an IPv4 address, or the /64 of an IPv6 address."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def user_key(username: str) -> str:
    return username.strip().lower()[:MAX_KEY_LENGTH]


class AuthGuard:
    """Failure counters in ``<data_dir>/run/authguard.db``, per node (shared by the
    node's worker processes).  Blocking: call it from one thread (a connection per
    thread is opened on first use).  ``clock`` is injectable for tests."""

    def __init__(self, path: Path | str, limits: AuthLimits,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.limits = limits
        self.clock = clock
        self._local = threading.local()
        self._last_prune = 0.0

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_counters(self.path, _SCHEMA, BUSY_TIMEOUT_MS)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def check(self, ip: str, username: str) -> Verdict:
        """The verdict for a try by ``username`` from ``ip`` (nothing is counted)."""
        limits = self.limits
        cutoff = self.clock() - limits.window
        rows = self._conn().execute(
            "SELECT scope, count FROM auth_failures WHERE first >= ? AND "
            "((scope = 'ip' AND key = ?) OR (scope = 'user' AND key = ?))",
            (cutoff, ip_key(ip), user_key(username))).fetchall()
        counts = dict(rows)
        by_ip, by_user = counts.get("ip", 0), counts.get("user", 0)
        if limits.max_per_ip and by_ip >= limits.max_per_ip:
            return Verdict(by_ip, by_user, locked="ip")
        if limits.max_per_user and by_user >= limits.max_per_user:
            return Verdict(by_ip, by_user, locked="user")
        return Verdict(by_ip, by_user, delay=limits.delay_after(max(by_ip, by_user)))

    def failed(self, ip: str, username: str) -> None:
        """Count one failed try against the address and the user name."""
        now = self.clock()
        cutoff = now - self.limits.window
        conn = self._conn()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            for scope, key in (("ip", ip_key(ip)), ("user", user_key(username))):
                conn.execute(_FAIL, (scope, key, now, now, cutoff, cutoff))
            if now - self._last_prune >= PRUNE_INTERVAL:
                conn.execute("DELETE FROM auth_failures WHERE first < ?", (cutoff,))
                self._last_prune = now

    def succeeded(self, username: str) -> None:
        """A successful AUTH clears the user name's counter (the address keeps its own)."""
        self._conn().execute("DELETE FROM auth_failures WHERE scope = 'user' AND key = ?",
                             (user_key(username),))


class AuthGate:
    """One worker's password verification path: the failure counters (on their own
    thread), the delay, and the verification slots (per process)."""

    def __init__(self, guard: AuthGuard | None, concurrency: int, queue: int) -> None:
        self.guard = guard
        self.concurrency = concurrency
        self.queue = queue
        self._hashing = ThreadPoolExecutor(concurrency, thread_name_prefix="auth-verify")
        self._counting = ThreadPoolExecutor(1, thread_name_prefix="auth-guard")
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting = 0
        self._closed = False

    @classmethod
    def from_config(cls, smtpd: SmtpdConfig, data_dir: str | os.PathLike[str]) -> AuthGate:
        guard = AuthGuard(guard_path(data_dir), AuthLimits.from_config(smtpd))
        return cls(guard, smtpd.auth_concurrency, smtpd.auth_queue)

    async def verify(self, ip: str, username: str, check: Callable[[], bool],
                     wanted: Callable[[], bool]) -> Reply | None:
        """Run ``check()`` (the password verification) within the limits: None when it
        succeeded, else the reply to send (535, or 454/421 without running it).  The
        outcome is counted before this returns.  ``wanted()`` false (the client left):
        give up before hashing.  Exceptions of ``check`` (a directory error) propagate."""
        refusal = await self.admit(ip, username)
        if refusal is not None:
            return refusal
        waited = self._slots.locked()
        if not wanted() or waited and self._waiting >= self.queue:
            return REPLY_AUTH_BUSY
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            if not wanted() or self._closed:
                return REPLY_AUTH_BUSY
            if waited:  # the failures of the tries ahead in the queue count too
                refusal = await self.admit(ip, username, delay=False)
                if refusal is not None:
                    return refusal
            ok = await asyncio.get_running_loop().run_in_executor(self._hashing, check)
        finally:
            self._slots.release()
        await self.record(ip, username, ok)
        return None if ok else REPLY_AUTH_FAILED

    async def admit(self, ip: str, username: str, delay: bool = True) -> Reply | None:
        """The counters' say on a try: 421 when locked out, else None (after the delay)."""
        if self.guard is None:
            return None
        verdict = await self._in_guard_thread(self.guard.check, ip, username)
        if verdict is None:
            return None
        if verdict.locked:
            return REPLY_AUTH_LOCKED_OUT  # logged as "smtp auth" with result=locked
        if delay and verdict.delay > 0:
            await asyncio.sleep(verdict.delay)
        return None

    async def record(self, ip: str, username: str, ok: bool) -> None:
        """Count a failed try, or clear the user name's counter after a success."""
        if self.guard is None:
            return
        if ok:
            await self._in_guard_thread(self.guard.succeeded, username)
        else:
            await self._in_guard_thread(self.guard.failed, ip, username)

    async def _in_guard_thread(self, fn: Callable[..., T], *args: str) -> T | None:
        if self._closed:  # the server is stopping
            return None
        return await asyncio.get_running_loop().run_in_executor(
            self._counting, self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., T], *args: str) -> T | None:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            path = self.guard.path if self.guard is not None else ""
            log_event(log, "auth guard unavailable", level=logging.WARNING,
                      path=str(path), error=str(exc))
            return None

    def close(self) -> None:
        """Stop the threads (verifications in progress finish); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._hashing.shutdown(wait=False, cancel_futures=True)
        if self.guard is not None:
            self._counting.submit(self.guard.close)
        self._counting.shutdown(wait=False)

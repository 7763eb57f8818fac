"""The TLS-RPT store: counts of outbound TLS sessions per day, policy domain, policy,
MX host and result, in ``<data_dir>/tls-rpt.db`` (SQLite, 0600).

Outcomes are counted in memory as sessions happen (:meth:`TlsOutcomes.record`, no
I/O) and added to the database in one transaction by :meth:`TlsOutcomes.flush`, on a
worker thread; delivery flushes every ``FLUSH_SECONDS`` and at shutdown.  Per node: a
second node counts its own sessions (and would send its own reports, as RFC 8460
expects of every sending MTA).  Counts are kept ``RETAIN_DAYS`` days.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mailyard.fs import create_private_database
from mailyard.metrics import OUTBOUND_TLS, Metrics
from mailyard.tlsrpt.results import PolicyTag, ResultType

__all__ = ["OutcomeRow", "TlsOutcomes", "utc_day"]

FLUSH_SECONDS = 30.0
RETAIN_DAYS = 31  # counts older than this are deleted (reports go out after one day)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcome (
    day TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    mx_host TEXT NOT NULL,
    result TEXT NOT NULL,          -- '' for a successful session, else the result type
    receiving_ip TEXT NOT NULL,
    detail TEXT NOT NULL,
    count INTEGER NOT NULL,
    policy_strings TEXT NOT NULL,  -- JSON list
    PRIMARY KEY (day, policy_domain, policy_type, mx_host, result, receiving_ip)
);
CREATE TABLE IF NOT EXISTS sent (
    day TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    PRIMARY KEY (day, policy_domain)
);
"""

_Key = tuple[str, str, str, str, str, str]  # day, domain, type, mx host, result, ip


def utc_day(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class OutcomeRow:
    day: str
    policy_domain: str
    policy_type: str
    mx_host: str
    result: str  # "" for success
    receiving_ip: str
    detail: str
    count: int
    policy_strings: tuple[str, ...]

    @property
    def success(self) -> bool:
        return not self.result


class TlsOutcomes:
    def __init__(self, path: Path | str | None, clock: Callable[[], float] = time.time) -> None:
        """``path`` None: counted in memory only (tests)."""
        self.clock = clock
        self._pending: dict[_Key, tuple[int, str, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._rows: dict[_Key, OutcomeRow] = {}  # the in-memory store when path is None
        self._last_flush = clock()
        self._pruned_day = ""
        self.metrics: Metrics | None = None  # counts each outcome as it is recorded too
        if path is not None:
            create_private_database(path)
            self._db = sqlite3.connect(str(path), check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.executescript(_SCHEMA)

    def record(self, policy: PolicyTag, mx_host: str, receiving_ip: str,
               result: ResultType | None, detail: str = "") -> None:
        """One session's outcome: ``result`` None for a successful TLS session."""
        key = (utc_day(self.clock()), policy.domain, policy.type.value, mx_host,
               result.value if result is not None else "", receiving_ip)
        count, _, _ = self._pending.get(key, (0, "", ()))
        self._pending[key] = (count + 1, detail[:500], policy.strings)
        if self.metrics is not None:
            self.metrics.inc(OUTBOUND_TLS, policy=key[2], result=key[4] or "success")

    def flush_due(self) -> bool:
        return bool(self._pending) and self.clock() - self._last_flush >= FLUSH_SECONDS

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        self._last_flush = self.clock()
        if not pending:
            return
        if self._db is None:
            self._merge_memory(pending)
            return
        today = utc_day(self.clock())
        cutoff = "" if today == self._pruned_day else utc_day(
            self.clock() - RETAIN_DAYS * 86400)
        self._pruned_day = today
        await asyncio.to_thread(self._write, pending, cutoff)

    def _merge_memory(self, pending: dict[_Key, tuple[int, str, tuple[str, ...]]]) -> None:
        for key, (count, detail, strings) in pending.items():
            old = self._rows.get(key)
            total = count + (old.count if old is not None else 0)
            self._rows[key] = OutcomeRow(*key[:6], detail, total, strings)

    def _write(self, pending: dict[_Key, tuple[int, str, tuple[str, ...]]],
               prune_before: str = "") -> None:
        assert self._db is not None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if prune_before:
                    self._db.execute("DELETE FROM outcome WHERE day < ?", (prune_before,))
                    self._db.execute("DELETE FROM sent WHERE day < ?", (prune_before,))
                for key, (count, detail, strings) in pending.items():
                    self._db.execute(
                        "INSERT INTO outcome VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT DO UPDATE SET count = count + excluded.count, "
                        "detail = excluded.detail, policy_strings = excluded.policy_strings",
                        (*key, detail, count, json.dumps(list(strings))))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def rows(self, day: str | None = None, domain: str | None = None) -> list[OutcomeRow]:
        """Stored rows (flushed ones), optionally of one day and policy domain."""
        if self._db is None:
            found = list(self._rows.values())
        else:
            with self._lock:
                cursor = self._db.execute(
                    "SELECT day, policy_domain, policy_type, mx_host, result, receiving_ip, "
                    "detail, count, policy_strings FROM outcome")
                found = [OutcomeRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                                    tuple(json.loads(r[8]))) for r in cursor]
        return sorted((r for r in found if (day is None or r.day == day)
                       and (domain is None or r.policy_domain == domain)),
                      key=lambda r: (r.day, r.policy_domain, r.policy_type, r.mx_host,
                                     r.result, r.receiving_ip))

    def mark_sent(self, day: str, domain: str) -> None:
        if self._db is not None:
            with self._lock:
                self._db.execute("INSERT OR IGNORE INTO sent VALUES (?, ?)", (day, domain))

    def was_sent(self, day: str, domain: str) -> bool:
        if self._db is None:
            return False
        with self._lock:
            return self._db.execute("SELECT 1 FROM sent WHERE day = ? AND policy_domain = ?",
                                    (day, domain)).fetchone() is not None

    def close(self) -> None:
        if self._db is not None:
            with self._lock:
                self._db.close()
            self._db = None

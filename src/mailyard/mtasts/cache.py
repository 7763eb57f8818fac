"""The MTA-STS policy cache (RFC 8461 5.1): the policies learned, kept across restarts
in ``<data_dir>/mta-sts.db`` (SQLite, 0600).

The table is small (one row per recipient domain that has a policy), so it is read
whole at start into memory; lookups never touch the disk, and writes go to SQLite on
a worker thread, never blocking the event loop.  Per process: each delivery process
keeps its own copy in memory; the file is shared by the processes of one node.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from mailyard.fs import create_private_database

__all__ = ["CachedPolicy", "PolicyCache"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS policy (
    domain TEXT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    text TEXT NOT NULL,
    fetched_at REAL NOT NULL,
    expires_at REAL NOT NULL
)"""


@dataclass(frozen=True)
class CachedPolicy:
    domain: str
    policy_id: str
    text: str
    fetched_at: float
    expires_at: float  # fetched_at + max_age

    def fresh(self, now: float) -> bool:
        return now < self.expires_at


class PolicyCache:
    def __init__(self, path: Path | str | None) -> None:
        """``path`` None: in memory only (tests, or no data directory)."""
        self._entries: dict[str, CachedPolicy] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        create_private_database(path)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(_SCHEMA)
        for row in self._db.execute(
                "SELECT domain, policy_id, text, fetched_at, expires_at FROM policy"):
            self._entries[row[0]] = CachedPolicy(*row)

    def get(self, domain: str) -> CachedPolicy | None:
        return self._entries.get(domain)

    def entries(self) -> list[CachedPolicy]:
        return sorted(self._entries.values(), key=lambda e: e.domain)

    async def put(self, entry: CachedPolicy) -> None:
        self._entries[entry.domain] = entry
        if self._db is not None:
            await asyncio.to_thread(self._write, entry)

    def _write(self, entry: CachedPolicy) -> None:
        assert self._db is not None
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO policy VALUES (?, ?, ?, ?, ?)",
                (entry.domain, entry.policy_id, entry.text, entry.fetched_at,
                 entry.expires_at))

    def close(self) -> None:
        if self._db is not None:
            with self._lock:
                self._db.close()
            self._db = None

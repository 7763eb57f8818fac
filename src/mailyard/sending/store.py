"""Where the sending counters and the per-user limits live.

:class:`SendCounters` is the storage interface (a PostgreSQL store for a cluster
implements the same); :class:`SqliteSendCounters` keeps them in
``<data_dir>/sending.db`` (mode 0600, WAL, a busy timeout), which every process of
the node opens: the SMTP workers count what they accept, ``mailyard send`` what it
queues, the CLI reads and sets the limits, and the counts survive a restart.

The buckets are those of :mod:`mailyard.sending.window`: one row per subject and
minute, upserted once per accepted message.  Blocking: call it from one thread (a
connection per thread is opened on first use).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

from mailyard.sending.window import Bucket
from mailyard.sqlitedb import open_counters

BUSY_TIMEOUT_MS = 5000
PRUNE_INTERVAL = 600  # seconds between deletions of buckets older than a day

_SCHEMA = """
CREATE TABLE IF NOT EXISTS send_buckets (
    subject TEXT NOT NULL,
    minute INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    recipients INTEGER NOT NULL,
    PRIMARY KEY (subject, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS send_overrides (
    subject TEXT PRIMARY KEY,
    messages_per_hour INTEGER,
    messages_per_day INTEGER,
    recipients_per_hour INTEGER,
    recipients_per_day INTEGER
);
"""

_ADD = ("INSERT INTO send_buckets (subject, minute, messages, recipients) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (subject, minute) DO UPDATE SET "
        "messages = messages + excluded.messages, "
        "recipients = recipients + excluded.recipients")


@dataclass(frozen=True)
class LimitOverrides:
    """A subject's own limits: None follows the configured default, 0 is unlimited."""

    messages_per_hour: int | None = None
    messages_per_day: int | None = None
    recipients_per_hour: int | None = None
    recipients_per_day: int | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


class SendCounters(Protocol):
    def buckets(self, subjects: Sequence[str], since_minute: int) -> dict[str, list[Bucket]]:
        """The buckets of each subject from ``since_minute`` on."""
        ...

    def add(self, subjects: Sequence[str], minute: int, messages: int,
            recipients: int) -> None:
        """Count an accepted message for every subject, atomically."""
        ...

    def prune(self, before_minute: int) -> None: ...

    def overrides(self, subject: str) -> LimitOverrides: ...

    def set_overrides(self, subject: str, overrides: LimitOverrides) -> None: ...

    def close(self) -> None: ...


def sending_db_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "sending.db"


class SqliteSendCounters:
    """:class:`SendCounters` in one SQLite file.  Raises sqlite3.Error or OSError."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
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

    def buckets(self, subjects: Sequence[str], since_minute: int) -> dict[str, list[Bucket]]:
        out: dict[str, list[Bucket]] = {s: [] for s in subjects}
        if not subjects:
            return out
        marks = ",".join("?" * len(subjects))
        rows = self._conn().execute(
            f"SELECT subject, minute, messages, recipients FROM send_buckets "  # noqa: S608
            f"WHERE subject IN ({marks}) AND minute >= ?", (*subjects, since_minute))
        for subject, minute, messages, recipients in rows:
            out[subject].append(Bucket(minute, messages, recipients))
        return out

    def add(self, subjects: Sequence[str], minute: int, messages: int,
            recipients: int) -> None:
        conn = self._conn()
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            for subject in subjects:
                conn.execute(_ADD, (subject, minute, messages, recipients))

    def prune(self, before_minute: int) -> None:
        now = time.monotonic()
        if now - self._last_prune < PRUNE_INTERVAL and self._last_prune:
            return
        self._last_prune = now
        self._conn().execute("DELETE FROM send_buckets WHERE minute < ?", (before_minute,))

    def overrides(self, subject: str) -> LimitOverrides:
        row = self._conn().execute(
            "SELECT messages_per_hour, messages_per_day, recipients_per_hour, "
            "recipients_per_day FROM send_overrides WHERE subject = ?", (subject,)).fetchone()
        return LimitOverrides(*row) if row else LimitOverrides()

    def set_overrides(self, subject: str, overrides: LimitOverrides) -> None:
        conn = self._conn()
        with conn:
            if overrides.empty:
                conn.execute("DELETE FROM send_overrides WHERE subject = ?", (subject,))
                return
            conn.execute(
                "INSERT OR REPLACE INTO send_overrides (subject, messages_per_hour, "
                "messages_per_day, recipients_per_hour, recipients_per_day) "
                "VALUES (?, ?, ?, ?, ?)",
                (subject, overrides.messages_per_hour, overrides.messages_per_day,
                 overrides.recipients_per_hour, overrides.recipients_per_day))


def close_quietly(store: SendCounters) -> None:
    with contextlib.suppress(sqlite3.Error, OSError):
        store.close()

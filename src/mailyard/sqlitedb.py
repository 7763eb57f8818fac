"""A small SQLite database of the server's own: private file, WAL, schema migrations.

The contact store and the API keys each keep one (``bulk.db``, ``apikeys.db`` in
``data_dir``).  They are read and written by the CLI and by every HTTP worker at once,
so:

* the file is created 0600 (:func:`mailyard.fs.create_private_database`), and WAL lets
  readers go on while one process writes;
* each thread gets its own connection (the HTTP service runs blocking calls on a thread
  pool), in autocommit mode; :meth:`Database.transaction` wraps a change in
  ``BEGIN IMMEDIATE`` so a writer never has to upgrade a read lock, which is what makes
  SQLite answer "database is locked" despite the busy timeout;
* the schema carries a version (``PRAGMA user_version``): each migration script is
  applied once, in order, inside the transaction that records its number; a database
  newer than this program is refused with both versions named.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from mailyard.fs import create_private_database

BUSY_TIMEOUT_MS = 10_000

#: Pauses between tries for another process's write lock (seconds; the last repeats).
#: SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries, so a
#: writer that finds a lock held for a fraction of a millisecond commonly waits 10-20
#: ms: with several processes writing one database (the queue index: every SMTP
#: worker, the supervisor, the campaign worker) those sleeps, not the work, set how
#: long a commit takes.  These pauses keep the wait within about a millisecond of the
#: lock's release, for a few failed tries (microseconds each) more.
LOCK_PAUSES = (0.0001, 0.0002, 0.0005, 0.001, 0.002)


def begin_immediate(conn: sqlite3.Connection, timeout_ms: int) -> None:
    """``BEGIN IMMEDIATE`` on ``conn``, waiting up to ``timeout_ms`` for another
    writer's lock with :data:`LOCK_PAUSES` rather than the busy handler's long sleeps;
    raises ``sqlite3.OperationalError`` ("database is locked") after that.  The
    connection's busy timeout is ``timeout_ms`` again afterwards, for everything else."""
    deadline = time.monotonic() + timeout_ms / 1000
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        for tries in itertools.count():
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if (exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY
                        or time.monotonic() >= deadline):
                    raise
            time.sleep(LOCK_PAUSES[min(tries, len(LOCK_PAUSES) - 1)])
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")


class SchemaTooNew(Exception):
    """The database was written by a newer Mailyard."""


class Database:
    """One SQLite file, a connection per thread, migrations applied at first use."""

    def __init__(self, path: Path, migrations: Sequence[str], *,
                 synchronous: str = "FULL", secure_delete: bool = False) -> None:
        self.path = Path(path)
        self.migrations = tuple(migrations)
        self.synchronous = synchronous
        self.secure_delete = secure_delete
        self._local = threading.local()
        self._migrated = False
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        return len(self.migrations)

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_private_database(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        if self.secure_delete:  # deleted rows are overwritten, not left in free pages
            conn.execute("PRAGMA secure_delete = ON")
        with self._lock:
            if not self._migrated:
                self._migrate(conn)
                self._migrated = True
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > self.version:
            raise SchemaTooNew(f"{self.path}: schema version {current} is newer than this "
                               f"program's ({self.version}); upgrade Mailyard")
        if current == self.version:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(current, self.version):
                for statement in self.migrations[number].split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {self.version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Copy the WAL into the database and empty it (when no reader holds it), so
        that deleted content does not linger in the WAL file."""
        self.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close this thread's connection (the others close with their threads)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def open_counters(path: Path, schema: str, busy_timeout_ms: int, attempts: int = 100
                  ) -> sqlite3.Connection:
    """A connection to a small per-node counter database (the AUTH guard's failures,
    sending limits): private file, WAL, ``synchronous = NORMAL`` (counters, not mail),
    ``schema`` applied.  Worker processes start together and may all find a new file:
    switching it to WAL needs the database to themselves and SQLite answers "locked"
    at once, without waiting for the busy timeout, to all but one; they try again.
    Raises sqlite3.Error or OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    create_private_database(path)
    # An older file may have been created with a wider mode; another user's file
    # (PermissionError): its owner chose the mode.
    with contextlib.suppress(PermissionError):
        os.chmod(path, 0o600)
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        for attempt in range(attempts):
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.executescript(schema)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.01 + 0.002 * attempt)
    except BaseException:
        conn.close()
        raise
    return conn

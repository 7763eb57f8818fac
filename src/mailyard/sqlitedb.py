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

:class:`WriterLock` is for a database that several processes write many times a
second (the queue index): its writers wait for each other in the kernel.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from mailyard.fs import create_private_database

BUSY_TIMEOUT_MS = 10_000


class WriterLock:
    """An exclusive lock that a database's writers in every process take before
    ``BEGIN IMMEDIATE`` and drop after ``COMMIT``: ``flock`` on a file of its own.

    Several processes write the queue index (every SMTP worker, the supervisor, the
    campaign worker).  Waiting for SQLite's write lock means trying again: its busy
    handler sleeps 1, 2, 5, 10 ... ms between tries, and polling it more often spends
    a failed ``BEGIN`` and a sleep and wake-up per try.  A writer waiting here sleeps
    in the kernel until the holder drops the lock and is woken then, once.  SQLite's
    own lock still guards the data: a writer that does not take this lock (the
    ``sqlite3`` shell) is waited for by the busy timeout as before.

    The lock belongs to the open file description, so each instance opens its own:
    two instances exclude each other in one process as in two, and a process that dies
    holding the lock loses it with its descriptors.  The file is created 0600 and
    holds nothing; made by root (a CLI command), it is given to the owner of
    ``database``, as SQLite does with its ``-wal`` and ``-shm`` files.  A holder keeps
    the lock for one write transaction; there is no timeout on the wait (a holder
    stopped with SIGSTOP stops the other writers too)."""

    def __init__(self, path: Path, database: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.geteuid() == 0:
                owner, mine = os.stat(database), os.fstat(self._fd)
                if (owner.st_uid, owner.st_gid) != (mine.st_uid, mine.st_gid):
                    os.fchown(self._fd, owner.st_uid, owner.st_gid)
        except OSError:
            self.close()
            raise

    def __enter__(self) -> WriterLock:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


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

"""The database of the mailbox index: opening, transactions and the row operations
every change is made of.

:class:`IndexDatabase` opens ``mailyard-index.db`` (WAL, a busy timeout, the schema
created or migrated; a damaged file is set aside and rebuilt under new
UIDVALIDITYs), runs one ``BEGIN IMMEDIATE`` write transaction or one read
transaction at a time per process (:meth:`IndexDatabase._write`,
:meth:`IndexDatabase._read`), and holds the steps the folder, sync and message
operations share: a folder's row (made on first use), reading message rows,
indexing a file, forgetting expunged UIDs with their mod-sequence, recording the
index's own changes to ``cur/``.  It is the base class of
:class:`~mailyard.store.index.MailboxIndex`; the operations are in
:mod:`~mailyard.store.index_folders`, :mod:`~mailyard.store.index_changes` and
:mod:`~mailyard.store.index_messages`.
"""

from __future__ import annotations

import errno
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mailyard.fs import create_private_database, disk_full
from mailyard.message import structure
from mailyard.store.api import INBOX, MailboxNameError
from mailyard.store.index_files import (
    _flags,
    _mtime_ns,
    _split,
    clamp_internal_date,
    disk_name,
    normalize,
)
from mailyard.store.index_schema import (
    _MESSAGE_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    _Cached,
    _cached,
    _migrate_1,
    _store_structures,
)
from mailyard.store.maildir import Maildir, message_sizes, read_message

INDEX_NAME = "mailyard-index.db"
BUSY_TIMEOUT_MS = 30_000


class MailboxIndexError(OSError):
    """The index database cannot be used (I/O error, locked past the timeout, a full
    disk: then its errno is ENOSPC)."""


def index_error(path: Path, exc: BaseException) -> MailboxIndexError:
    """The :class:`MailboxIndexError` for a failure of the index at ``path``."""
    if disk_full(exc):
        return MailboxIndexError(errno.ENOSPC, f"mailbox index {path}: {exc}")
    return MailboxIndexError(f"mailbox index {path}: {exc}")


@contextmanager
def undone_on_failure() -> Iterator[list[Callable[[], None]]]:
    """A list of file operations to undo, last first, if the block fails with a
    storage error (the index commit included, when the block holds the write
    transaction: a full disk).  Anything else is left as a crash would leave it, for
    the next sync."""
    undo: list[Callable[[], None]] = []
    try:
        yield undo
    except OSError:
        for step in reversed(undo):
            with suppress(OSError):
                step()
        raise


class FolderNotFound(MailboxNameError):
    """No such folder (IMAP ``NO [NONEXISTENT]`` / ``[TRYCREATE]``)."""


@dataclass(frozen=True)
class MessageInfo:
    uid: int
    flags: frozenset[str]  # system flags ("\\Seen") and keywords
    modseq: int
    internal_date: float  # seconds since the epoch
    size: int  # RFC822.SIZE: octets with CRLF line ends
    path: Path  # the file now (it changes with the flags)


@dataclass(frozen=True)
class _Row:
    uid: int
    base: str
    filename: str
    letters: str
    keywords: str
    modseq: int
    internal_date: float
    size: int


_ROW = "uid, base, filename, letters, keywords, modseq, internal_date, size"


class IndexDatabase:
    """The index database of one user's mailbox and the row operations on it."""

    inbox: Maildir
    clock: Callable[[], float]
    path: Path
    _lock: threading.Lock
    _db: sqlite3.Connection

    # --- the database ----------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and (
                    "locked" in str(exc) or disk_full(exc)):  # not damage: keep the file
                raise index_error(self.path, exc) from exc
            self._set_aside()  # damaged: rebuilt from the Maildir under new UIDVALIDITYs
            try:
                return self._connect()
            except sqlite3.DatabaseError as again:
                raise index_error(self.path, again) from again

    def _connect(self) -> sqlite3.Connection:
        try:
            create_private_database(self.path)
        except OSError as exc:
            raise MailboxIndexError(exc.errno, f"cannot create mailbox index {self.path}: {exc}"
                                    ) from exc
        db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000,
                             isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._upgrade(db)
            db.execute("SELECT count(*) FROM folders").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _upgrade(db: sqlite3.Connection) -> None:
        """Create the schema, or bring an older one up to :data:`SCHEMA_VERSION`
        (under the write lock: another process may be doing the same)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:
                _migrate_1(db)
            elif version != SCHEMA_VERSION:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _set_aside(self) -> None:
        stamp = f"{int(self.clock())}-{secrets.token_hex(3)}"
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.rename(f"{self.path}{suffix}", f"{self.path}.damaged-{stamp}{suffix}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, the database lock taken up front."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise index_error(self.path, exc) from exc
            try:
                yield self._db
            except sqlite3.Error as exc:  # a full disk while writing a row
                self._rollback()
                raise index_error(self.path, exc) from exc
            except BaseException:
                self._rollback()
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise index_error(self.path, exc) from exc

    def _rollback(self) -> None:
        """Roll the open transaction back (SQLite may have done so itself already,
        after SQLITE_FULL)."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # --- folders --------------------------------------------------------------------
    def maildir(self, name: str) -> Maildir:
        name = normalize(name)
        return self.inbox if name == INBOX else self.inbox.folder(disk_name(name))

    def _next_uidvalidity(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
        value = max(int(self.clock()) & 0xFFFFFFFF, (row[0] if row else 0) + 1)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('uidvalidity', ?)", (value,))
        return value

    def _folder(self, db: sqlite3.Connection, name: str,
                special_use: str | None = None) -> tuple[int, int, int, int]:
        """(id, uidvalidity, uidnext, highestmodseq) of an existing folder; its row is
        made on first use.  Raises FolderNotFound (dropping a stale row)."""
        box = self.maildir(name)
        row = db.execute("SELECT id, uidvalidity, uidnext, highestmodseq FROM folders"
                         " WHERE name = ?", (name,)).fetchone()
        if not box.exists():
            if row is not None:
                self._drop_rows(db, row[0])
            raise FolderNotFound(f"no folder {name!r}")
        if row is not None:
            return row[0], row[1], row[2], row[3]
        validity = self._next_uidvalidity(db)
        cur = db.execute("INSERT INTO folders (name, uidvalidity, uidnext, highestmodseq,"
                         " special_use) VALUES (?, ?, 1, 1, ?)", (name, validity, special_use))
        assert cur.lastrowid is not None
        return cur.lastrowid, validity, 1, 1

    @staticmethod
    def _drop_rows(db: sqlite3.Connection, folder_id: int) -> None:
        for table, column in (("messages", "folder"), ("structures", "folder"),
                              ("expunged", "folder"),
                              ("folders", "id")):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (folder_id,))

    # --- message rows -------------------------------------------------------------
    def _insert(self, db: sqlite3.Connection, fid: int, uid: int, path: Path, letters: str,
                keywords: str, modseq: int,
                cached: _Cached | None = None) -> bool:
        """Index one file under ``uid``; False if it vanished meanwhile."""
        if cached is None:
            try:
                data = read_message(path)
                mtime = clamp_internal_date(path.stat().st_mtime)
            except FileNotFoundError:
                return False
            sizes = message_sizes(path.name)
            size = sizes[1] if sizes and sizes[1] is not None else len(data)
            cached = _cached(mtime, size, *structure.compute(data))
        base = _split(path.name)[0]
        db.execute(f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES"
                   " (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (fid, uid, base, path.name, letters, keywords, modseq, *cached[:2]))
        _store_structures(db, fid, uid, cached)
        return True

    @staticmethod
    def _own_change(db: sqlite3.Connection, fid: int, cur: Path, before: int) -> None:
        """This transaction changed ``cur/`` (through the index, so the index is
        right): if ``cur/`` was as the index last saw it (``before``, its mtime before
        the change, is the one recorded), record its new mtime, so that only
        changes by other programs make :meth:`check` say CHANGED."""
        mtime = _mtime_ns(cur)
        if mtime == before:
            return  # the same clock tick: nothing to record (and no proof to lose)
        got = db.execute("SELECT cur_mtime FROM folders WHERE id = ?", (fid,)).fetchone()
        if got is not None and got[0] == before:
            db.execute("UPDATE folders SET cur_mtime = ?, cur_checked = ? WHERE id = ?",
                       (mtime, time.time_ns(), fid))

    @staticmethod
    def _rows(db: sqlite3.Connection, fid: int, uids: Iterable[int] | None = None) -> list[_Row]:
        if uids is None:
            got = db.execute(f"SELECT {_ROW} FROM messages WHERE folder = ? ORDER BY uid",
                             (fid,)).fetchall()
        else:
            got = []
            for uid in sorted(set(uids)):
                got += db.execute(f"SELECT {_ROW} FROM messages WHERE folder = ? AND uid = ?",
                                  (fid, uid)).fetchall()
        return [_Row(*r) for r in got]

    @staticmethod
    def _forget(db: sqlite3.Connection, fid: int, uids: Sequence[int], modseq: int) -> None:
        db.executemany("DELETE FROM messages WHERE folder = ? AND uid = ?",
                       [(fid, u) for u in uids])
        db.executemany("DELETE FROM structures WHERE folder = ? AND uid = ?",
                       [(fid, u) for u in uids])
        db.executemany("INSERT OR REPLACE INTO expunged VALUES (?, ?, ?)",
                       [(fid, u, modseq) for u in uids])

    @staticmethod
    def _info(box: Maildir, r: _Row, cur: Path | None = None) -> MessageInfo:
        """``cur``: the folder's ``cur/`` path, when the caller has it (one path join
        per message instead of two: they add up over a large folder)."""
        return MessageInfo(r.uid, _flags(r.letters, r.keywords), r.modseq, r.internal_date,
                           r.size, (cur or box.path / "cur") / r.filename)

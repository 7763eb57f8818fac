"""The per-user mailbox index: UIDs, flags, mod-sequences and cached structure.

One SQLite database per user, ``mailyard-index.db`` in the root of the user's
Maildir (mode 0600, WAL, a busy timeout), holds for each folder its UIDVALIDITY,
UIDNEXT and HIGHESTMODSEQ, and for each message its UID, Maildir base name (the
part of the file name before ``:2,``, stable across flag changes), flags, keywords,
mod-sequence, internal date and RFC822.SIZE, and in a table of its own (so that the
message rows every sync reads stay small) the cached ENVELOPE and BODYSTRUCTURE,
also in IMAP wire form (:mod:`mailyard.proto.imap.structwire`).  Expunged UIDs are
remembered with the mod-sequence of their expunge, for QRESYNC's VANISHED
(RFC 7162 3.2.10).  The schema carries a version (``PRAGMA user_version``); an
older index is migrated when it is opened.

**The Maildir is the source of truth.**  :meth:`MailboxIndex.sync` brings the index
in line with the disk: files another program (or local delivery) put into ``new/``
are moved to ``cur/`` and get UIDs in arrival order; files that disappeared are
expunged; flags changed in file names (by mutt, or a crash) are taken over.  Every
mutation does its file operations first and commits the index after, inside one
``BEGIN IMMEDIATE`` transaction (UIDNEXT and mod-sequences are assigned in it), so
a crash between the two leaves a state the next sync repairs: a file without a row
gets a new UID, a row without a file is expunged, a file name whose flags differ
from the row wins.  A UID is never handed out twice: UIDNEXT only grows, and a
lost or damaged index is rebuilt under a new UIDVALIDITY.  Each folder's row
records the mtime of its ``cur/`` as of the last sync or change through the index
(:meth:`MailboxIndex.check`, :class:`CurState`): a different mtime means another
program changed ``cur/``, and only then is a full listing needed.

**Flags** \\Seen \\Answered \\Flagged \\Deleted \\Draft are the Maildir info letters
S R F T D in the file name (as Dovecot writes them, so Dovecot and mutt see them);
keywords live in the index only.  Other info letters found in a name are kept.

**Folders** are Maildir++ ``.Name`` directories with a ``maildirfolder`` marker; the
IMAP hierarchy delimiter ``/`` is ``.`` on disk and each level is modified UTF-7, as
Dovecot stores them.  A level may not contain ``.``, ``%``, ``*``, ``\\`` or control
characters.  The default folders (Drafts, Sent, Junk, Trash, Archive) are created
with their SPECIAL-USE attributes (RFC 6154) when the index is first created.

Every method is blocking (disk and SQLite): run them in a worker thread, as the
store's other methods (see ``store/api.py``).  One :class:`MailboxIndex` may be
shared by the threads of a process; any number of processes may open the same
mailbox at once.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mailyard.fs import create_private_database, fsync_dir
from mailyard.message import structure
from mailyard.proto.imap import mutf7, structwire
from mailyard.store.api import INBOX, MailboxNameError, Source
from mailyard.store.maildir import Maildir, message_sizes, read_message
from mailyard.store.quota import QuotaUsage

INDEX_NAME = "mailyard-index.db"
DELIMITER = "/"
BUSY_TIMEOUT_MS = 30_000
MTIME_TICK_NS = 50_000_000  # file system timestamps lag the clock by up to a tick
SCHEMA_VERSION = 2  # 2: the IMAP wire form of the cached structures

#: IMAP system flag -> Maildir info letter (maildir(5), Dovecot).
FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                "\\Deleted": "T"}
_LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}
_FLAG_CANON = {k.lower(): k for k in FLAG_LETTERS}

#: The default folders and their SPECIAL-USE attributes (RFC 6154).
DEFAULT_FOLDERS = {"Drafts": "\\Drafts", "Sent": "\\Sent", "Junk": "\\Junk",
                   "Trash": "\\Trash", "Archive": "\\Archive"}

_BAD_LEVEL = re.compile(r"[.%*\\\x00-\x1f\x7f]")
_NAME_TIME = re.compile(r"(\d+)\.(?:M(\d+))?")
_counter = iter(range(1, 1 << 62))

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    highestmodseq INTEGER NOT NULL,
    special_use TEXT,
    cur_mtime INTEGER NOT NULL DEFAULT 0,
    cur_checked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    base TEXT NOT NULL,
    filename TEXT NOT NULL,
    letters TEXT NOT NULL,
    keywords TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    internal_date REAL NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS structures (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    wire_utf8 INTEGER NOT NULL,
    body_wire BLOB NOT NULL,
    bodystructure_wire BLOB NOT NULL,
    envelope_wire BLOB NOT NULL,
    envelope TEXT NOT NULL,
    bodystructure TEXT NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_base ON messages(folder, base);
CREATE INDEX IF NOT EXISTS messages_modseq ON messages(folder, modseq);
CREATE TABLE IF NOT EXISTS expunged (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(folder, modseq);
"""

#: Version 1 -> 2: the cached structures move out of ``messages`` (whose rows are read
#: whole by every sync: small rows make that fast) into ``structures``, with their
#: wire form (small columns first: SQLite reads a row's columns in order).
MIGRATE_1 = """
ALTER TABLE folders ADD COLUMN cur_mtime INTEGER NOT NULL DEFAULT 0;
ALTER TABLE folders ADD COLUMN cur_checked INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS structures (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    wire_utf8 INTEGER NOT NULL,
    body_wire BLOB NOT NULL,
    bodystructure_wire BLOB NOT NULL,
    envelope_wire BLOB NOT NULL,
    envelope TEXT NOT NULL,
    bodystructure TEXT NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(folder, modseq);
"""
_MESSAGE_COLUMNS = ("folder, uid, base, filename, letters, keywords, modseq, internal_date,"
                    " size")
_CACHED = ("m.internal_date, m.size, s.envelope, s.bodystructure, s.envelope_wire,"
           " s.bodystructure_wire, s.body_wire, s.wire_utf8")
#: What FETCH may take from the index as octets: item -> column.
WIRE_ITEMS = {"ENVELOPE": "envelope_wire", "BODYSTRUCTURE": "bodystructure_wire",
              "BODY": "body_wire"}
_Cached = tuple[float, int, str, str, bytes, bytes, bytes, int]


def _cached(mtime: float, size: int, env: structure.Structure,
            body: structure.Structure) -> _Cached:
    """What the index keeps about a message's content (see :data:`_CACHED`)."""
    wire = structwire.encode(env, body)
    return (mtime, size, structure.dumps(env), structure.dumps(body), wire.envelope,
            wire.bodystructure, wire.body, int(wire.utf8_differs))


def _store_structures(db: sqlite3.Connection, fid: int, uid: int, cached: _Cached) -> None:
    env, body, env_wire, bs_wire, body_wire, utf8 = cached[2:]
    db.execute("INSERT OR REPLACE INTO structures (folder, uid, wire_utf8, body_wire,"
               " bodystructure_wire, envelope_wire, envelope, bodystructure)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (fid, uid, utf8, body_wire, bs_wire, env_wire, env, body))


def _migrate_1(db: sqlite3.Connection) -> None:
    for statement in MIGRATE_1.split(";"):
        if statement.strip():
            db.execute(statement)
    rows = db.execute("SELECT folder, uid, internal_date, size, envelope, bodystructure"
                      " FROM messages").fetchall()
    for fid, uid, mtime, size, env, body in rows:
        _store_structures(db, fid, uid, _cached(mtime, size, structure.loads(env),
                                                structure.loads(body)))
    db.execute("ALTER TABLE messages DROP COLUMN envelope")
    db.execute("ALTER TABLE messages DROP COLUMN bodystructure")


class MailboxIndexError(OSError):
    """The index database cannot be used (I/O error, locked past the timeout)."""


class FolderNotFound(MailboxNameError):
    """No such folder (IMAP ``NO [NONEXISTENT]`` / ``[TRYCREATE]``)."""


class FolderExists(MailboxNameError):
    """The folder exists already (IMAP ``NO [ALREADYEXISTS]``)."""


@dataclass(frozen=True)
class MessageInfo:
    uid: int
    flags: frozenset[str]  # system flags ("\\Seen") and keywords
    modseq: int
    internal_date: float  # seconds since the epoch
    size: int  # RFC822.SIZE: octets with CRLF line ends
    path: Path  # the file now (it changes with the flags)


@dataclass(frozen=True)
class FolderState:
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: tuple[MessageInfo, ...]  # in UID order: message sequence numbers


class CurState(StrEnum):
    """What the mtime of a folder's ``cur/`` says (see :meth:`MailboxIndex.check`).

    The index records the mtime of ``cur/`` when a sync lists it and after each of
    its own changes there (flags are file names, expunges and moves unlink and
    rename), if ``cur/`` had not changed otherwise in between.  Another mtime now
    means another program (mutt, POP3 without the index) changed ``cur/``: CHANGED,
    sync.  The same mtime, recorded less than a clock tick after it was set, cannot
    exclude a change in that same tick (file system timestamps are coarse): UNSURE,
    sync once the folder is quiet.  Else CLEAN: the index is right."""

    CLEAN = "clean"
    UNSURE = "unsure"
    CHANGED = "changed"


@dataclass(frozen=True)
class FolderCheck:
    header: tuple[int, int, int]  # UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ
    cur: CurState


@dataclass(frozen=True)
class FolderInfo:
    name: str
    special_use: str | None


@dataclass(frozen=True)
class StoreResult:
    messages: tuple[MessageInfo, ...]  # the messages the STORE applied to, as they are now
    modified: tuple[int, ...]  # UIDs that failed UNCHANGEDSINCE (RFC 7162 [MODIFIED])


@dataclass(frozen=True)
class CopyResult:
    uidvalidity: int  # of the target (RFC 4315 COPYUID)
    uids: tuple[tuple[int, int], ...]  # (source UID, target UID)


@dataclass(frozen=True)
class Changes:
    messages: tuple[MessageInfo, ...]  # changed or added after the mod-sequence
    vanished: tuple[int, ...]  # UIDs expunged after it


# --- names ------------------------------------------------------------------------------

def normalize(name: str) -> str:
    """The canonical IMAP name: ``INBOX`` in any case is ``INBOX``.  Raises
    :class:`MailboxNameError` for a name that cannot be stored."""
    if name.upper() == INBOX:
        return INBOX
    levels = name.split(DELIMITER)
    for level in levels:
        if not level or _BAD_LEVEL.search(level) or level.strip() != level:
            raise MailboxNameError(f"cannot use {name!r} as a folder name")
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    return DELIMITER.join(levels)


def disk_name(name: str) -> str:
    """``A/B`` -> ``A.B`` with each level in modified UTF-7 (without the leading dot)."""
    return ".".join(mutf7.encode(level).decode("ascii") for level in name.split(DELIMITER))


def imap_name(entry: str) -> str | None:
    """The IMAP name of a ``.Name`` directory entry, None if it is not a folder."""
    if not entry.startswith(".") or entry in (".", ".."):
        return None
    levels = entry[1:].split(".")
    try:
        decoded = [mutf7.decode(level.encode("ascii")) for level in levels]
    except (UnicodeEncodeError, mutf7.MUtf7Error):
        return None
    if any(not level or DELIMITER in level for level in decoded):
        return None
    return DELIMITER.join(decoded)


def _split(filename: str) -> tuple[str, str]:
    """(base, info letters) of a Maildir file name."""
    base, sep, info = filename.partition(":")
    return base, (info[2:] if sep and info.startswith("2,") else "")


def _letters_of(flags: Iterable[str]) -> tuple[str, list[str]]:
    """(system flag letters, keywords) of IMAP flags."""
    letters: set[str] = set()
    keywords: list[str] = []
    for flag in flags:
        canon = _FLAG_CANON.get(flag.lower())
        if canon is not None:
            letters.add(FLAG_LETTERS[canon])
        elif not flag.startswith("\\") and flag not in keywords:
            keywords.append(flag)
    return "".join(sorted(letters)), keywords


@functools.lru_cache(maxsize=4096)
def _flags(letters: str, keywords: str) -> frozenset[str]:
    """The flag set of a row; one shared object per distinct set (a folder has few:
    building them is a good part of reading a large folder, and FLAGS rendering and
    keyword listing go by distinct set)."""
    return frozenset([_LETTER_FLAGS[c] for c in letters if c in _LETTER_FLAGS]
                     + keywords.split())


def _with_letters(filename: str, letters: str) -> str:
    """``filename`` with its system letters set to ``letters`` (other letters kept)."""
    base, info = _split(filename)
    others = {c for c in info if c not in _LETTER_FLAGS}
    return f"{base}:2,{''.join(sorted(others | set(letters)))}"


def _arrival(path: Path) -> tuple[int, int, float, str]:
    m = _NAME_TIME.match(path.name)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        mtime = 0.0
    if m is None:
        return int(mtime), 0, mtime, path.name
    return int(m.group(1)), int(m.group(2) or 0), mtime, path.name


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


# --- the index ---------------------------------------------------------------------------

class MailboxIndex:
    """The index of one user's Maildir++ mailbox (``inbox`` is its top Maildir)."""

    def __init__(self, inbox: Maildir, *, clock: Callable[[], float] = time.time) -> None:
        self.inbox = inbox
        self.clock = clock
        self.path = inbox.path / INDEX_NAME
        self._lock = threading.Lock()
        self._db = self._open()
        self._ensure_defaults()

    # --- the database ----------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise MailboxIndexError(f"mailbox index {self.path}: {exc}") from exc
            self._set_aside()  # damaged: rebuilt from the Maildir under new UIDVALIDITYs
            try:
                return self._connect()
            except sqlite3.DatabaseError as again:
                raise MailboxIndexError(f"mailbox index {self.path}: {again}") from again

    def _connect(self) -> sqlite3.Connection:
        try:
            create_private_database(self.path)
        except OSError as exc:
            raise MailboxIndexError(f"cannot create mailbox index {self.path}: {exc}") from exc
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
                raise MailboxIndexError(f"mailbox index {self.path}: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise MailboxIndexError(f"mailbox index {self.path}: {exc}") from exc

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

    def _ensure_defaults(self) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM meta WHERE key = 'defaults'").fetchone():
                return
            self.inbox.create()
            for name, use in DEFAULT_FOLDERS.items():
                self.maildir(name).create()
                self._folder(db, name, use)
                db.execute("UPDATE folders SET special_use = ? WHERE name = ?", (use, name))
            db.execute("INSERT INTO meta VALUES ('defaults', 1)")

    def list_folders(self) -> list[FolderInfo]:
        """Every folder on disk, INBOX first, with its SPECIAL-USE attribute."""
        names: list[str] = []
        with os.scandir(self.inbox.path) as entries:
            for entry in entries:
                name = imap_name(entry.name)
                if name is not None and entry.is_dir(follow_symlinks=False):
                    names.append(name)
        with self._read() as db:
            uses = dict(db.execute("SELECT name, special_use FROM folders"
                                   " WHERE special_use IS NOT NULL").fetchall())
        return [FolderInfo(INBOX, None)] + [FolderInfo(n, uses.get(n)) for n in sorted(names)]

    def create_folder(self, name: str, special_use: str | None = None) -> None:
        """Create a folder (RFC 9051 CREATE; ``special_use`` for RFC 6154 CREATE-SPECIAL-USE)."""
        name = normalize(name)
        box = self.maildir(name)
        with self._write() as db:
            if box.exists():
                raise FolderExists(f"folder {name!r} exists")
            box.create()
            self._folder(db, name, special_use)

    def delete_folder(self, name: str) -> None:
        """Delete a folder and its messages (its sub-folders stay, RFC 9051 6.3.5)."""
        name = normalize(name)
        if name == INBOX:
            raise MailboxNameError("INBOX cannot be deleted")
        box = self.maildir(name)
        with self._write() as db:
            if not box.exists():
                raise FolderNotFound(f"no folder {name!r}")
            trash = self.inbox.path / f"..mailyard-deleted-{secrets.token_hex(6)}"
            os.rename(box.path, trash)  # atomic: gone from every listing at once
            fsync_dir(self.inbox.path)
            row = db.execute("SELECT id FROM folders WHERE name = ?", (name,)).fetchone()
            if row is not None:
                self._drop_rows(db, row[0])
        shutil.rmtree(trash, ignore_errors=True)

    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder and its sub-folders (UIDVALIDITY and UIDs kept)."""
        old, new = normalize(old), normalize(new)
        if INBOX in (old, new):
            raise MailboxNameError("renaming INBOX is not supported")
        src, dst = self.maildir(old), self.maildir(new)
        with self._write() as db:
            if not src.exists():
                raise FolderNotFound(f"no folder {old!r}")
            if dst.exists():
                raise FolderExists(f"folder {new!r} exists")
            moves = [(old, new)] + [
                (f.name, new + f.name[len(old):]) for f in self.list_folders_unlocked()
                if f.name.startswith(old + DELIMITER)]
            for a, b in moves:
                os.rename(self.maildir(a).path, self.maildir(b).path)
                db.execute("UPDATE folders SET name = ? WHERE name = ?", (b, a))
            fsync_dir(self.inbox.path)

    def list_folders_unlocked(self) -> list[FolderInfo]:
        names: list[FolderInfo] = []
        with os.scandir(self.inbox.path) as entries:
            for entry in entries:
                name = imap_name(entry.name)
                if name is not None and entry.is_dir(follow_symlinks=False):
                    names.append(FolderInfo(name, None))
        return names

    # --- sync -----------------------------------------------------------------------
    def sync(self, name: str) -> FolderState:
        """Bring the folder's index in line with its Maildir and return its state
        (SELECT, NOOP, IDLE polling).  Raises FolderNotFound."""
        name = normalize(name)
        box = self.maildir(name)
        with self._write() as db:
            fid, validity, uidnext, highest = self._folder(db, name)
            cur = box.path / "cur"
            moved = False
            for entry in _entries(box.path / "new"):
                base, info = _split(entry)
                with suppress(FileNotFoundError):  # another process moved it first
                    os.rename(box.path / "new" / entry, cur / f"{base}:2,{info}")
                    moved = True
            if moved:
                fsync_dir(cur)
            checked, mtime = time.time_ns(), _mtime_ns(cur)
            on_disk = {_split(f)[0]: f for f in _entries(cur)}
            rows = {r.base: r for r in self._rows(db, fid)}
            modseq = highest + 1
            changed = renamed = False
            gone = [r.uid for base, r in rows.items() if base not in on_disk]
            if gone:
                self._forget(db, fid, gone, modseq)
                changed = True
            for base, filename in on_disk.items():
                row = rows.get(base)
                if row is None or row.filename == filename:
                    continue
                letters = "".join(sorted(c for c in _split(filename)[1] if c in _LETTER_FLAGS))
                if letters != row.letters:
                    db.execute("UPDATE messages SET filename = ?, letters = ?, modseq = ?"
                               " WHERE folder = ? AND uid = ?",
                               (filename, letters, modseq, fid, row.uid))
                    changed = True
                else:
                    db.execute("UPDATE messages SET filename = ? WHERE folder = ? AND uid = ?",
                               (filename, fid, row.uid))
                renamed = True
            fresh = sorted((cur / f for b, f in on_disk.items() if b not in rows), key=_arrival)
            for path in fresh:
                letters = "".join(sorted(c for c in _split(path.name)[1] if c in _LETTER_FLAGS))
                if self._insert(db, fid, uidnext, path, letters, "", modseq):
                    uidnext += 1
                    changed = True
            if changed:
                db.execute("UPDATE folders SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                           (uidnext, modseq, fid))
                highest = modseq
            db.execute("UPDATE folders SET cur_mtime = ?, cur_checked = ? WHERE id = ?",
                       (mtime, checked, fid))
            # Nothing written: the rows read above are the state (one query, not two).
            current = self._rows(db, fid) if changed or renamed else rows.values()
            messages = tuple(self._info(box, r, cur) for r in current)
        return FolderState(name, validity, uidnext, highest, messages)

    def _insert(self, db: sqlite3.Connection, fid: int, uid: int, path: Path, letters: str,
                keywords: str, modseq: int,
                cached: _Cached | None = None) -> bool:
        """Index one file under ``uid``; False if it vanished meanwhile."""
        if cached is None:
            try:
                data = read_message(path)
                mtime = path.stat().st_mtime
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

    # --- reading --------------------------------------------------------------------
    def usage(self) -> QuotaUsage:
        """The messages indexed in every folder: how many, and the sum of their
        RFC822.SIZEs (RFC 9208 MESSAGE and STORAGE).  No sync is done: files not
        indexed yet are not counted (see ``store/usage.py``)."""
        with self._read() as db:
            count, total = db.execute("SELECT count(*), coalesce(sum(size), 0)"
                                      " FROM messages").fetchone()
        return QuotaUsage(int(total), int(count))

    def folder_known(self, name: str) -> bool:
        """Whether the folder has been indexed (synced or written to) at least once."""
        with self._read() as db:
            return db.execute("SELECT 1 FROM folders WHERE name = ?",
                              (normalize(name),)).fetchone() is not None

    def changes(self, name: str, since: int) -> Changes:
        """Messages changed and UIDs expunged after mod-sequence ``since`` (CONDSTORE
        CHANGEDSINCE, QRESYNC, and what IDLE reports); no sync is done."""
        name = normalize(name)
        box = self.maildir(name)
        with self._read() as db:
            row = db.execute("SELECT id FROM folders WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise FolderNotFound(f"no folder {name!r}")
            # Sorted here: ORDER BY uid would make SQLite walk the primary key (every
            # row of the folder) instead of the mod-sequence index (the few changed).
            got = db.execute(f"SELECT {_ROW} FROM messages INDEXED BY messages_modseq"
                             " WHERE folder = ? AND modseq > ?", (row[0], since)).fetchall()
            gone = db.execute("SELECT uid FROM expunged INDEXED BY expunged_modseq"
                              " WHERE folder = ? AND modseq > ?", (row[0], since)).fetchall()
        got.sort()
        return Changes(tuple(self._info(box, _Row(*r)) for r in got),
                       tuple(sorted(u for (u,) in gone)))

    def check(self, name: str) -> FolderCheck:
        """The folder's header as indexed and what its ``cur/`` directory says about
        changes by other programs (see :class:`CurState`), without a sync: what
        SELECT and the watcher look at first.  Raises FolderNotFound."""
        name = normalize(name)
        cur = self.maildir(name).path / "cur"
        query = ("SELECT uidvalidity, uidnext, highestmodseq, cur_mtime, cur_checked"
                 " FROM folders WHERE name = ?")
        with self._read() as db:
            row = db.execute(query, (name,)).fetchone()
        if row is not None and _mtime_ns(cur) != row[3]:
            # A writer (any process) may be between its change in cur/ and its
            # commit: ask again once no write transaction is open.
            with self._write() as db:
                row = db.execute(query, (name,)).fetchone()
        if row is None:
            raise FolderNotFound(f"no folder {name!r}")
        validity, uidnext, highest, recorded, checked = row
        if _mtime_ns(cur) != recorded:
            state = CurState.CHANGED
        elif checked - recorded < MTIME_TICK_NS:
            state = CurState.UNSURE
        else:
            state = CurState.CLEAN
        return FolderCheck((validity, uidnext, highest), state)

    def header(self, name: str) -> tuple[int, int, int]:
        """(UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) of a folder as indexed, without a
        sync: what a watcher polls.  Raises FolderNotFound."""
        name = normalize(name)
        with self._read() as db:
            row = db.execute("SELECT uidvalidity, uidnext, highestmodseq FROM folders"
                             " WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise FolderNotFound(f"no folder {name!r}")
        return row[0], row[1], row[2]

    def structures(self, name: str, uids: Iterable[int]
                   ) -> dict[int, tuple[structure.Structure, structure.Structure]]:
        """The cached (ENVELOPE, BODYSTRUCTURE) of these UIDs (absent ones left out)."""
        got = self._cached_columns(name, uids, "envelope, bodystructure")
        return {uid: (structure.loads(env), structure.loads(body))
                for uid, env, body in got}

    def wires(self, name: str, uids: Iterable[int], items: Sequence[str]
              ) -> dict[int, tuple[bool, list[bytes | None]]]:
        """The cached wire form of FETCH ``items`` (keys of :data:`WIRE_ITEMS`) of these
        UIDs: uid -> (whether a UTF8=ACCEPT session gets other octets, the octets of
        each item in order); absent UIDs are left out."""
        columns = ", ".join(["wire_utf8", *(WIRE_ITEMS[i] for i in items)])
        return {r[0]: (bool(r[1]), list(r[2:]))
                for r in self._cached_columns(name, uids, columns)}

    def _cached_columns(self, name: str, uids: Iterable[int], columns: str
                        ) -> list[tuple[Any, ...]]:
        """(uid, *columns) of the messages with these UIDs: one range read when they
        lie close together (a FETCH of a run of messages), else one read per UID."""
        name = normalize(name)
        wanted = sorted(set(uids))
        with self._read() as db:
            row = db.execute("SELECT id FROM folders WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise FolderNotFound(f"no folder {name!r}")
            if not wanted:
                return []
            if wanted[-1] - wanted[0] < 4 * len(wanted) + 16:
                got = db.execute(f"SELECT uid, {columns} FROM structures WHERE folder = ?"
                                 " AND uid BETWEEN ? AND ? ORDER BY uid",
                                 (row[0], wanted[0], wanted[-1])).fetchall()
                keep = set(wanted)
                return [r for r in got if r[0] in keep]
            out: list[tuple[Any, ...]] = []
            for uid in wanted:
                out += db.execute(f"SELECT uid, {columns} FROM structures WHERE folder = ?"
                                  " AND uid = ?", (row[0], uid)).fetchall()
            return out

    # --- flags ----------------------------------------------------------------------
    def store(self, name: str, uids: Iterable[int], mode: str, flags: Iterable[str],
              unchanged_since: int | None = None) -> StoreResult:
        """STORE: ``mode`` "+" adds, "-" removes, "=" replaces ``flags``.  Messages
        whose mod-sequence is above ``unchanged_since`` are left alone and reported
        (RFC 7162 3.1.3).  Changed messages get one new mod-sequence."""
        if mode not in ("+", "-", "="):
            raise ValueError(f"bad store mode {mode!r}")
        name = normalize(name)
        box = self.maildir(name)
        want_letters, want_keywords = _letters_of(flags)
        out: list[MessageInfo] = []
        modified: list[int] = []
        with self._write() as db:
            fid, _, _, highest = self._folder(db, name)
            before = _mtime_ns(box.path / "cur")
            modseq = highest + 1
            changed = False
            for row in self._rows(db, fid, uids):
                if unchanged_since is not None and row.modseq > unchanged_since:
                    modified.append(row.uid)
                    continue
                letters, keywords = _apply(mode, row, want_letters, want_keywords)
                if letters == row.letters and keywords == row.keywords:
                    out.append(self._info(box, row))
                    continue
                filename = row.filename
                if letters != row.letters:
                    renamed = _rename_flags(box, row, letters)
                    if renamed is None:
                        continue  # removed by another program: the next sync expunges it
                    filename = renamed
                db.execute("UPDATE messages SET filename = ?, letters = ?, keywords = ?,"
                           " modseq = ? WHERE folder = ? AND uid = ?",
                           (filename, letters, keywords, modseq, fid, row.uid))
                changed = True
                out.append(MessageInfo(row.uid, _flags(letters, keywords), modseq,
                                       row.internal_date, row.size, box.path / "cur" / filename))
            if changed:
                db.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?", (modseq, fid))
                self._own_change(db, fid, box.path / "cur", before)
        return StoreResult(tuple(out), tuple(modified))

    # --- expunge --------------------------------------------------------------------
    def expunge(self, name: str, uids: Iterable[int] | None = None) -> list[int]:
        """Remove the messages flagged \\Deleted (only among ``uids`` if given, UID
        EXPUNGE); returns their UIDs, recorded for VANISHED under one mod-sequence."""
        name = normalize(name)
        box = self.maildir(name)
        with self._write() as db:
            fid, _, _, highest = self._folder(db, name)
            doomed = [r for r in self._rows(db, fid, uids) if "T" in r.letters]
            if not doomed:
                return []
            before = _mtime_ns(box.path / "cur")
            for row in doomed:
                with suppress(FileNotFoundError):
                    os.unlink(box.path / "cur" / row.filename)
            fsync_dir(box.path / "cur")
            gone = [r.uid for r in doomed]
            self._forget(db, fid, gone, highest + 1)
            db.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?", (highest + 1, fid))
            self._own_change(db, fid, box.path / "cur", before)
        return gone

    # --- append, copy, move ---------------------------------------------------------
    def append(self, name: str, source: Source, flags: Iterable[str] = (),
               internal_date: float | None = None) -> tuple[int, MessageInfo]:
        """APPEND: store a message through the Maildir delivery path and index it;
        returns (UIDVALIDITY, the message).  Raises FolderNotFound, OSError."""
        name = normalize(name)
        box = self.maildir(name)
        if not box.exists():
            raise FolderNotFound(f"no folder {name!r}")
        letters, keywords = _letters_of(flags)
        with self._write() as db:
            fid, validity, uidnext, highest = self._folder(db, name)
            cur = box.path / "cur"
            before = _mtime_ns(cur)
            # Written under the index's write lock, straight into cur/ with its flags:
            # no sync can see the file before its row is made, and a crash before the
            # commit leaves a file the next sync indexes.
            filename = box.deliver(source, info=letters)
            path = cur / filename
            if internal_date is not None:
                os.utime(path, (internal_date, internal_date))
            modseq = highest + 1
            if not self._insert(db, fid, uidnext, path, letters, " ".join(keywords), modseq):
                raise FileNotFoundError(f"appended message {path} vanished")
            db.execute("UPDATE folders SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                       (uidnext + 1, modseq, fid))
            self._own_change(db, fid, cur, before)
            got = db.execute(f"SELECT {_ROW} FROM messages WHERE folder = ? AND uid = ?",
                             (fid, uidnext)).fetchone()
        return validity, self._info(box, _Row(*got))

    def copy(self, source: str, uids: Iterable[int], target: str) -> CopyResult:
        """COPY (hard links where the file system allows, else a copy)."""
        return self._transfer(source, uids, target, move=False)

    def move(self, source: str, uids: Iterable[int], target: str) -> CopyResult:
        """MOVE (RFC 6851): rename into the target, expunged from the source."""
        return self._transfer(source, uids, target, move=True)

    def _transfer(self, source: str, uids: Iterable[int], target: str,
                  move: bool) -> CopyResult:
        source, target = normalize(source), normalize(target)
        src, dst = self.maildir(source), self.maildir(target)
        pairs: list[tuple[int, int]] = []
        with self._write() as db:
            sid, _, _, s_highest = self._folder(db, source)
            try:
                did, validity, uidnext, d_highest = self._folder(db, target)
            except FolderNotFound:
                raise FolderNotFound(f"no folder {target!r}") from None
            if sid == did and move:
                raise MailboxNameError("cannot move messages into their own folder")
            s_before, d_before = _mtime_ns(src.path / "cur"), _mtime_ns(dst.path / "cur")
            moved: list[int] = []
            for row in self._rows(db, sid, uids):
                old = src.path / "cur" / row.filename
                if move:
                    new = dst.path / "cur" / row.filename
                    try:
                        os.rename(old, new)
                    except FileNotFoundError:
                        continue
                    moved.append(row.uid)
                else:
                    new = dst.path / "cur" / _with_letters(_fresh_base(dst, row.base), row.letters)
                    try:
                        _link_or_copy(old, new, dst)
                    except FileNotFoundError:
                        continue
                cached = db.execute(f"SELECT {_CACHED} FROM messages m JOIN structures s"
                                    " ON s.folder = m.folder AND s.uid = m.uid"
                                    " WHERE m.folder = ? AND m.uid = ?",
                                    (sid, row.uid)).fetchone()
                self._insert(db, did, uidnext, new, row.letters, row.keywords,
                             d_highest + 1, tuple(cached) if cached is not None else None)
                pairs.append((row.uid, uidnext))
                uidnext += 1
            if not pairs:
                return CopyResult(validity, ())
            fsync_dir(dst.path / "cur")
            db.execute("UPDATE folders SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                       (uidnext, d_highest + 1, did))
            self._own_change(db, did, dst.path / "cur", d_before)
            if moved:
                fsync_dir(src.path / "cur")
                self._forget(db, sid, moved, s_highest + 1)
                db.execute("UPDATE folders SET highestmodseq = ? WHERE id = ?",
                           (s_highest + 1, sid))
                self._own_change(db, sid, src.path / "cur", s_before)
        return CopyResult(validity, tuple(pairs))


def _mtime_ns(directory: Path) -> int:
    try:
        return os.stat(directory).st_mtime_ns
    except FileNotFoundError:
        return 0


def _entries(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as it:
            return [e.name for e in it
                    if not e.name.startswith(".") and e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _apply(mode: str, row: _Row, letters: str, keywords: list[str]) -> tuple[str, str]:
    have_letters, have_kw = set(row.letters), row.keywords.split()
    if mode == "=":
        return letters, " ".join(keywords)
    if mode == "+":
        return ("".join(sorted(have_letters | set(letters))),
                " ".join(have_kw + [k for k in keywords if k not in have_kw]))
    return ("".join(sorted(have_letters - set(letters))),
            " ".join(k for k in have_kw if k not in keywords))


def _rename_flags(box: Maildir, row: _Row, letters: str) -> str | None:
    """Rename the message's file to carry ``letters``; its new name, or None when the
    file is gone (looked up by base name if another program renamed it)."""
    cur = box.path / "cur"
    current = row.filename
    for _ in range(2):
        target = _with_letters(current, letters)
        try:
            os.rename(cur / current, cur / target)
            return target
        except FileNotFoundError:
            found = [f for f in _entries(cur) if _split(f)[0] == row.base]
            if not found:
                return None
            current = found[0]
    return None


def _fresh_base(box: Maildir, base: str) -> str:
    """A new unique base name for a copy of ``base`` (its S=/W= sizes kept)."""
    now = time.time()
    sizes = base[base.find(",S="):] if ",S=" in base else ""
    token = f"{next(_counter)}-{secrets.token_hex(4)}"
    return f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}Q{token}.{box.host}{sizes}"


def _link_or_copy(old: Path, new: Path, box: Maildir) -> None:
    try:
        os.link(old, new)
        return
    except FileNotFoundError:
        raise
    except OSError:
        pass  # no hard links here (EXDEV, EPERM, ENOTSUP): copy through tmp/
    tmp = box.path / "tmp" / new.name.partition(":")[0]
    shutil.copy2(old, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, new)

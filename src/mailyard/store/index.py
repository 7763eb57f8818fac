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

The index is one class, :class:`MailboxIndex`, put together from modules by concern:
:mod:`~mailyard.store.index_schema` (the schema and its migrations),
:mod:`~mailyard.store.index_files` (folder names, file names and flag letters),
:mod:`~mailyard.store.index_db` (opening, transactions, the shared row operations),
:mod:`~mailyard.store.index_folders` (CREATE, DELETE, RENAME, LIST),
:mod:`~mailyard.store.index_changes` (sync, mod-sequence and expunge tracking) and
:mod:`~mailyard.store.index_messages` (STORE, EXPUNGE, APPEND, COPY, MOVE, cached
structures).  The names are importable from here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from mailyard.store.index_changes import (
    MTIME_TICK_NS,
    Changes,
    ChangeTracking,
    CurState,
    FolderCheck,
    FolderState,
)
from mailyard.store.index_db import (
    BUSY_TIMEOUT_MS,
    INDEX_NAME,
    FolderNotFound,
    MailboxIndexError,
    MessageInfo,
)
from mailyard.store.index_files import DELIMITER, FLAG_LETTERS, disk_name, imap_name, normalize
from mailyard.store.index_folders import DEFAULT_FOLDERS, FolderExists, FolderInfo, FolderOperations
from mailyard.store.index_messages import CopyResult, MessageOperations, StoreResult
from mailyard.store.index_schema import MIGRATE_1, SCHEMA, SCHEMA_VERSION, WIRE_ITEMS
from mailyard.store.maildir import Maildir

__all__ = [
    "BUSY_TIMEOUT_MS", "DEFAULT_FOLDERS", "DELIMITER", "FLAG_LETTERS", "INDEX_NAME", "MIGRATE_1",
    "MTIME_TICK_NS", "SCHEMA", "SCHEMA_VERSION", "WIRE_ITEMS", "Changes", "CopyResult",
    "CurState", "FolderCheck", "FolderExists", "FolderInfo", "FolderNotFound", "FolderState",
    "MailboxIndex", "MailboxIndexError", "MessageInfo", "StoreResult", "disk_name",
    "imap_name", "normalize",
]


class MailboxIndex(FolderOperations, ChangeTracking, MessageOperations):
    """The index of one user's Maildir++ mailbox (``inbox`` is its top Maildir)."""

    def __init__(self, inbox: Maildir, *, clock: Callable[[], float] = time.time) -> None:
        self.inbox = inbox
        self.clock = clock
        self.path = inbox.path / INDEX_NAME
        self._lock = threading.Lock()
        self._db = self._open()
        self._ensure_defaults()

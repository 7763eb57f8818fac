"""The search index: the decoded text that SEARCH compares, kept per user between
searches, so a string key does not read and decode every message file again.

Reading 10,000 messages (300 MB) and decoding their MIME parts takes tens of seconds
in Python; a substring test over stored text takes milliseconds.  What is stored is
exactly what :mod:`mailyard.imapd.search` compares (its fields document and texts,
built by the same functions), so an answer from the index equals the answer from
the files.

**The file** is ``mailyard-search.db`` in the root of the user's Maildir, beside the
mailbox index (0600, WAL).  It is a cache: everything in it can be rebuilt from the
Maildir.  A file SQLite cannot read is removed and started afresh; an error while
searching makes that search read the files instead, never fail.

**Keys.**  A row is named by (UIDVALIDITY, UID): the mailbox index hands out a new,
higher UIDVALIDITY for every folder it creates, so the pair names one message of
the user for good (a UID is never reused), whatever the folder is renamed to.  The
Maildir base name is kept as well and compared with the message's, so a row never
answers for another file.  Rows of UIDs a folder no longer has are removed when a
search of that folder meets them (and at once by the engine after EXPUNGE and
MOVE); rows of folders that are gone, when the user's index is opened.

**Filling.**  Rows are written by the searches that read a message anyway (see
:class:`mailyard.imapd.search.SearchIndex`): a header search stores the fields
documents, a BODY or TEXT search the texts too.  So indexing costs no more than
the scan it replaces and stays within the search's time budget; a search stopped
by the budget keeps what it stored, and the next one goes on from there.  Messages
whose documents exceed :data:`MAX_FIELDS` / :data:`MAX_TEXTS` characters are not
stored and are read at each search.

**Matching.**  Fields documents and texts are in FTS5 tables with the trigram
tokenizer (case-sensitive: the text is folded already) and
``detail=none``: without token positions the index is a fraction of the size (the
file is 124 MB for the benchmark's 10,000 messages, text included; positions would
add about 250 MB more), and it still gives
the messages that contain every trigram of the search string; ``instr()`` on the
stored text then keeps those that contain the string itself (and for a header key,
:func:`~mailyard.imapd.search.field_matches` those where it is in the right field).
Strings of fewer than three characters have no trigram: ``instr()`` alone then runs
over the stored text.

Every method blocks (SQLite): call them in an executor.  One :class:`SearchIndex`
per user per process, shared by the user's sessions (it serialises its calls).
"""

from __future__ import annotations

import logging
import operator
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence, Set
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from mailyard.fs import create_private_database
from mailyard.imapd.search import field_matches
from mailyard.store.index import MessageInfo

__all__ = ["FolderSearch", "MAX_FIELDS", "MAX_TEXTS", "SEARCH_INDEX_NAME", "SearchIndex"]

log = logging.getLogger(__name__)

SEARCH_INDEX_NAME = "mailyard-search.db"
SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 5_000
MAX_FIELDS = 256 * 1024  # characters of a fields document stored
MAX_TEXTS = 4 * 1024 * 1024  # characters of header and body texts stored
FLUSH_CHARS = 8 * 1024 * 1024  # pending text written once this much has gathered
FLUSH_DOCS = 500
MAX_TRIGRAMS = 16  # of a search string, asked of the FTS index

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id INTEGER PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    base TEXT NOT NULL,
    has_fields INTEGER NOT NULL DEFAULT 0,
    has_texts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (uidvalidity, uid)
);
-- version 2: a folder's rows read from the index alone, not row by row from the table
CREATE INDEX IF NOT EXISTS docs_folder ON docs (uidvalidity, uid, base, has_fields, has_texts);
CREATE VIRTUAL TABLE IF NOT EXISTS heads USING fts5(
    fields, tokenize = 'trigram case_sensitive 1', detail = none);
CREATE VIRTUAL TABLE IF NOT EXISTS texts USING fts5(
    head, body, tokenize = 'trigram case_sensitive 1', detail = none);
"""


def base_name(path: Path) -> str:
    """The Maildir base name of a message file (before ``:2,``)."""
    return path.name.partition(":")[0]


def fts_query(needle: str) -> str | None:
    """An FTS5 query for the rows that contain every trigram (or up to
    :data:`MAX_TRIGRAMS` of them, spread over the string) of ``needle``; None
    when it is shorter than three characters."""
    grams = list(dict.fromkeys(needle[i:i + 3] for i in range(len(needle) - 2)))
    if not grams:
        return None
    if len(grams) > MAX_TRIGRAMS:
        step = len(grams) / MAX_TRIGRAMS
        grams = [grams[int(i * step)] for i in range(MAX_TRIGRAMS)]
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in grams)


def _damage(exc: BaseException) -> bool:
    """Whether an error means the file cannot serve (damaged, a table missing or
    of another layout), not that another process holds it for a moment."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    text = str(exc).lower()
    return not any(word in text for word in ("locked", "busy", "interrupt"))


@dataclass
class _Rows:
    """A folder's rows as last read: (id, uid, base, has fields, has texts) by UID,
    and the messages whose base name was found equal (by identity: a session's
    view keeps its MessageInfo objects until they change).  ``last`` is the
    outcome of the last :meth:`SearchIndex.folder` (its messages, the UIDs with
    fields, with texts) until a row changes: the same messages again (the same
    objects in the same order, told in C) get it without a loop in Python."""

    version: int  # PRAGMA data_version when read
    by_uid: dict[int, tuple[int, int, str, int, int]]
    checked: dict[int, MessageInfo] = field(default_factory=dict)
    last: tuple[tuple[MessageInfo, ...], frozenset[int], frozenset[int]] | None = None

    def same_messages(self, messages: Sequence[MessageInfo]) -> bool:
        last = self.last
        return (last is not None and len(last[0]) == len(messages)
                and all(map(operator.is_, last[0], messages)))


class SearchIndex:
    """One user's search index file."""

    def __init__(self, root: Path) -> None:
        self.path = root / SEARCH_INDEX_NAME
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._rows: dict[int, _Rows] = {}  # by UIDVALIDITY, while data_version holds

    # --- the database ----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        create_private_database(self.path)
        db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000,
                             isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # a cache: losing the tail is fine
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                db.executescript("BEGIN IMMEDIATE;" + SCHEMA
                                 + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            db.execute("SELECT count(*) FROM docs WHERE id = 0").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def _conn(self) -> sqlite3.Connection:
        """The connection, opened on first use; a file SQLite cannot use is removed
        and made again.  Raises sqlite3.Error, OSError."""
        if self._db is None:
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError as exc:
                if not _damage(exc):
                    raise  # locked or busy: try again next time
                log.warning("search index %s unusable (%s): made afresh", self.path, exc)
                self._remove()
                self._db = self._connect()
        return self._db

    def _remove(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def _failed(self, exc: BaseException) -> None:
        """An error in use: damage makes the file go (made afresh at the next use)."""
        log.warning("search index %s: %s", self.path, exc)
        if _damage(exc):
            self._close()
            self._remove()

    def _close(self) -> None:
        self._rows.clear()
        if self._db is not None:
            with suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def close(self) -> None:
        with self._lock:
            self._close()

    @contextmanager
    def _write(self, keep: int | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction (the caller holds the lock).  Our own commits do not
        change data_version, so the cached rows are dropped, except those of the
        folder ``keep``, which the caller brings up to date after the commit."""
        db = self._conn()
        kept = self._rows.get(keep) if keep is not None else None
        self._rows.clear()
        if kept is not None and keep is not None:
            self._rows[keep] = kept
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def _delete(db: sqlite3.Connection, ids: Iterable[int]) -> None:
        """Remove messages' rows (by docs.id)."""
        rows = [(i,) for i in ids]
        for table in ("heads", "texts", "docs"):
            db.executemany(f"DELETE FROM {table} WHERE rowid = ?", rows)

    # --- what the engine calls ------------------------------------------------------
    def folder(self, uidvalidity: int, messages: Sequence[MessageInfo]) -> FolderSearch | None:
        """The index as a search of this folder sees it (``messages``: the folder as
        the session knows it, in UID order).  Rows of UIDs it does not have (up to
        its highest) or of other files are removed first.  None when the index
        cannot be used."""
        top = messages[-1].uid if messages else 0
        with self._lock:
            try:
                rows = self._folder_rows(uidvalidity)
                if rows.last is not None and rows.same_messages(messages):
                    return FolderSearch(self, uidvalidity, messages, rows.last[1],
                                        rows.last[2])
                fields: set[int] = set()
                texts: set[int] = set()
                stale: list[int] = []
                by_uid, checked = rows.by_uid, rows.checked
                seen = 0
                for m in messages:
                    uid = m.uid
                    row = by_uid.get(uid)
                    if row is None:
                        continue
                    seen += 1
                    if checked.get(uid) is not m:  # base names compared once per message
                        if row[2] != m.path.name.partition(":")[0]:  # base_name(), inline
                            stale.append(row[0])
                            continue
                        checked[uid] = m
                    if row[3]:
                        fields.add(uid)
                    if row[4]:
                        texts.add(uid)
                if seen < (len(by_uid) if not by_uid or max(by_uid) <= top
                           else sum(1 for uid in by_uid if uid <= top)):
                    live = {m.uid for m in messages}
                    stale += [r[0] for uid, r in by_uid.items() if uid <= top and uid not in live]
                if stale:
                    with self._write(uidvalidity) as db:
                        self._delete(db, stale)
                    doomed = set(stale)
                    for uid in [u for u, r in by_uid.items() if r[0] in doomed]:
                        del by_uid[uid]
                        checked.pop(uid, None)
                rows.last = (tuple(messages), frozenset(fields), frozenset(texts))
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)
                return None
        return FolderSearch(self, uidvalidity, messages, rows.last[1], rows.last[2])

    def holds_all(self, uidvalidity: int, messages: Sequence[MessageInfo]) -> bool:
        """Whether the last :meth:`folder` of these messages (the same objects) found
        every one's fields and texts held; no lock, no I/O (for the warmer's caller:
        another process's commit since is not seen, which a search then reads)."""
        rows = self._rows.get(uidvalidity)
        last = rows.last if rows is not None else None
        return (last is not None and len(last[1]) == len(last[2]) == len(messages)
                and (last[0] is messages or rows is not None and rows.same_messages(messages)))

    def _folder_rows(self, uidvalidity: int) -> _Rows:
        """A folder's rows; read again only when a commit was made since (a search
        of a large folder is then spared reading 10,000 rows)."""
        db = self._conn()
        version = db.execute("PRAGMA data_version").fetchone()[0]
        cached = self._rows.get(uidvalidity)
        if cached is not None and cached.version == version:
            return cached
        got = db.execute("SELECT id, uid, base, has_fields, has_texts FROM docs"
                         " WHERE uidvalidity = ?", (uidvalidity,)).fetchall()
        rows = _Rows(version, {r[1]: r for r in got})
        self._rows[uidvalidity] = rows
        return rows

    def forget(self, uidvalidity: int, uids: Iterable[int]) -> None:
        """Drop the rows of expunged (or moved away) messages."""
        uids = list(uids)
        if not uids or (self._db is None and not self.path.exists()):
            return
        with self._lock:
            try:
                with self._write(uidvalidity) as db:
                    rows = []
                    for uid in uids:
                        got = db.execute("SELECT id FROM docs WHERE uidvalidity = ?"
                                         " AND uid = ?", (uidvalidity, uid)).fetchone()
                        if got is not None:
                            rows.append(got[0])
                    self._delete(db, rows)
                cached = self._rows.get(uidvalidity)
                if cached is not None:
                    cached.last = None
                    for uid in uids:
                        cached.by_uid.pop(uid, None)
                        cached.checked.pop(uid, None)
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)

    def carry(self, source: int, target: int, moved: Sequence[tuple[int, int]]) -> None:
        """Moved messages keep their documents under the target folder's UIDVALIDITY
        and their new UIDs (``moved``: source UID, target UID), so a search of the
        target does not read them again.  MOVE keeps a file's base name; a row whose
        base differs from the file found later is dropped by that folder's search."""
        if not moved or (self._db is None and not self.path.exists()):
            return
        with self._lock:
            try:
                with self._write() as db:
                    db.executemany("UPDATE OR IGNORE docs SET uidvalidity = ?, uid = ?"
                                   " WHERE uidvalidity = ? AND uid = ?",
                                   [(target, new, source, old) for old, new in moved])
                    # rows left behind (a target UID taken): gone like expunged ones
                    left = [(source, old) for old, _ in moved]
                    ids = [r[0] for pair in left for r in db.execute(
                        "SELECT id FROM docs WHERE uidvalidity = ? AND uid = ?", pair)]
                    self._delete(db, ids)
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)

    def prune(self, uidvalidities: Iterable[int]) -> None:
        """Drop the rows of folders gone: every UIDVALIDITY not in ``uidvalidities``."""
        keep = set(uidvalidities)
        with self._lock:
            try:
                db = self._conn()
                gone = [v for (v,) in db.execute("SELECT DISTINCT uidvalidity FROM docs")
                        if v not in keep]
                for value in gone:
                    with self._write() as db:
                        rows = db.execute("SELECT id FROM docs WHERE uidvalidity = ?",
                                          (value,)).fetchall()
                        self._delete(db, (i for (i,) in rows))
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)

    # --- for FolderSearch -------------------------------------------------------------
    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]] | None:
        with self._lock:
            try:
                return self._conn().execute(sql, params).fetchall()
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)
                return None

    def _store(self, uidvalidity: int,
               docs: Sequence[tuple[int, str, str | None, tuple[str, str] | None]]) -> None:
        """Write documents (uid, base, fields, texts) in one transaction."""
        with self._lock:
            try:
                written = []
                with self._write(uidvalidity) as db:
                    for uid, base, fields, texts in docs:
                        # (an upsert with RETURNING is many times slower than this pair)
                        db.execute("INSERT OR IGNORE INTO docs (uidvalidity, uid, base)"
                                   " VALUES (?, ?, ?)", (uidvalidity, uid, base))
                        rid, stored, has_fields, has_texts = db.execute(
                            "SELECT id, base, has_fields, has_texts FROM docs"
                            " WHERE uidvalidity = ? AND uid = ?", (uidvalidity, uid)).fetchone()
                        if fields is not None and not has_fields:
                            db.execute("INSERT INTO heads (rowid, fields) VALUES (?, ?)",
                                       (rid, fields))
                            db.execute("UPDATE docs SET has_fields = 1 WHERE id = ?", (rid,))
                        if texts is not None and not has_texts:
                            db.execute("INSERT INTO texts (rowid, head, body) VALUES (?, ?, ?)",
                                       (rid, *texts))
                            db.execute("UPDATE docs SET has_texts = 1 WHERE id = ?", (rid,))
                        written.append((rid, uid, stored,
                                        int(bool(has_fields) or fields is not None),
                                        int(bool(has_texts) or texts is not None)))
                cached = self._rows.get(uidvalidity)
                if cached is not None:
                    cached.last = None
                    for row in written:
                        cached.by_uid[row[1]] = row
                        cached.checked.pop(row[1], None)
            except (sqlite3.Error, OSError, UnicodeError) as exc:
                self._failed(exc)


class FolderSearch:
    """The search index seen by one search of one folder (the protocol
    :class:`mailyard.imapd.search.SearchIndex`); documents handed to :meth:`add`
    are written in batches, the last at :meth:`close`."""

    def __init__(self, owner: SearchIndex, uidvalidity: int, messages: Sequence[MessageInfo],
                 fields: Set[int], texts: Set[int]) -> None:
        self.owner = owner
        self.uidvalidity = uidvalidity
        self.messages = messages
        self._paths: dict[int, Path] | None = None
        self.fields = fields
        self.texts = texts
        self._pending: list[tuple[int, str, str | None, tuple[str, str] | None]] = []
        self._pending_chars = 0
        self.added = 0

    def fields_of(self) -> Set[int]:
        return self.fields

    def texts_of(self) -> Set[int]:
        return self.texts

    def field_matches(self, name: str, needle: str) -> set[int]:
        probe = needle or name + ":"
        query = fts_query(probe)
        if query is not None:
            rows = self.owner._query(
                "SELECT d.uid, h.fields FROM heads h CROSS JOIN docs d ON d.id = h.rowid"
                " WHERE heads MATCH ? AND d.uidvalidity = ? AND instr(h.fields, ?) > 0",
                (query, self.uidvalidity, probe))
        else:
            rows = self.owner._query(
                "SELECT d.uid, h.fields FROM docs d JOIN heads h ON h.rowid = d.id"
                " WHERE d.uidvalidity = ? AND d.has_fields = 1 AND instr(h.fields, ?) > 0",
                (self.uidvalidity, probe))
        if rows is None:
            self.fields = frozenset()  # unusable: every message is read
            return set()
        held = self.fields
        return {uid for uid, doc in rows if uid in held and isinstance(uid, int)
                and isinstance(doc, str) and field_matches(doc, name, needle)}

    def text_matches(self, needle: str, with_headers: bool) -> set[int]:
        where = "instr(t.body, ?) > 0" + (" OR instr(t.head, ?) > 0" if with_headers else "")
        params: list[object] = [needle, needle] if with_headers else [needle]
        query = fts_query(needle)
        if query is not None:
            rows = self.owner._query(
                # CROSS JOIN: the FTS index first (else SQLite asks it once per row)
                "SELECT d.uid FROM texts t CROSS JOIN docs d ON d.id = t.rowid"
                " WHERE texts MATCH ?"
                f" AND d.uidvalidity = ? AND ({where})", [query, self.uidvalidity, *params])
        else:
            rows = self.owner._query(
                "SELECT d.uid FROM docs d JOIN texts t ON t.rowid = d.id"
                f" WHERE d.uidvalidity = ? AND d.has_texts = 1 AND ({where})",
                [self.uidvalidity, *params])
        if rows is None:
            self.texts = frozenset()
            return set()
        held = self.texts
        return {uid for (uid,) in rows if isinstance(uid, int) and uid in held}

    def add(self, uid: int, fields: str | None, texts: tuple[str, str] | None) -> None:
        if self._paths is None:
            self._paths = {m.uid: m.path for m in self.messages}
        path = self._paths.get(uid)
        if path is None:
            return
        if fields is not None and (uid in self.fields or len(fields) > MAX_FIELDS):
            fields = None
        if texts is not None and (uid in self.texts
                                  or len(texts[0]) + len(texts[1]) > MAX_TEXTS):
            texts = None
        if fields is None and texts is None:
            return
        self._pending.append((uid, base_name(path), fields, texts))
        self._pending_chars += len(fields or "") + (len(texts[0]) + len(texts[1]) if texts
                                                    else 0)
        if len(self._pending) >= FLUSH_DOCS or self._pending_chars >= FLUSH_CHARS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            pending, self._pending, self._pending_chars = self._pending, [], 0
            self.owner._store(self.uidvalidity, pending)
            self.added += len(pending)

    def close(self) -> None:
        self.flush()

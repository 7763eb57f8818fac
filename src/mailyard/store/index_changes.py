"""Keeping the index in line with the Maildir, and what changed since a mod-sequence.

:meth:`ChangeTracking.sync` takes over what other programs did in ``new/``, ``cur/``
and file names (new UIDs in arrival order, expunges recorded with their
mod-sequence, flags from file names) and returns the folder's state;
:meth:`ChangeTracking.changes` lists what changed and what was expunged after a
mod-sequence (CONDSTORE CHANGEDSINCE, QRESYNC VANISHED, IDLE); :meth:`ChangeTracking.check`
and :meth:`ChangeTracking.header` say, without a sync, whether a folder needs one
(:class:`CurState`).  :class:`ChangeTracking` is a part of
:class:`~mailyard.store.index.MailboxIndex`, separate from the operations a client
asks for because this is the side that follows the disk and other programs.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum

from mailyard.fs import fsync_dir
from mailyard.store.index_db import _ROW, FolderNotFound, IndexDatabase, MessageInfo, _Row
from mailyard.store.index_files import (
    _LETTER_FLAGS,
    _arrival,
    _entries,
    _mtime_ns,
    _split,
    normalize,
)

MTIME_TICK_NS = 50_000_000  # file system timestamps lag the clock by up to a tick


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
class Changes:
    messages: tuple[MessageInfo, ...]  # changed or added after the mod-sequence
    vanished: tuple[int, ...]  # UIDs expunged after it


class ChangeTracking(IndexDatabase):
    """Sync with the Maildir; mod-sequences and expunges since a point."""

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

    # --- without a sync -------------------------------------------------------------
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

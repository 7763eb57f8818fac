"""Message operations of the mailbox index: STORE of flags, EXPUNGE, APPEND, COPY and
MOVE, and reading the cached structures and quota usage.

:class:`MessageOperations` is a part of :class:`~mailyard.store.index.MailboxIndex`.
Each mutation does its file operations first (rename for flags, unlink, link or
copy, rename into another folder) and commits the rows after in one write
transaction with one new mod-sequence, so a crash in between leaves what the next
sync repairs.  When the commit fails instead (a full disk), the file operations of
APPEND, COPY, MOVE and STORE are undone, so that a command answered NO changed
nothing the next sync would bring back.  Separate from the folder operations and
from the sync because these are the changes a client asks for on the messages of
one folder.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailyard.fs import fsync_dir
from mailyard.message import structure
from mailyard.store.api import MailboxNameError, Source
from mailyard.store.index_db import (
    _ROW,
    FolderNotFound,
    IndexDatabase,
    MessageInfo,
    _Row,
    undone_on_failure,
)
from mailyard.store.index_files import (
    _entries,
    _flags,
    _letters_of,
    _mtime_ns,
    _split,
    _with_letters,
    clamp_internal_date,
    normalize,
)
from mailyard.store.index_schema import _CACHED, WIRE_ITEMS
from mailyard.store.maildir import Maildir
from mailyard.store.quota import QuotaUsage


@dataclass(frozen=True)
class StoreResult:
    messages: tuple[MessageInfo, ...]  # the messages the STORE applied to, as they are now
    modified: tuple[int, ...]  # UIDs that failed UNCHANGEDSINCE (RFC 7162 [MODIFIED])


@dataclass(frozen=True)
class CopyResult:
    uidvalidity: int  # of the target (RFC 4315 COPYUID)
    uids: tuple[tuple[int, int], ...]  # (source UID, target UID)


_counter = iter(range(1, 1 << 62))  # copies' base names (see _fresh_base)


class MessageOperations(IndexDatabase):
    """Flags, expunge, append, copy and move; cached structures and usage."""

    # --- reading --------------------------------------------------------------------
    def usage(self) -> QuotaUsage:
        """The messages indexed in every folder: how many, and the sum of their
        RFC822.SIZEs (RFC 9208 MESSAGE and STORAGE).  No sync is done: files not
        indexed yet are not counted (see ``store/usage.py``)."""
        with self._read() as db:
            count, total = db.execute("SELECT count(*), coalesce(sum(size), 0)"
                                      " FROM messages").fetchone()
        return QuotaUsage(int(total), int(count))

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
        with undone_on_failure() as undo, self._write() as db:
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
                    undo.append(functools.partial(os.rename, box.path / "cur" / renamed,
                                                  box.path / "cur" / row.filename))
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
        with undone_on_failure() as undo, self._write() as db:
            fid, validity, uidnext, highest = self._folder(db, name)
            cur = box.path / "cur"
            before = _mtime_ns(cur)
            # Written under the index's write lock, straight into cur/ with its flags:
            # no sync can see the file before its row is made, and a crash before the
            # commit leaves a file the next sync indexes.
            filename = box.deliver(source, info=letters)
            path = cur / filename
            undo.append(functools.partial(os.unlink, path))
            if internal_date is not None:  # before the epoch: the epoch (what the index keeps)
                when = clamp_internal_date(internal_date)
                os.utime(path, (when, when))
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
        with undone_on_failure() as undo, self._write() as db:
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
                    undo.append(functools.partial(os.rename, new, old))
                    moved.append(row.uid)
                else:
                    new = dst.path / "cur" / _with_letters(_fresh_base(dst, row.base), row.letters)
                    try:
                        _link_or_copy(old, new, dst)
                    except FileNotFoundError:
                        continue
                    undo.append(functools.partial(os.unlink, new))
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

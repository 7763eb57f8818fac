"""Folder operations of the mailbox index: the default folders, LIST, CREATE, DELETE
and RENAME (RFC 9051 6.3.4-6.3.6, RFC 6154 SPECIAL-USE).

:class:`FolderOperations` is a part of :class:`~mailyard.store.index.MailboxIndex`.
Each operation changes the Maildir++ directories first (a rename of the directory
is the atomic step) and the folder rows in the same write transaction.  Separate
from the message operations because folders change the directory tree, messages
the files inside one folder.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
from dataclasses import dataclass

from mailyard.fs import fsync_dir
from mailyard.store.api import INBOX, MailboxNameError
from mailyard.store.index_db import FolderNotFound, IndexDatabase, undone_on_failure
from mailyard.store.index_files import DELIMITER, imap_name, normalize

#: The default folders and their SPECIAL-USE attributes (RFC 6154).
DEFAULT_FOLDERS = {"Drafts": "\\Drafts", "Sent": "\\Sent", "Junk": "\\Junk",
                   "Trash": "\\Trash", "Archive": "\\Archive"}


class FolderExists(MailboxNameError):
    """The folder exists already (IMAP ``NO [ALREADYEXISTS]``)."""


@dataclass(frozen=True)
class FolderInfo:
    name: str
    special_use: str | None


class FolderOperations(IndexDatabase):
    """Creating, listing, renaming and deleting folders."""

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
        with undone_on_failure() as undo, self._write() as db:
            if box.exists():
                raise FolderExists(f"folder {name!r} exists")
            undo.append(functools.partial(shutil.rmtree, box.path))
            box.create()
            self._folder(db, name, special_use)

    def delete_folder(self, name: str) -> None:
        """Delete a folder and its messages (its sub-folders stay, RFC 9051 6.3.5)."""
        name = normalize(name)
        if name == INBOX:
            raise MailboxNameError("INBOX cannot be deleted")
        box = self.maildir(name)
        with undone_on_failure() as undo, self._write() as db:
            if not box.exists():
                raise FolderNotFound(f"no folder {name!r}")
            trash = self.inbox.path / f"..mailyard-deleted-{secrets.token_hex(6)}"
            os.rename(box.path, trash)  # atomic: gone from every listing at once
            undo.append(functools.partial(os.rename, trash, box.path))
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
        with undone_on_failure() as undo, self._write() as db:
            if not src.exists():
                raise FolderNotFound(f"no folder {old!r}")
            if dst.exists():
                raise FolderExists(f"folder {new!r} exists")
            # Every new name is checked before the first rename: none half done.
            moves = [(old, new)] + [
                (f.name, normalize(new + f.name[len(old):]))
                for f in self.list_folders_unlocked() if f.name.startswith(old + DELIMITER)]
            for a, b in moves:
                os.rename(self.maildir(a).path, self.maildir(b).path)
                undo.append(functools.partial(os.rename, self.maildir(b).path,
                                              self.maildir(a).path))
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

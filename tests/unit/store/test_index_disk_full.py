"""The mailbox index on a full disk: when the commit of a change fails with SQLite's
SQLITE_FULL, the error is an OSError with errno ENOSPC and the file operations of the
change are undone, so nothing the next sync would bring back is left behind."""

from __future__ import annotations

import errno
import io
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mailyard.fs import disk_full
from mailyard.store.api import INBOX
from mailyard.store.index import MailboxIndex, MailboxIndexError
from mailyard.store.maildir import Maildir

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nHello\r\n"


class FullDisk:
    """The index's connection, with every COMMIT failing as on a full disk."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


@pytest.fixture
def index(tmp_path: Path) -> MailboxIndex:
    box = Maildir(tmp_path / "example.test" / "user", "mx.example.test")
    box.create()
    idx = MailboxIndex(box)
    idx.append(INBOX, io.BytesIO(MESSAGE), ["\\Seen"])
    return idx


def files(index: MailboxIndex, name: str) -> list[str]:
    path = index.maildir(name).path
    return sorted(os.listdir(path / "cur") + os.listdir(path / "new"))


def fill(index: MailboxIndex) -> sqlite3.Connection:
    real = index._db
    index._db = FullDisk(real)  # type: ignore[assignment]
    return real


def refused(fn: Any, *args: Any) -> MailboxIndexError:
    with pytest.raises(MailboxIndexError) as caught:
        fn(*args)
    assert caught.value.errno == errno.ENOSPC
    assert disk_full(caught.value)
    return caught.value


def test_disk_full_tells_enospc_edquot_and_sqlite_full() -> None:
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert disk_full(sqlite3.OperationalError("database or disk is full"))
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.Error as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert disk_full(outer)
    shm = sqlite3.OperationalError("disk I/O error")  # a -shm file it cannot grow
    shm.sqlite_errorcode = sqlite3.SQLITE_IOERR_SHMSIZE
    assert disk_full(shm)
    assert not disk_full(OSError(errno.EIO, "I/O error"))
    assert not disk_full(sqlite3.OperationalError("database is locked"))
    assert not disk_full(None)


def test_append_on_a_full_disk_leaves_no_file(index: MailboxIndex) -> None:
    before = files(index, INBOX)
    real = fill(index)
    refused(index.append, INBOX, io.BytesIO(MESSAGE + b"two"), [])
    index._db = real
    assert files(index, INBOX) == before
    assert [m.uid for m in index.sync(INBOX).messages] == [1]
    validity, info = index.append(INBOX, io.BytesIO(MESSAGE + b"two"), [])
    assert info.uid == 2
    assert len(files(index, INBOX)) == 2


def test_copy_and_move_on_a_full_disk_change_nothing(index: MailboxIndex) -> None:
    before = files(index, INBOX)
    real = fill(index)
    refused(index.copy, INBOX, [1], "Trash")
    refused(index.move, INBOX, [1], "Trash")
    index._db = real
    assert files(index, INBOX) == before
    assert files(index, "Trash") == []
    assert [m.uid for m in index.sync(INBOX).messages] == [1]
    assert index.sync("Trash").messages == ()
    assert index.copy(INBOX, [1], "Trash").uids == ((1, 1),)
    assert [m.uid for m in index.sync("Trash").messages] == [1]


def test_store_on_a_full_disk_keeps_the_flags(index: MailboxIndex) -> None:
    before = files(index, INBOX)
    real = fill(index)
    refused(index.store, INBOX, [1], "+", ["\\Flagged"])
    index._db = real
    assert files(index, INBOX) == before
    assert index.sync(INBOX).messages[0].flags == frozenset({"\\Seen"})
    index.store(INBOX, [1], "+", ["\\Flagged"])
    assert index.sync(INBOX).messages[0].flags == frozenset({"\\Seen", "\\Flagged"})


def test_create_delete_rename_on_a_full_disk_change_nothing(index: MailboxIndex) -> None:
    names = {f.name for f in index.list_folders()}
    real = fill(index)
    refused(index.create_folder, "Projects")
    refused(index.delete_folder, "Archive")
    refused(index.rename_folder, "Archive", "Old")
    index._db = real
    assert {f.name for f in index.list_folders()} == names
    assert not index.maildir("Projects").exists()
    assert index.maildir("Archive").exists() and not index.maildir("Old").exists()
    index.create_folder("Projects")
    assert "Projects" in {f.name for f in index.list_folders()}


def test_a_full_disk_at_open_is_not_damage(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLITE_FULL while opening is no reason to set the index aside (and give every
    folder a new UIDVALIDITY): the open fails with ENOSPC and the file stays."""
    box = Maildir(tmp_path / "example.test" / "user", "mx.example.test")
    box.create()
    first = MailboxIndex(box)
    validity = first.sync(INBOX).uidvalidity
    first.close()

    def full(self: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(MailboxIndex, "_connect", full)
    refused(MailboxIndex, box)
    monkeypatch.undo()
    assert not [n for n in os.listdir(box.path) if ".damaged-" in n]
    assert MailboxIndex(box).sync(INBOX).uidvalidity == validity

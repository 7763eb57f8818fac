"""The per-user mailbox index (mailyard.store.index): UIDs, flags, modseq, sync, crashes."""

from __future__ import annotations

import io
import multiprocessing
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from mailyard.store.api import INBOX, MailboxNameError
from mailyard.store.index import (
    INDEX_NAME,
    FolderExists,
    FolderNotFound,
    MailboxIndex,
    disk_name,
    imap_name,
)
from mailyard.store.maildir import Maildir

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nHello\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inbox(tmp_path: Path, clock: Clock) -> Maildir:
    box = Maildir(tmp_path / "example.test" / "user", "mx.example.test", clock=clock)
    box.create()
    return box


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def index(inbox: Maildir, clock: Clock) -> MailboxIndex:
    return MailboxIndex(inbox, clock=clock)


def drop(box: Maildir, text: bytes = MESSAGE, key: str = "") -> str:
    """A message put into new/ by another program (local delivery)."""
    return box.deliver(io.BytesIO(text), unique=key)


def test_created_private_with_default_folders(index: MailboxIndex, inbox: Maildir) -> None:
    db = inbox.path / INDEX_NAME
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    folders = {f.name: f.special_use for f in index.list_folders()}
    assert folders == {INBOX: None, "Drafts": "\\Drafts", "Sent": "\\Sent",
                       "Junk": "\\Junk", "Trash": "\\Trash", "Archive": "\\Archive"}
    assert (inbox.path / ".Sent" / "maildirfolder").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sync_picks_up_new_files_in_arrival_order(index: MailboxIndex, inbox: Maildir,
                                                  clock: Clock) -> None:
    drop(inbox, key="b")
    clock.now -= 10  # delivered earlier: gets the lower UID
    first = drop(inbox, key="a")
    state = index.sync(INBOX)
    assert [m.uid for m in state.messages] == [1, 2]
    assert state.messages[0].path.name.startswith(first)
    assert state.uidnext == 3
    assert not os.listdir(inbox.path / "new")  # moved to cur/ as IMAP does
    assert state.messages[0].size == len(MESSAGE)  # W=: CRLF octets
    env, body = index.structures(INBOX, [1])[1]
    assert isinstance(env, list) and env[1] == b"hi"


def test_uids_never_reused_across_restarts(inbox: Maildir, clock: Clock) -> None:
    index = MailboxIndex(inbox, clock=clock)
    drop(inbox)
    drop(inbox)
    state = index.sync(INBOX)
    index.store(INBOX, [2], "+", ["\\Deleted"])
    assert index.expunge(INBOX) == [2]
    index.close()
    again = MailboxIndex(inbox, clock=clock)
    drop(inbox)
    state2 = again.sync(INBOX)
    assert state2.uidvalidity == state.uidvalidity
    assert [m.uid for m in state2.messages] == [1, 3]


def test_removed_file_is_expunged_and_vanished(index: MailboxIndex, inbox: Maildir) -> None:
    drop(inbox)
    drop(inbox)
    state = index.sync(INBOX)
    os.unlink(state.messages[0].path)  # another program removes it
    after = index.sync(INBOX)
    assert [m.uid for m in after.messages] == [2]
    changes = index.changes(INBOX, state.highestmodseq)
    assert changes.vanished == (1,)
    assert after.highestmodseq > state.highestmodseq


def test_flags_round_trip_to_file_names(index: MailboxIndex, inbox: Maildir) -> None:
    drop(inbox)
    state = index.sync(INBOX)
    result = index.store(INBOX, [1], "+", ["\\Seen", "\\Flagged", "$Important"])
    info = result.messages[0]
    assert info.flags == {"\\Seen", "\\Flagged", "$Important"}
    assert info.path.name.endswith(":2,FS") and info.path.exists()
    assert info.modseq > state.highestmodseq
    # mutt marks it answered and unflags it: the index takes the file name's flags
    os.rename(info.path, info.path.with_name(info.path.name.replace(":2,FS", ":2,RS")))
    again = index.sync(INBOX).messages[0]
    assert again.flags == {"\\Seen", "\\Answered", "$Important"}
    assert again.modseq > info.modseq
    removed = index.store(INBOX, [1], "-", ["\\Seen", "$Important"]).messages[0]
    assert removed.flags == {"\\Answered"} and removed.path.name.endswith(":2,R")
    replaced = index.store(INBOX, [1], "=", ["\\Draft"]).messages[0]
    assert replaced.flags == {"\\Draft"} and replaced.path.name.endswith(":2,D")


def test_unchangedsince_refuses_modified(index: MailboxIndex, inbox: Maildir) -> None:
    """RFC 7162 3.1.3: a message changed after UNCHANGEDSINCE is not stored."""
    drop(inbox)
    drop(inbox)
    state = index.sync(INBOX)
    index.store(INBOX, [1], "+", ["\\Seen"])
    result = index.store(INBOX, [1, 2], "+", ["\\Flagged"],
                         unchanged_since=state.highestmodseq)
    assert result.modified == (1,)
    assert [m.uid for m in result.messages] == [2]


def test_expunge_records_vanished(index: MailboxIndex, inbox: Maildir) -> None:
    for _ in range(3):
        drop(inbox)
    index.sync(INBOX)
    index.store(INBOX, [1, 3], "+", ["\\Deleted"])
    before = index.sync(INBOX).highestmodseq
    assert index.expunge(INBOX, [3]) == [3]  # UID EXPUNGE limits it
    assert index.expunge(INBOX) == [1]
    assert index.changes(INBOX, before).vanished == (1, 3)
    assert len(os.listdir(inbox.path / "cur")) == 1


def test_append_copy_move(index: MailboxIndex, inbox: Maildir) -> None:
    validity, info = index.append("Drafts", io.BytesIO(MESSAGE), ["\\Draft", "work"],
                                  internal_date=1_600_000_000)
    assert info.uid == 1 and info.flags == {"\\Draft", "work"}
    assert info.internal_date == 1_600_000_000 and info.path.name.endswith(":2,D")
    copied = index.copy("Drafts", [1], "Sent")
    assert copied.uids == ((1, 1),)
    sent = index.sync("Sent").messages[0]
    assert sent.flags == {"\\Draft", "work"} and sent.path != info.path
    moved = index.move("Sent", [1], INBOX)
    assert moved.uids == ((1, 1),)
    assert index.sync("Sent").messages == ()
    assert index.changes("Sent", 0).vanished == (1,)
    assert index.structures(INBOX, [1])[1][0] == index.structures("Drafts", [1])[1][0]
    with pytest.raises(FolderNotFound):
        index.append("Nope", io.BytesIO(MESSAGE))


@pytest.mark.parametrize(("asked", "kept"), [
    (-62135596800.0, 0.0),  # 01-Jan-0001: before the epoch, the epoch
    (-617_000_000.0, 0.0),  # 1950: a file system could keep it, the index does not
    (0.0, 0.0),
    (1_600_000_000.0, 1_600_000_000.0)])
def test_append_internal_date_before_the_epoch(index: MailboxIndex, asked: float,
                                               kept: float) -> None:
    """The index and the file agree on the internal date an APPEND asked for, clamped
    to the range FETCH INTERNALDATE shows (01-Jan-1970 to 31-Dec-9999)."""
    _, info = index.append(INBOX, io.BytesIO(MESSAGE), internal_date=asked)
    assert info.internal_date == kept
    assert info.path.stat().st_mtime == kept
    assert index.sync(INBOX).messages[0].internal_date == kept


def test_synced_file_from_before_the_epoch(index: MailboxIndex, inbox: Maildir) -> None:
    """A file another program dated before 1970 is indexed at the epoch."""
    name = drop(inbox)
    os.utime(inbox.path / "new" / name, (-86400.0, -86400.0))
    assert index.sync(INBOX).messages[0].internal_date == 0.0


def test_folders_create_rename_delete(index: MailboxIndex, inbox: Maildir) -> None:
    index.create_folder("Projekte/Bücher")
    assert (inbox.path / ".Projekte.B&APw-cher" / "maildirfolder").exists()
    assert imap_name(".Projekte.B&APw-cher") == "Projekte/Bücher"
    assert disk_name("a&b") == "a&-b"
    with pytest.raises(FolderExists):
        index.create_folder("Projekte/Bücher")
    index.append("Projekte/Bücher", io.BytesIO(MESSAGE))
    old = index.sync("Projekte/Bücher")
    index.create_folder("Projekte")
    index.rename_folder("Projekte", "Alt")
    names = [f.name for f in index.list_folders()]
    assert "Alt/Bücher" in names and "Projekte" not in names
    renamed = index.sync("Alt/Bücher")
    assert renamed.uidvalidity == old.uidvalidity and len(renamed.messages) == 1
    index.delete_folder("Alt/Bücher")
    assert "Alt/Bücher" not in [f.name for f in index.list_folders()]
    index.create_folder("Alt/Bücher")
    assert index.sync("Alt/Bücher").uidvalidity > old.uidvalidity
    for bad in ("a/../b", "x.y", "a*", "", "a//b"):
        with pytest.raises(ValueError):
            index.create_folder(bad)


def test_damaged_index_is_rebuilt_with_new_uidvalidity(inbox: Maildir, clock: Clock) -> None:
    index = MailboxIndex(inbox, clock=clock)
    drop(inbox)
    old = index.sync(INBOX)
    index.store(INBOX, [1], "+", ["\\Seen"])
    index.close()
    db = inbox.path / INDEX_NAME
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    clock.now += 5
    rebuilt = MailboxIndex(inbox, clock=clock).sync(INBOX)
    assert rebuilt.uidvalidity != old.uidvalidity
    assert [(m.uid, m.flags) for m in rebuilt.messages] == [(1, {"\\Seen"})]


# --- crashes between the file and the index ---------------------------------------------

class Crash(Exception):
    pass


def test_crash_after_unlink_before_commit(index: MailboxIndex, inbox: Maildir,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """File first: the expunge's unlink happened, the index commit did not."""
    drop(inbox)
    before = index.sync(INBOX)
    index.store(INBOX, [1], "+", ["\\Deleted"])

    def crash(path: object) -> None:
        raise Crash

    monkeypatch.setattr("mailyard.store.index_messages.fsync_dir", crash)
    with pytest.raises(Crash):
        index.expunge(INBOX)
    monkeypatch.undo()
    assert index.sync(INBOX).messages == ()
    assert index.changes(INBOX, before.highestmodseq).vanished == (1,)


def test_crash_after_append_rename_before_commit(index: MailboxIndex, inbox: Maildir,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """File first: the appended file is in cur/ with its flags, the row is missing."""
    def crash(*args: object) -> None:
        raise Crash

    monkeypatch.setattr(MailboxIndex, "_insert", crash)
    with pytest.raises(Crash):
        index.append(INBOX, io.BytesIO(MESSAGE), ["\\Seen"])
    monkeypatch.undo()
    state = index.sync(INBOX)
    assert [(m.uid, m.flags) for m in state.messages] == [(1, {"\\Seen"})]


def test_index_ahead_of_the_disk(index: MailboxIndex, inbox: Maildir) -> None:
    """Index first: the commit survived, the file operation was lost (power loss)."""
    drop(inbox)
    first = index.sync(INBOX).messages[0]
    kept = first.path.read_bytes()
    flagged = index.store(INBOX, [1], "+", ["\\Seen", "\\Deleted"]).messages[0]
    # the flag rename is lost: the old name comes back; the disk wins
    os.rename(flagged.path, first.path)
    assert index.sync(INBOX).messages[0].flags == frozenset()
    index.store(INBOX, [1], "+", ["\\Deleted"])
    assert index.expunge(INBOX) == [1]
    # the unlink is lost: the file comes back, under a new UID (1 is never reused)
    first.path.write_bytes(kept)
    assert [m.uid for m in index.sync(INBOX).messages] == [2]


# --- several processes ------------------------------------------------------------------

def _worker(path: str, keyword: str, rounds: int) -> None:
    index = MailboxIndex(Maildir(path, "mx.example.test"))
    for i in range(rounds):
        index.store(INBOX, [1], "+", [f"{keyword}{i}"])
        index.append(INBOX, io.BytesIO(MESSAGE))
        index.sync(INBOX)
    index.close()


def test_two_processes_no_lost_update_unique_uids(index: MailboxIndex, inbox: Maildir) -> None:
    drop(inbox)
    index.sync(INBOX)
    rounds = 15
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(inbox.path), k, rounds)) for k in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    state = index.sync(INBOX)
    uids = [m.uid for m in state.messages]
    assert uids == list(range(1, 2 + 2 * rounds))
    assert state.messages[0].flags == {f"{k}{i}" for k in "ab" for i in range(rounds)}
    assert len(os.listdir(inbox.path / "cur")) == 1 + 2 * rounds


def test_name_longer_than_a_directory_entry_is_refused_whole(index: MailboxIndex,
                                                            inbox: Maildir) -> None:
    """A folder is one ``.Name`` directory entry, at most 255 bytes (NAME_MAX): a
    longer name is a name error before anything is created, and a RENAME whose
    sub-folder would get too long renames nothing (no half-moved hierarchy)."""
    before = sorted(os.listdir(inbox.path))
    longest = "b" * 254  # ".bbb…" is 255 bytes
    index.create_folder(longest)
    # "é" * 95 is one modified UTF-7 run of 256 bytes on disk.
    for bad in ("b" * 255, "é" * 95, "a/" * 127 + "a"):
        with pytest.raises(MailboxNameError, match="too long"):
            index.create_folder(bad)
    assert sorted(os.listdir(inbox.path)) == sorted(before + ["." + longest])
    index.create_folder("p")
    index.create_folder("p/" + "c" * 252)
    with pytest.raises(MailboxNameError, match="too long"):
        index.rename_folder("p", "pq")
    names = {f.name for f in index.list_folders()}
    assert {"p", "p/" + "c" * 252} <= names and not any(n.startswith("pq") for n in names)

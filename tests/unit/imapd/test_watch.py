"""The folder watcher's probe (mailyard.imapd.watch): what it syncs and when it says
a folder changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.imapd.accounts import Account
from mailyard.imapd.watch import QUIET, FolderWatch
from mailyard.store.index import CurState, MailboxIndex
from mailyard.store.maildir import Maildir


def watch(tmp_path: Path) -> FolderWatch:
    inbox = Maildir(tmp_path / "u", "host")
    inbox.create()
    return FolderWatch(Account("u@example.test", MailboxIndex(inbox)), "INBOX")


def test_delivery_is_indexed_and_reported(tmp_path: Path) -> None:
    fw = watch(tmp_path)
    fw.probe()
    assert not fw.probe()
    fw.index.inbox.deliver([b"Subject: a\n\nx\n"])
    assert fw.probe()
    assert not list((fw.account.root / "new").iterdir())  # moved to cur/ with a UID
    assert not fw.probe()


def test_imap_burst_is_synced_once_the_index_is_quiet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fw = watch(tmp_path)
    fw.index.inbox.deliver([b"Subject: a\n\nx\n"])
    fw.probe()
    uid = fw.index.sync("INBOX").messages[0].uid
    syncs: list[str] = []
    real = fw.account.full_sync
    monkeypatch.setattr(fw.account, "full_sync", lambda name: syncs.append(name) or real(name))
    now = [1000.0]
    fw.clock = lambda: now[0]
    fw.index.store("INBOX", [uid], "+", ["\\Seen"])  # renames in cur/, through the index
    assert fw.index.check("INBOX").cur is not CurState.CHANGED  # the index knows it
    assert fw.probe()  # the index moved: reported, and no sync
    unsure = fw.index.check("INBOX").cur is CurState.UNSURE  # the rename was just now
    now[0] += QUIET / 2
    assert not fw.probe()
    assert syncs == []  # not quiet for long enough yet
    now[0] += QUIET / 2
    assert not fw.probe()  # quiet now: a sync only if the index was unsure of cur/
    assert syncs == (["INBOX"] if unsure else [])


def test_rename_by_another_program_is_taken_in_at_once(tmp_path: Path) -> None:
    fw = watch(tmp_path)
    fw.index.inbox.deliver([b"Subject: a\n\nx\n"])
    fw.probe()
    fw.probe()
    (path,) = list((fw.account.root / "cur").iterdir())
    path.rename(path.with_name(path.name + "F"))
    assert fw.probe()
    assert "\\Flagged" in fw.index.sync("INBOX").messages[0].flags


def test_deleted_folder_is_quiet(tmp_path: Path) -> None:
    inbox = Maildir(tmp_path / "u", "host")
    inbox.create()
    acc = Account("u@example.test", MailboxIndex(inbox))
    acc.index.create_folder("Gone")
    fw = FolderWatch(acc, "Gone")
    fw.probe()
    acc.index.delete_folder("Gone")
    assert not fw.probe()

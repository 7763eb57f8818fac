"""The per-process account (mailyard.imapd.accounts): the folder-state cache that
spares SELECT a full sync, and subscriptions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailyard.imapd.accounts import Account
from mailyard.store.index import CurState, MailboxIndex
from mailyard.store.maildir import Maildir


def age(box: Path, seconds: float = 10.0) -> None:
    """Make the Maildir's directories look untouched for ``seconds``."""
    for sub in ("new", "cur"):
        st = os.stat(box / sub)
        os.utime(box / sub, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def account(tmp_path: Path) -> Account:
    inbox = Maildir(tmp_path / "u", "host")
    inbox.create()
    return Account("u@example.test", MailboxIndex(inbox))


def test_unchanged_folder_is_not_synced_again(tmp_path: Path) -> None:
    acc = account(tmp_path)
    acc.index.inbox.deliver([b"Subject: a\n\nx\n"])
    first = acc.sync("INBOX")
    assert len(first.messages) == 1
    assert acc.sync("INBOX") is first  # cur/ as the sync saw it, index unchanged


def test_mail_waiting_in_new_is_always_synced(tmp_path: Path) -> None:
    acc = account(tmp_path)
    cached = acc.sync("INBOX")
    acc.index.inbox.deliver([b"Subject: c\n\nx\n"])
    age(acc.root)  # even with an old mtime: new/ is not empty
    state = acc.sync("INBOX")
    assert state is not cached and len(state.messages) == 1


def test_file_renamed_by_another_program_is_synced(tmp_path: Path) -> None:
    """mutt marks a message seen by renaming it in cur/: the mtime of cur/ moves past
    the last sync."""
    acc = account(tmp_path)
    acc.index.inbox.deliver([b"Subject: m\n\nx\n"])
    acc.sync("INBOX")
    age(acc.root)  # an mtime the index did not record: a change by another program
    assert acc.index.check("INBOX").cur is CurState.CHANGED
    acc.sync("INBOX")
    assert acc.index.check("INBOX").cur is CurState.CLEAN
    (path,) = list((acc.root / "cur").iterdir())
    path.rename(path.with_name(path.name + "S"))
    assert "\\Seen" in acc.sync("INBOX").messages[0].flags


def test_index_change_without_directory_change_is_seen(tmp_path: Path) -> None:
    """A keyword lives in the index only: HIGHESTMODSEQ moves, no directory does."""
    acc = account(tmp_path)
    acc.index.inbox.deliver([b"Subject: d\n\nx\n"])
    uid = acc.sync("INBOX").messages[0].uid
    age(acc.root)
    acc.sync("INBOX")
    acc.index.store("INBOX", [uid], "+", ["project"])
    assert "project" in acc.sync("INBOX").messages[0].flags


def test_changes_through_the_index_advance_the_state_without_a_listing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flag changes, expunges and appends made through the index (any session, any
    process) are read from the index: no sync lists cur/ again."""
    acc = account(tmp_path)
    for n in range(3):
        acc.index.inbox.deliver([b"Subject: %d\n\nx\n" % n])
    first = acc.sync("INBOX")
    age(acc.root)
    acc.sync("INBOX")  # a sync that records the aged mtime
    syncs: list[str] = []
    real = acc.index.sync
    monkeypatch.setattr(acc.index, "sync", lambda name: syncs.append(name) or real(name))
    one, two, three = (m.uid for m in first.messages)
    acc.index.store("INBOX", [one], "+", ["\\Seen", "work"])
    acc.index.store("INBOX", [three], "+", ["\\Deleted"])
    acc.index.expunge("INBOX")
    acc.index.append("INBOX", [b"Subject: new\n\nx\n"])
    state = acc.sync("INBOX")
    assert syncs == []
    assert [m.uid for m in state.messages] == [one, two, three + 1]
    assert state.messages[0].flags == {"\\Seen", "work"}
    assert (state.uidvalidity, state.uidnext, state.highestmodseq) == \
        acc.index.header("INBOX")
    assert state.messages == acc.index.sync("INBOX").messages


def test_subscriptions_default_to_every_folder_then_persist(tmp_path: Path) -> None:
    acc = account(tmp_path)
    assert {"INBOX", "Sent", "Trash"} <= acc.subscriptions()
    acc.set_subscribed("Sent", False)
    acc.set_subscribed("Lists/rust", True)
    again = Account(acc.address, acc.index)
    assert "Sent" not in again.subscriptions() and "Lists/rust" in again.subscriptions()


def test_accounts_linger_after_the_last_session(tmp_path: Path) -> None:
    from mailyard.imapd.accounts import LINGER, Accounts
    from mailyard.store.maildir import MaildirStore

    now = [0.0]
    accounts = Accounts(MaildirStore(tmp_path / "mail", "host"), clock=lambda: now[0])
    first = accounts.open("a@example.test")
    accounts.release(first)
    now[0] += LINGER / 2
    assert accounts.open("a@example.test") is first  # still open: same index
    accounts.release(first)
    now[0] += LINGER
    other = accounts.open("b@example.test")  # sweeps the expired one
    assert accounts.open("a@example.test") is not first
    accounts.release(other)
    accounts.close()

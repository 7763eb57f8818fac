"""The per-process account (mailyard.imapd.accounts): the folder-state cache that
spares SELECT a full sync, and subscriptions."""

from __future__ import annotations

import os
from pathlib import Path

from mailyard.imapd.accounts import Account, stamp
from mailyard.store.index import MailboxIndex
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
    age(acc.root)
    second = acc.sync("INBOX")  # stamp taken now, state synced and kept
    assert acc.sync("INBOX") is second


def test_recent_change_is_never_trusted(tmp_path: Path) -> None:
    """A directory mtime younger than a second may hide a change made in the same
    clock tick: no cache then."""
    acc = account(tmp_path)
    assert stamp(acc.index, "INBOX") is None
    acc.sync("INBOX")
    acc.index.inbox.deliver([b"Subject: b\n\nx\n"])
    assert len(acc.sync("INBOX").messages) == 1


def test_delivery_after_cache_is_seen(tmp_path: Path) -> None:
    acc = account(tmp_path)
    age(acc.root)
    cached = acc.sync("INBOX")
    acc.index.inbox.deliver([b"Subject: c\n\nx\n"])
    assert acc.sync("INBOX") is not cached
    assert len(acc.sync("INBOX").messages) == 1


def test_index_change_without_directory_change_is_seen(tmp_path: Path) -> None:
    """A keyword lives in the index only: HIGHESTMODSEQ moves, no directory does."""
    acc = account(tmp_path)
    acc.index.inbox.deliver([b"Subject: d\n\nx\n"])
    uid = acc.sync("INBOX").messages[0].uid
    age(acc.root)
    acc.sync("INBOX")
    acc.index.store("INBOX", [uid], "+", ["project"])
    assert "project" in acc.sync("INBOX").messages[0].flags


def test_subscriptions_default_to_every_folder_then_persist(tmp_path: Path) -> None:
    acc = account(tmp_path)
    assert {"INBOX", "Sent", "Trash"} <= acc.subscriptions()
    acc.set_subscribed("Sent", False)
    acc.set_subscribed("Lists/rust", True)
    again = Account(acc.address, acc.index)
    assert "Sent" not in again.subscriptions() and "Lists/rust" in again.subscriptions()

"""The store's retrieval side on Maildir++ (Mailbox.inbox_messages, open_message,
remove_messages, lock_exclusive), as the POP3 server uses it."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from mailyard.store.api import MailboxBusy
from mailyard.store.maildir import MaildirStore, base_name

ADDRESS = "user@example.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    return MaildirStore(tmp_path / "mail", "mx.example.test", clock=Clock())


def test_lists_new_and_cur_oldest_first_with_crlf_sizes(store: MaildirStore) -> None:
    box = store.mailbox(ADDRESS)
    first = box.deliver(io.BytesIO(b"Subject: a\r\n\r\none\r\n"), key="q1")
    second = box.deliver(io.BytesIO(b"Subject: b\r\n\r\ntwo\r\nlines\r\n"), key="q2")
    # The first is read by a client: moved to cur/ with flags; its key does not change.
    new = store.maildir(ADDRESS).path / "new"
    os.rename(new / first.ref, new.parent / "cur" / f"{first.ref}:2,S")
    listed = box.inbox_messages()
    assert [m.key for m in listed] == [base_name(first.ref), base_name(second.ref)]
    assert [m.size for m in listed] == [len(b"Subject: a\r\n\r\none\r\n"),
                                        len(b"Subject: b\r\n\r\ntwo\r\nlines\r\n")]
    assert listed[0].received < listed[1].received


def test_size_computed_when_the_name_has_no_w(store: MaildirStore) -> None:
    """A file dropped in by another program (no S=/W= in its name, CRLF or LF)."""
    store.mailbox(ADDRESS)
    new = store.maildir(ADDRESS).path / "new"
    (new / "1600000000.other.host").write_bytes(b"Subject: x\n\nbody\n")
    (new / "1600000001.crlf.host").write_bytes(b"Subject: y\r\n\r\nbody\r\n")
    os.utime(new / "1600000000.other.host", (1_600_000_000, 1_600_000_000))
    os.utime(new / "1600000001.crlf.host", (1_600_000_001, 1_600_000_001))
    listed = store.mailbox(ADDRESS).inbox_messages()
    assert [(m.key, m.size) for m in listed] == [("1600000000.other.host", 20),
                                                 ("1600000001.crlf.host", 20)]


def test_open_follows_a_move_and_reports_a_removal(store: MaildirStore) -> None:
    box = store.mailbox(ADDRESS)
    stored = box.deliver(io.BytesIO(b"Subject: a\r\n\r\nbody\r\n"), key="q1")
    key = box.inbox_messages()[0].key
    path = store.maildir(ADDRESS).path
    os.rename(path / "new" / stored.ref, path / "cur" / f"{stored.ref}:2,")
    with box.open_message(key) as f:
        assert f.read() == b"Subject: a\n\nbody\n"  # as stored: LF line ends
    os.unlink(path / "cur" / f"{stored.ref}:2,")
    with pytest.raises(FileNotFoundError):
        box.open_message(key)


def test_remove_messages_only_those_and_tolerates_gone_ones(store: MaildirStore) -> None:
    box = store.mailbox(ADDRESS)
    refs = [box.deliver(io.BytesIO(b"x\r\n"), key=f"q{i}").ref for i in range(3)]
    keys = [m.key for m in box.inbox_messages()]
    os.unlink(store.maildir(ADDRESS).path / "new" / refs[2])  # removed by someone else
    assert box.remove_messages([keys[0], keys[2]]) == 1
    assert [m.key for m in box.inbox_messages()] == [keys[1]]
    assert box.remove_messages([]) == 0


def test_exclusive_lock_is_held_until_released(store: MaildirStore) -> None:
    """RFC 1939 8: one POP3 session per maildrop, across processes (flock)."""
    lock = store.mailbox(ADDRESS).lock_exclusive("pop3")
    with pytest.raises(MailboxBusy):
        store.mailbox(ADDRESS).lock_exclusive("pop3")
    other = store.mailbox(ADDRESS).lock_exclusive("other")  # a different purpose
    lock.release()
    lock.release()  # idempotent
    store.mailbox(ADDRESS).lock_exclusive("pop3").release()
    other.release()
    # The lock file is not a folder.
    assert store.mailbox(ADDRESS).folders() == ["INBOX"]


def test_lock_purpose_cannot_name_a_path(store: MaildirStore) -> None:
    with pytest.raises(ValueError):
        store.mailbox(ADDRESS).lock_exclusive("../x")

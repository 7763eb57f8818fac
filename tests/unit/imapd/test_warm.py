"""The search-index warmer (mailyard.imapd.warm): after a folder is warmed, string
searches (RFC 9051 6.4.4 BODY, TEXT, SUBJECT) answer from the index without reading
a message file, and answer as a scan of the files does; the worker skips what is
indexed, stops at shutdown, and survives a damaged index file and a failing folder."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest
from imapd_mailbox_harness import program

from mailyard.imapd.accounts import Account
from mailyard.imapd.search import SearchContext, search
from mailyard.imapd.searchindex import SEARCH_INDEX_NAME
from mailyard.imapd.warm import SearchWarmer
from mailyard.store.index import MailboxIndex
from mailyard.store.maildir import Maildir, read_message

COUNT = 40
WAIT = 60.0  # seconds a test waits for the worker at most (never reached when right)


def message(i: int) -> bytes:
    body = f"Line {i} of the report; {'needle in it' if i % 3 == 0 else 'nothing'}.\n"
    if i % 2:
        return (f"Subject: note {i}\nFrom: a{i}@example.org\nMIME-Version: 1.0\n"
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n"
                "\n").encode() + base64.encodebytes(body.encode())
    return f"Subject: note {i}\nFrom: a{i}@example.org\n\n{body}".encode()


@pytest.fixture
def account(tmp_path: Path) -> Account:
    inbox = Maildir(tmp_path / "u", "host")
    inbox.create()
    for i in range(COUNT):
        inbox.deliver([message(i)])
    account = Account("u@example.test", MailboxIndex(inbox))
    account.sessions = 1
    return account


class Reads:
    """A file reader that counts, and says when it has read ``signal_at`` files."""

    def __init__(self, signal_at: int = 1) -> None:
        self.count = 0
        self.signal_at = signal_at
        self.reached = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> bytes:
        with self._lock:
            self.count += 1
            if self.count >= self.signal_at:
                self.reached.set()
        return read_message(path)


def search_uids(account: Account, criteria: str, *, indexed: bool) -> tuple[list[int], int]:
    """UIDs matching, and how many files the search read."""
    state = account.sync("INBOX")
    paths = {m.uid: m.path for m in state.messages}
    reads = [0]

    def load(uid: int) -> bytes:
        reads[0] += 1
        return read_message(paths[uid])

    index = account.search_index().folder(state.uidvalidity, state.messages) if indexed else None
    ctx = SearchContext(state.messages, load, index=index)
    try:
        found = search(program(criteria), ctx)
    finally:
        if index is not None:
            index.close()
    return [state.messages[i].uid for i in found], reads[0]


def test_warmed_folder_is_searched_without_reading_files(account: Account) -> None:
    warmer = SearchWarmer(batch=7, pause=0)
    assert warmer.warm_folder(account, "INBOX") == COUNT
    for criteria in ('BODY "needle in"', "TEXT a3@example.org", "SUBJECT note", "BODY zzz"):
        scanned, _ = search_uids(account, criteria, indexed=False)
        answered, reads = search_uids(account, criteria, indexed=True)
        assert answered == scanned
        assert reads == 0, criteria
    assert len(search_uids(account, 'BODY "needle in"', indexed=True)[0]) == (COUNT + 2) // 3


def test_warming_skips_what_is_indexed(account: Account) -> None:
    search_uids(account, "BODY needle", indexed=True)  # a search indexed every message
    reads = Reads()
    assert SearchWarmer(read=reads).warm_folder(account, "INBOX") == 0
    assert reads.count == 0
    account.index.inbox.deliver([message(COUNT)])
    assert SearchWarmer(read=reads, pause=0).warm_folder(account, "INBOX") == 1
    assert reads.count == 1


def test_worker_stops_at_shutdown(account: Account) -> None:
    reads = Reads()
    warmer = SearchWarmer(batch=1, pause=3600, read=reads)  # would take hours
    warmer.warm(account, "INBOX")
    assert reads.reached.wait(WAIT)
    warmer.close(timeout=WAIT)
    assert not warmer.running
    assert reads.count == 1  # one batch, then the pause ended by the shutdown
    warmer.warm(account, "INBOX")  # after close: ignored, no new thread
    assert not warmer.running


def test_worker_stops_when_the_account_has_no_session(account: Account) -> None:
    account.sessions = 0
    reads = Reads()
    assert SearchWarmer(read=reads).warm_folder(account, "INBOX") == 0
    assert reads.count == 0


def test_worker_survives_a_damaged_index_and_a_failing_folder(account: Account) -> None:
    (account.root / SEARCH_INDEX_NAME).write_bytes(b"not a database at all" * 100)
    reads = Reads(signal_at=COUNT)
    warmer = SearchWarmer(batch=5, pause=0, read=reads)
    warmer.warm(account, "No such folder")  # raises in the worker: logged, skipped
    warmer.warm(account, "INBOX")
    assert reads.reached.wait(WAIT)
    warmer.close(timeout=WAIT)
    assert warmer.warmed == COUNT
    assert reads.count == COUNT
    assert search_uids(account, "BODY needle", indexed=True)[1] == 0


def test_a_folder_held_whole_is_not_queued(account: Account) -> None:
    """SELECT of a folder the index held whole at its last search queues nothing (no
    low-priority thread woken to find that out); new mail makes it queue again."""
    search_uids(account, "BODY needle", indexed=True)  # indexes every message
    assert not account.search_held("INBOX")  # rows written since: not known yet
    search_uids(account, "BODY needle", indexed=True)  # answered from the index
    assert account.search_held("INBOX")
    warmer = SearchWarmer(read=Reads(), pause=0)
    warmer.warm(account, "INBOX")
    assert not warmer.running
    account.index.inbox.deliver([message(COUNT)])
    account.sync("INBOX")
    assert not account.search_held("INBOX")
    warmer.warm(account, "INBOX")
    assert warmer.running
    warmer.close()

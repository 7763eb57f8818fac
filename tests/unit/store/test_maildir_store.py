"""The MailStore interface on Maildir++ (mailyard.store.maildir.MaildirStore)."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Self

import pytest

from mailyard.fs import DirectorySyncer, fsync_dir
from mailyard.store.api import INBOX, MailboxNameError, MailStore, StoredMessage
from mailyard.store.maildir import Maildir, MaildirStore, read_message

MESSAGE = b"Subject: hi\r\n\r\nHello\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> MaildirStore:
    return MaildirStore(tmp_path / "mail", "mx.example.test", clock=clock)


def test_is_a_mail_store(store: MaildirStore) -> None:
    assert isinstance(store, MailStore)


def test_deliver_and_find_by_key(store: MaildirStore, tmp_path: Path) -> None:
    box = store.mailbox("alice@example.test")
    assert store.exists("alice@example.test")
    stored = box.deliver(io.BytesIO(MESSAGE), prefix=b"Delivered-To: alice\r\n", key="Q1.a")
    path = tmp_path / "mail" / "example.test" / "alice" / "new" / stored.ref
    assert read_message(path) == b"Delivered-To: alice\r\n" + MESSAGE
    assert stored == StoredMessage(INBOX, stored.ref, path.stat().st_size,
                                   len(MESSAGE) + len(b"Delivered-To: alice\r\n"))
    assert box.find("Q1.b") is None
    assert box.find("Q1.b", "Q1.a") == stored


def test_deliver_into_the_special_use_junk_folder(store: MaildirStore, tmp_path: Path) -> None:
    box = store.mailbox("alice@example.test")
    junk = box.special_folder("\\Junk")  # RFC 6154: the default folders have their uses
    assert junk == "Junk"
    stored = box.deliver(io.BytesIO(MESSAGE), key="Q2.a", folder=junk)
    path = tmp_path / "mail" / "example.test" / "alice" / ".Junk" / "new" / stored.ref
    assert read_message(path) == MESSAGE and stored.folder == "Junk"
    assert box.find("Q2.a") is None  # not in the INBOX
    assert box.find("Q2.a", folder="Junk") == stored
    assert box.special_folder("\\Flagged") is None


def test_bad_address_is_a_name_error(store: MaildirStore) -> None:
    for bad in ("../x@example.test", "noatsign", ".hidden@example.test"):
        with pytest.raises(MailboxNameError):
            store.mailbox(bad)


def test_mailbox_without_create_makes_nothing(store: MaildirStore) -> None:
    box = store.mailbox("nobody@example.test", create=False)
    assert not store.exists("nobody@example.test")
    assert box.find("k") is None


def test_folders(store: MaildirStore) -> None:
    box = store.mailbox("alice@example.test")
    assert box.folders() == [INBOX]
    inbox = store.maildir("alice@example.test")
    inbox.folder("Sent").create()
    inbox.folder("Archive").create()
    assert box.folders() == [INBOX, "Archive", "Sent"]


def test_known_mailbox_is_not_created_again_until_the_sweep_is_due(
        store: MaildirStore, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_create, real_sweep = Maildir.create, Maildir.sweep_tmp
    monkeypatch.setattr(Maildir, "create", lambda self: (calls.append("create"),
                                                         real_create(self))[1])
    monkeypatch.setattr(Maildir, "sweep_tmp", lambda self: (calls.append("sweep"),
                                                            real_sweep(self))[1])
    for _ in range(3):
        store.mailbox("alice@example.test").deliver(io.BytesIO(MESSAGE), key=f"k{_}")
    assert calls == ["create", "sweep"]
    clock.now += store.sweep_interval + 1
    store.mailbox("alice@example.test")
    assert calls == ["create", "sweep", "create", "sweep"]


def test_first_use_sweeps_stale_tmp_files(store: MaildirStore, clock: Clock) -> None:
    inbox = store.maildir("alice@example.test")
    inbox.create()
    stale, fresh = inbox.path / "tmp" / "stale", inbox.path / "tmp" / "fresh"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (clock.now - 37 * 3600,) * 2)
    os.utime(fresh, (clock.now - 3600,) * 2)
    store.mailbox("alice@example.test")
    assert not stale.exists()
    assert fresh.exists()


def test_mailbox_removed_behind_the_store_is_made_again_on_retry(
        store: MaildirStore, tmp_path: Path) -> None:
    store.mailbox("alice@example.test").deliver(io.BytesIO(MESSAGE), key="k1")
    inbox = store.maildir("alice@example.test").path
    for sub in ("cur", "new", "tmp"):
        for name in os.listdir(inbox / sub):
            os.unlink(inbox / sub / name)
        os.rmdir(inbox / sub)
    with pytest.raises(FileNotFoundError):
        store.mailbox("alice@example.test").deliver(io.BytesIO(MESSAGE), key="k2")
    stored = store.mailbox("alice@example.test").deliver(io.BytesIO(MESSAGE), key="k2")
    assert (inbox / "new" / stored.ref).exists()


def test_concurrent_deliveries_into_one_maildir_share_new_fsyncs(tmp_path: Path) -> None:
    """While one delivery's fsync of new/ runs, the deliveries renamed meanwhile wait
    for one more fsync between them, and none returns before it."""
    gate = threading.Event()
    entered = threading.Event()
    synced: list[str] = []

    def fsync(path: str) -> None:
        entered.set()
        assert gate.wait(10)
        fsync_dir(path)
        synced.append(path)

    syncer = DirectorySyncer(fsync, linger=0)
    store = MaildirStore(tmp_path / "mail", "mx.example.test", syncer=syncer)
    store.mailbox("alice@example.test")
    done: list[str] = []

    def deliver(key: str) -> None:
        stored = store.mailbox("alice@example.test").deliver(io.BytesIO(MESSAGE), key=key)
        done.append(stored.ref)

    first = threading.Thread(target=deliver, args=("k0",))
    first.start()
    assert entered.wait(10)
    others = [threading.Thread(target=deliver, args=(f"k{i}",)) for i in range(1, 4)]
    for t in others:
        t.start()
    new = store.maildir("alice@example.test").path / "new"
    deadline = 200
    while len(os.listdir(new)) < 4 and deadline:  # every file renamed, none answered
        threading.Event().wait(0.01)
        deadline -= 1
    assert len(os.listdir(new)) == 4
    assert len(done) == 0
    gate.set()
    for t in (first, *others):
        t.join(10)
    assert len(done) == 4
    assert synced == [str(new)] * 2


class _VanishingEntry:
    """A tmp/ entry whose file a delivery renames away between the scan and stat."""

    def __init__(self, entry: os.DirEntry[str]) -> None:
        self.name, self.path = entry.name, entry.path

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return True

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        raise FileNotFoundError(2, "No such file or directory", self.path)


def test_sweep_skips_files_renamed_away_during_the_scan(
        store: MaildirStore, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep runs at a mailbox's first use, while other deliveries into it may be
    renaming their tmp/ files into new/: that is no error for anybody."""
    inbox = store.maildir("alice@example.test")
    inbox.create()
    (inbox.path / "tmp" / "in-flight").write_bytes(b"x")
    real_scandir = os.scandir

    class Scan:
        def __init__(self, path: str) -> None:
            self._it = real_scandir(path)

        def __enter__(self) -> Self:
            return self

        def __exit__(self, *exc: object) -> None:
            self._it.close()

        def __iter__(self):  # type: ignore[no-untyped-def]
            return (_VanishingEntry(e) for e in self._it)

    monkeypatch.setattr(os, "scandir", Scan)
    assert inbox.sweep_tmp(max_age=0) == 0
    monkeypatch.undo()
    stored = store.mailbox("alice@example.test").deliver(io.BytesIO(MESSAGE), key="k")
    assert store.mailbox("alice@example.test").find("k") == stored

"""Grouped directory fsyncs (mailyard.fs.DirectorySyncer) and the shared file helpers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailyard import fs
from mailyard.fs import DirectorySyncer

DIR = "/maildir/new"


class GatedFsync:
    """A fake directory fsync that records its calls and can be held at its start."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.calls = 0
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.fail_next: OSError | None = None
        self.lock = threading.Lock()

    def __call__(self, path: str) -> None:
        with self.lock:
            self.calls += 1
            n = self.calls
            self.events.append(f"start {n}")
        self.entered.set()
        assert self.hold.wait(10)
        with self.lock:
            self.events.append(f"end {n}")
            error, self.fail_next = self.fail_next, None
        if error is not None:
            raise error

    def log(self, what: str) -> None:
        with self.lock:
            self.events.append(what)


def wait_for(cond: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for another thread to reach a state."""
    deadline = time.monotonic() + 10
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached: {what}")
        time.sleep(0.001)


def waiting(syncer: DirectorySyncer) -> int:
    with syncer._lock:
        state = syncer._dirs.get(DIR)
        return sum(state.waiting.values()) if state else 0


def run(target: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def test_a_lone_caller_gets_one_fsync_at_once() -> None:
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync)
    syncer.sync(DIR)
    assert fsync.events == ["start 1", "end 1"]
    assert syncer.fsyncs == 1
    assert syncer._dirs == {}  # nothing kept for an idle directory


def test_callers_during_an_fsync_share_the_next_and_wait_for_it() -> None:
    """A caller that arrives while an fsync runs is not answered by that fsync (it may
    have started before the caller's rename), but by the next, shared by all such."""
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync)
    fsync.hold.clear()
    first = run(lambda: (syncer.sync(DIR), fsync.log("first returned")))
    assert fsync.entered.wait(10)
    later = [run(lambda i=i: (syncer.sync(DIR), fsync.log(f"later {i} returned")))
             for i in range(3)]
    wait_for(lambda: waiting(syncer) == 4, "three callers waiting behind the first")
    fsync.hold.set()
    for t in (first, *later):
        t.join(10)
    assert syncer.fsyncs == 2
    assert fsync.calls == 2
    ev = fsync.events
    assert ev.index("first returned") > ev.index("end 1")
    for i in range(3):
        assert ev.index(f"later {i} returned") > ev.index("end 2")


def test_an_fsync_error_reaches_every_caller_it_covers_and_the_next_succeeds() -> None:
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync)
    fsync.hold.clear()
    errors: list[BaseException | None] = []

    def call() -> None:
        try:
            syncer.sync(DIR)
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)

    first = run(call)
    assert fsync.entered.wait(10)
    fsync.fail_next = OSError(5, "EIO")  # the first fsync fails
    fsync.hold.set()
    first.join(10)
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    syncer.sync(DIR)  # a new caller gets a fresh fsync, which succeeds
    assert fsync.calls == 2
    assert syncer._dirs == {}


def test_leader_lingers_for_a_writer_still_writing_then_both_share_one_fsync() -> None:
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync, linger=30.0)  # ended by the writer, not the clock
    with syncer.pending(DIR) as ticket:
        leader = run(lambda: syncer.sync(DIR))
        wait_for(lambda: waiting(syncer) == 1, "the leader lingering")
        assert fsync.calls == 0  # it waits for the writer's rename
        ticket.sync()
    leader.join(10)
    assert not leader.is_alive()
    assert fsync.calls == 1


def test_a_writer_that_gives_up_releases_a_lingering_leader() -> None:
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync, linger=30.0)
    with pytest.raises(OSError), syncer.pending(DIR):
        leader = run(lambda: syncer.sync(DIR))
        wait_for(lambda: waiting(syncer) == 1, "the leader lingering")
        raise OSError(28, "ENOSPC")  # the write failed: no rename, no sync
    leader.join(10)
    assert not leader.is_alive()
    assert fsync.calls == 1
    assert syncer._dirs == {}


def test_different_directories_do_not_share() -> None:
    fsync = GatedFsync()
    syncer = DirectorySyncer(fsync)
    syncer.sync("/a/new")
    syncer.sync("/b/new")
    assert fsync.calls == 2


def test_file_helpers(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert fs.write_all(fd, [b"ab", b"", b"cde"]) == 5
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abcde"
    fs.fsync_dir(tmp_path)
    fs.unlink_quietly(path)
    fs.unlink_quietly(path)  # already gone: no error
    assert not path.exists()

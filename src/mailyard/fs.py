"""Durable-file primitives shared by the queue and the mail store.

* :func:`write_all` writes chunks to a descriptor, retrying short writes.
* :func:`fsync_dir` makes the entries of a directory (a rename into it) durable.
* :func:`unlink_quietly` removes a file that may already be gone.
* :func:`disk_full` tells a full disk (ENOSPC, EDQUOT, SQLite's SQLITE_FULL) from
  other storage failures.
* :func:`create_private_database` creates an SQLite database file owner-only without
  ever closing a descriptor of a file SQLite may already hold open in this process.
* :class:`DirectorySyncer` groups directory fsyncs for callers in threads: one fsync
  of a directory covers every rename into it made before the fsync started, so
  callers that finish together share one (the thread-based counterpart of
  ``queue/groupcommit.py``, which does the same for the queue's event loop).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress

StrPath = str | os.PathLike[str]


def write_all(fd: int, chunks: Iterable[bytes]) -> int:
    """Write every chunk to ``fd`` (short writes are continued); the bytes written."""
    size = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]
            size += written
    return size


def fsync_dir(path: StrPath) -> None:
    """fsync a directory, so that entries created or renamed into it survive a crash."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Serialises the creation of database files in this process.
_CREATE_LOCK = threading.Lock()


def create_private_database(path: StrPath) -> None:
    """Create the database file with mode 0600 (SQLite gives its -wal and -shm files
    the same mode) if it does not exist yet.

    Only a file this call has just created is ever opened and closed by hand: POSIX
    locks belong to the process and the file, so closing *any* descriptor of a database
    file drops every lock the process's SQLite connections hold on it, and another
    process may then delete the live WAL (sqlite.org/howtocorrupt.html 2.2).  A file
    that exists may have connections in this process and is left to SQLite alone.  The
    lock keeps the threads of this process from opening a new file before its creator
    has closed it, provided each calls this first.  Raises OSError."""
    with _CREATE_LOCK:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return
        os.close(fd)


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


# SQLite's result codes for a full disk: SQLITE_FULL ("database or disk is full"), and
# SQLITE_IOERR_SHMSIZE ("disk I/O error"), a -shm file it cannot grow, which is what a
# new connection to a WAL database meets on a full disk.
SQLITE_DISK_FULL_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR_SHMSIZE})


def disk_full(exc: BaseException | None) -> bool:
    """True when ``exc``, or an exception it was raised from, says the disk (or the
    user's disk quota) is full: OSError ENOSPC or EDQUOT, or SQLite's SQLITE_FULL
    ("database or disk is full") or SQLITE_IOERR_SHMSIZE."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (
                getattr(exc, "sqlite_errorcode", None) in SQLITE_DISK_FULL_CODES
                or "database or disk is full" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def unlink_quietly(path: StrPath) -> None:
    """Remove ``path``; a file that is already gone is no error."""
    with suppress(FileNotFoundError):
        os.unlink(path)


class _DirState:
    """One directory's fsyncs: numbered in the order they start."""

    __slots__ = ("completed", "cond", "errors", "running", "started", "waiting", "writers")

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)  # wakes only this directory's callers
        self.started = 0  # number of the last fsync started
        self.completed = 0  # number of the last fsync completed
        self.running = False
        self.writers = 0  # callers between begin() and their rename
        self.waiting: dict[int, int] = {}  # fsync number -> callers waiting for it
        self.errors: dict[int, BaseException] = {}  # fsync number -> its failure

    def idle(self) -> bool:
        return not (self.running or self.writers or self.waiting)


class SyncTicket:
    """A caller's place in a directory's group fsync (see :meth:`DirectorySyncer.pending`)."""

    def __init__(self, syncer: DirectorySyncer, key: str) -> None:
        self._syncer = syncer
        self._key = key
        self.synced = False

    def sync(self) -> None:
        """Wait until an fsync of the directory that started after this call has
        completed (so it covers every rename the caller made before); raises its error."""
        self.synced = True
        self._syncer._sync(self._key)


class DirectorySyncer:
    """Grouped fsyncs of directories, for callers in threads (a thread pool).

    A caller announces itself with :meth:`pending` before it writes, renames its file
    into the directory, then calls :meth:`SyncTicket.sync`.  The first caller to need
    an fsync becomes the leader and runs it; callers that need one while it runs wait
    for the next, which one of them runs for all.  Before it starts, a leader lingers
    up to ``linger`` seconds while other callers for the same directory are still
    between :meth:`pending` and their rename, so that deliveries finishing within a
    few ms share one fsync; a caller alone never waits for anybody.  No caller returns
    before an fsync that started after its own call to :meth:`SyncTicket.sync` has
    completed.
    """

    def __init__(self, fsync: Callable[[str], None] = fsync_dir, *,
                 linger: float = 0.003) -> None:
        self._fsync = fsync
        self._linger = linger
        self._lock = threading.Lock()
        self._dirs: dict[str, _DirState] = {}
        self.fsyncs = 0  # for tests and benchmarks: directory fsyncs run
        self.synced = 0  # callers answered

    @contextmanager
    def pending(self, directory: StrPath) -> Iterator[SyncTicket]:
        """Announce a rename into ``directory`` to come; the ticket's ``sync`` waits
        for the fsync covering it.  Leaving the block without ``sync`` (a failed
        write) just withdraws the announcement."""
        key = os.fspath(directory)
        with self._lock:
            state = self._dirs.get(key)
            if state is None:
                state = self._dirs[key] = _DirState(self._lock)
            state.writers += 1
        ticket = SyncTicket(self, key)
        try:
            yield ticket
        finally:
            if not ticket.synced:
                with self._lock:
                    state.writers -= 1
                    state.cond.notify_all()
                    self._forget_if_idle(key, state)

    def sync(self, directory: StrPath) -> None:
        """:meth:`pending` and :meth:`SyncTicket.sync` at once, for a rename already made."""
        with self.pending(directory) as ticket:
            ticket.sync()

    def _sync(self, key: str) -> None:
        with self._lock:
            state = self._dirs[key]
            state.writers -= 1
            if state.writers == 0:
                state.cond.notify_all()  # a lingering leader may be waiting for this rename
            need = state.started + 1  # the next fsync to start: it starts after now
            state.waiting[need] = state.waiting.get(need, 0) + 1
            lingered = False
            try:
                while state.completed < need:
                    if state.running:
                        state.cond.wait()
                    elif state.writers and self._linger > 0 and not lingered:
                        self._linger_for_writers(state)
                        lingered = True
                    else:
                        self._run_fsync(key, state)
                error = state.errors.get(need)
            finally:
                left = state.waiting[need] - 1
                if left:
                    state.waiting[need] = left
                else:
                    del state.waiting[need]
                    state.errors.pop(need, None)
                self.synced += 1
                self._forget_if_idle(key, state)
        if error is not None:
            raise error

    def _linger_for_writers(self, state: _DirState) -> None:
        """Wait (lock held by the condition) until the other callers for this directory
        have renamed, another caller started the fsync, or ``linger`` has passed."""
        deadline = time.monotonic() + self._linger
        while state.writers and not state.running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            state.cond.wait(remaining)

    def _run_fsync(self, key: str, state: _DirState) -> None:
        """Run the next fsync of ``key`` (called with the lock held; released meanwhile)."""
        state.running = True
        state.started += 1
        number = state.started
        error: BaseException | None = None
        self._lock.release()
        try:
            self._fsync(key)
        except BaseException as exc:  # noqa: BLE001 - answered to every caller it covers
            error = exc
        finally:
            self._lock.acquire()
            state.running = False
            state.completed = number
            if error is not None:
                state.errors[number] = error
            self.fsyncs += 1
            state.cond.notify_all()

    def _forget_if_idle(self, key: str, state: _DirState) -> None:
        if state.idle() and self._dirs.get(key) is state:
            del self._dirs[key]

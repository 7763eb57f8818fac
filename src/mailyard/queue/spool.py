"""The embedded durable queue: message files on local disk plus an SQLite index.

:class:`FileSpool` is the queue for one machine and any number of processes: the SMTP
workers commit messages, the master's dispatcher claims and records, the CLI lists and
holds, all at the same time, each with its own ``FileSpool`` over the same directory
(see :mod:`mailyard.queue.layout`).  Its methods block (file and SQLite I/O): it is the
synchronous engine behind :class:`~mailyard.queue.threaded.ThreadedSpool`, which serves
the asynchronous :mod:`~mailyard.queue.api` protocols from one ``queue-io`` thread, and
is used directly only where blocking is fine (the CLI, tests, an SMTP worker's
producer side, whose commit already runs in its own threads).

Durability: a message is acknowledged only after :meth:`SpoolWriter.commit` returns,
that is after its record (:mod:`mailyard.queue.record`) was written, fdatasync'd,
renamed into ``msg/`` and the directory fsync'd (:mod:`mailyard.queue.writer`).  The
blocking calls run in threads, and the directory fsyncs are group-committed across the
concurrent commits of a process (:mod:`mailyard.queue.groupcommit`).

How the index learns about new messages: the commit inserts them itself, right after
the directory fsync of its batch, in the same commit thread (one SQLite transaction per
batch, WAL, ``synchronous=NORMAL``, so no extra disk flush; meanwhile the file stages
of the next batch already run in the other commit threads).  The alternative, a scheduler that
scans for new files, would need either a directory listing per round (costly with
100,000 queued files) or a notification channel between processes, and would leave
``mailyard queue list`` blind to mail that is safely queued.  The insert is safe
without its own flush because the message file is the truth: a file whose insert was
lost (process killed between the fsync and the insert, or power lost before the WAL
reached the disk) is indexed by :meth:`FileSpool.sweep` at the next start-up.

Removal order (all recipients final, or ``delete``): the index row first becomes a
tombstone, then the file is unlinked, and only after a directory fsync has made the
unlink durable is the row purged (at the next claim round after
:data:`PURGE_INTERVAL`, in ``delete``, and in the sweep).  So a crash anywhere
leaves either a tombstone (the sweep deletes the file) or no file: a finished message
is never taken for a new one and delivered twice, and nothing unfinished is lost.

Recipient state changes (``record``, ``hold`` ...) are SQLite transactions that are in
the WAL file when the call returns: they survive the death of the process.  A power
loss can roll the index back by the last few transactions (``synchronous=NORMAL``):
recipients recorded just before it are tried again (a duplicate, never a loss).

:meth:`FileSpool.sweep` is meant for start-up, but it is safe while other processes
commit and deliver (see :mod:`mailyard.queue.sweep`); running it after an SMTP worker
died picks up a message the worker had made durable but not yet indexed (that message
was never acknowledged, so the client may also have sent it again).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from mailyard.envelope import Envelope
from mailyard.queue.api import (
    LEASE_SECONDS,
    DeliveryReply,
    FinishedEntry,
    Outcome,
    QueueEntry,
    RecipientState,
    StorageError,
)
from mailyard.queue.groupcommit import GroupCommit
from mailyard.queue.identity import ProcessIdentity, QueueIdGenerator, owner_is_dead
from mailyard.queue.index import NewMessage, QueueIndex
from mailyard.queue.layout import TEMP_SUFFIX, SpoolLayout, unlink_if_present
from mailyard.queue.record import open_content
from mailyard.queue.sweep import SweepReport, purge_tombstones, sweep
from mailyard.queue.writer import SpoolWriter, storage_error

# File stages of small messages run at once (see groupcommit), and so the most commits
# one sync stage covers.  A journaled file system merges fsyncs that arrive together
# into one journal commit, so more of them in flight is what lifts the accept rate
# (bench/README.md, "Commit threads": 8 accepted 21-36% more than 2 on a journaled
# ext4, alternating runs); the threads start only when commits wait for one.
COMMIT_THREADS = 8
FLUSH_THREADS = 4  # file stages of large messages (already on disk) flushed at once
PURGE_INTERVAL = 5.0  # seconds between tombstone purges in claim_due
# Seconds between looks for leases of dead owners in claim_due (a query and a /proc read
# per owner; a claim round under load comes every few milliseconds, a crashed owner is
# rare, and its leases wait for this at most once).
REAP_INTERVAL = 1.0
MAX_UNLINKED = 100_000  # removed files remembered for the purge (beyond: unlinked twice)


class _ProcessResources:
    """What must not cross a fork: database connections, threads, file descriptors."""

    def __init__(self, layout: SpoolLayout, commit_threads: int, gather: bool) -> None:
        self.pid = os.getpid()
        self.commit_threads = commit_threads
        self.gather = gather
        self.layout = layout
        self.owner = ProcessIdentity.current().token
        self.index = QueueIndex(layout.index_path)
        self._files: ThreadPoolExecutor | None = None
        self._group: GroupCommit[NewMessage] | None = None
        self._commit_index: QueueIndex | None = None
        self._dir_fd: int | None = None

    @property
    def group(self) -> GroupCommit[NewMessage]:
        if self._group is None:
            self._commit_index = QueueIndex(self.layout.index_path)
            self._dir_fd = os.open(self.layout.msg_dir,
                                   os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._files = ThreadPoolExecutor(FLUSH_THREADS, thread_name_prefix="spool-write")
            self._group = GroupCommit(self._files, self._sync_batch,
                                      threads=self.commit_threads, gather=self.gather)
        return self._group

    def _sync_batch(self, batch: list[NewMessage]) -> None:
        """The sync stage: make the renames of a batch durable, then index it."""
        self._sync_directory(batch)
        self._index(batch)

    def _sync_directory(self, batch: list[NewMessage]) -> None:
        assert self._dir_fd is not None
        try:
            os.fsync(self._dir_fd)
        except OSError as exc:
            self._discard(batch)
            raise storage_error("cannot sync the queue directory", exc) from exc

    def _index(self, batch: list[NewMessage]) -> None:
        assert self._commit_index is not None
        try:
            self._commit_index.insert(batch, self._file_present)
        except StorageError:
            self._discard(batch)
            raise

    def _file_present(self, qid: str) -> bool:
        return os.path.exists(self.layout.message_path(qid))

    def _discard(self, batch: list[NewMessage]) -> None:
        """Commits that fail are answered 4xx: remove their files so that the client's
        retry does not make a second copy."""
        for m in batch:
            # If it stays, the sweep indexes it: a duplicate at worst.
            with contextlib.suppress(OSError):
                unlink_if_present(self.layout.message_path(m.qid))

    def close(self) -> None:
        """Release everything (idempotent)."""
        if self._files is not None:
            self._files.shutdown(wait=True)
        if self._group is not None:
            self._group.close()
        self._files = self._group = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
        if self._commit_index is not None:
            self._commit_index.close()
            self._commit_index = None
        self.index.close()


class FileSpool:
    """The queue on local disk.  ``root`` is the queue directory (created if needed).
    ``gather_commits``: commits submitted together share a sync stage (see
    :mod:`~mailyard.queue.groupcommit`), for a producer that queues in bursts."""

    def __init__(self, root: Path, hostname: str, *,
                 clock: Callable[[], float] = time.time,
                 commit_threads: int = COMMIT_THREADS,
                 gather_commits: bool = False) -> None:
        self.layout = SpoolLayout(Path(root))
        self.hostname = hostname
        self.clock = clock
        self.layout.create()
        self._msg_prefix = f"{self.layout.msg_dir}{os.sep}"  # a plain string: the hot path
        self._tmp_prefix = f"{self.layout.tmp_dir}{os.sep}"  # layout.temp_path, as a string
        self._ids = QueueIdGenerator()
        self._commit_threads = commit_threads
        self._gather = gather_commits
        self._res = _ProcessResources(self.layout, commit_threads, gather_commits)
        self._orphaned: list[_ProcessResources] = []  # a parent's, never closed by a child
        self._last_purge = 0.0
        self._last_reap = 0.0
        self._unlinked: set[str] = set()  # files removed, tombstones not yet purged

    @property
    def _r(self) -> _ProcessResources:
        if self._res.pid != os.getpid():
            self._orphaned.append(self._res)
            self._res = _ProcessResources(self.layout, self._commit_threads, self._gather)
        return self._res

    def close(self) -> None:
        self._r.close()

    # --- producers ---------------------------------------------------------------
    def open_message(self, envelope: Envelope) -> SpoolWriter:
        r = self._r
        qid = self._ids.next()
        return SpoolWriter(qid, self.clock(), envelope,
                           f"{self._tmp_prefix}{qid}.{r.owner}{TEMP_SUFFIX}",
                           f"{self._msg_prefix}{qid}", r.group)

    async def enqueue(self, envelope: Envelope, content: bytes) -> str:
        writer = self.open_message(envelope)
        try:
            writer.write(content)
            return await writer.commit()
        except BaseException:
            writer.abort()
            raise

    def free_bytes(self) -> int:
        try:
            st = os.statvfs(self.layout.msg_dir)
        except OSError as exc:
            raise storage_error("cannot stat the queue file system", exc) from exc
        return st.f_bavail * st.f_frsize

    # --- scheduler / delivery ------------------------------------------------------
    def claim_due(self, now: float, limit: int,
                  lease_seconds: float = LEASE_SECONDS) -> list[QueueEntry]:
        r = self._r
        if time.monotonic() - self._last_purge >= PURGE_INTERVAL:
            self._purge()
        if time.monotonic() - self._last_reap >= REAP_INTERVAL:
            owner = r.owner  # this process: alive, no need to ask /proc
            r.index.reap_dead_owners(lambda o: o != owner and owner_is_dead(o))
            self._last_reap = time.monotonic()
        return r.index.claim_due(now, limit, now + lease_seconds, r.owner)

    def claim(self, qid: str, now: float,
              lease_seconds: float = LEASE_SECONDS) -> QueueEntry | None:
        """Lease one entry if it is due and nobody holds it (in-session relaying)."""
        r = self._r
        entries = r.index.claim_due(now, 1, now + lease_seconds, r.owner, qid=qid)
        return entries[0] if entries else None

    def open_content(self, qid: str) -> BinaryIO:
        try:
            return open_content(self._msg_prefix + qid)
        except FileNotFoundError as exc:
            raise StorageError(f"{qid}: no such queued message") from exc
        except OSError as exc:
            raise storage_error(f"{qid}: cannot read the queue file", exc) from exc

    def record(self, qid: str, outcomes: Iterable[Outcome]) -> QueueEntry | None:
        entry = self._r.index.record(qid, list(outcomes), self.clock())
        if entry is not None and entry.is_done:
            self._unlink(qid)
        return entry

    def release_lease(self, qid: str) -> None:
        self._r.index.release_lease(qid)

    def record_many(self, items: Sequence[FinishedEntry]) -> list[bool | None]:
        """:meth:`record` for several messages in one index transaction.  Per item: True
        when the message is finished (and its file removed), False when it stays queued,
        None when it was not queued (see :meth:`QueueIndex.record_many`)."""
        finished = self._r.index.record_many(items, self.clock())
        for item, done in zip(items, finished, strict=True):
            if done:
                self._unlink(item.qid)
        return finished

    def postpone_domain(self, domain: str, until: float, reason: DeliveryReply) -> int:
        """Due recipients in ``domain`` not leased by anyone wait until ``until`` without
        counting an attempt (a destination that is down); returns how many."""
        return self._r.index.postpone_domain(domain, until, reason, self.clock())

    def mark_delay_notified(self, qid: str, indexes: Iterable[int]) -> None:
        self._r.index.mark_delay_notified(qid, list(indexes))

    # --- operator ------------------------------------------------------------------
    def get(self, qid: str) -> QueueEntry | None:
        return self._r.index.get(qid)

    def list(self) -> list[QueueEntry]:
        return self._r.index.all_entries()

    def hold(self, qid: str) -> bool:
        return self._r.index.hold(qid)

    def release(self, qid: str) -> bool:
        return self._r.index.release(qid)

    def delete(self, qid: str) -> bool:
        if not self._r.index.entomb(qid):
            return False
        self._unlink(qid)
        self._purge()
        return True

    def flush(self, qid: str | None = None) -> int:
        return self._r.index.flush(qid)

    def stats(self) -> dict[RecipientState, int]:
        """Recipients of queued messages, by state (all five states present)."""
        return self._r.index.stats()

    def submitted(self, key: str) -> str | None:
        """The queue id of the committed message that carried ``Envelope.submit_key``
        ``key``, delivered or not; None if none was committed (or it was indexed by no
        one yet: run :meth:`sweep` first after a crash)."""
        return self._r.index.submitted(key)

    # --- maintenance -----------------------------------------------------------------
    def sweep(self, *, verify_content: bool = False) -> SweepReport:
        """Start-up recovery (see :mod:`mailyard.queue.sweep`)."""
        try:
            report = sweep(self.layout, self._r.index, verify_content=verify_content)
        except OSError as exc:
            raise storage_error("queue sweep failed", exc) from exc
        self._last_purge = time.monotonic()
        return report

    def _purge(self) -> None:
        try:
            purge_tombstones(self.layout, self._r.index, self._unlinked)
        except OSError as exc:
            raise storage_error("cannot remove finished queue files", exc) from exc
        self._last_purge = time.monotonic()

    def _unlink(self, qid: str) -> None:
        try:
            unlink_if_present(self._msg_prefix + qid)
        except OSError as exc:
            raise storage_error(f"{qid}: cannot remove the queue file", exc) from exc
        if len(self._unlinked) < MAX_UNLINKED:
            self._unlinked.add(qid)  # the purge need not unlink it again


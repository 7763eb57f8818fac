"""Noticing changes to a selected folder made elsewhere: local delivery (in the
dispatcher process), IMAP sessions in other worker processes, POP3, mutt.

**Choice: polling cheap signals, one poller per process.**  Every folder some session
of this process has selected is a :class:`FolderWatch`.  While there is at least one,
a single task wakes every ``imap.poll_interval`` seconds (0.25 s) and makes *one*
executor call that, for every watched folder, reads the folder's HIGHESTMODSEQ and
UIDNEXT from the index (one indexed row: changes made through the index by any IMAP
session of any process) and decides with cheap signals whether the index must be
synced with the Maildir (see :class:`~mailyard.imapd.accounts.Account` and
:class:`~mailyard.store.index.CurState`): mail waiting in ``new/`` (local delivery)
or a ``cur/`` changed by another program (mutt, POP3) is taken in at once; a
``cur/`` whose last change through the index fell in the same clock tick as its
mtime (another program could have changed it unseen in that tick) is synced once
the index has been quiet for :data:`QUIET` seconds, so a burst of IMAP flag changes costs
at most one sync at its end, not one per change.  A folder whose numbers moved gets
a new ``generation``, and its sessions are woken: an
idling one asks the index for the changes since its own mod-sequence and pushes
``EXISTS`` / ``FETCH`` / ``EXPUNGE``; a busy one does so at the end of its command.

Why not inotify: it is Linux-only, needs a descriptor per directory per process, and
misses nothing here that the mtimes do not show within 0.25 s (a delivery shows up in
under a second, as the IDLE requirement asks).  Why not a notification pipe from the
dispatcher: other writers (another worker, POP3, mutt, a second node on shared
storage later) would each need their own, and the mtime already says it.  The cost
is a ``stat``, a listing of the (normally empty) ``new/`` and one SQLite read per
watched folder per interval, in one
thread hop per process, and nothing at all while no session has a folder selected.
The same process's own changes wake the folder's other sessions at once
(:meth:`FolderWatch.poke`).

A folder watched for the first time, and a watched folder whose UIDNEXT moved (new
mail), is handed to the search-index warmer (:mod:`mailyard.imapd.warm`) when the
process has one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailyard.imapd.accounts import Account
from mailyard.obs import log_event
from mailyard.store.api import MailboxNameError
from mailyard.store.index import (
    CurState,
    FolderCheck,
    FolderNotFound,
    MailboxIndex,
    MailboxIndexError,
)

__all__ = ["FolderWatch", "Watcher"]

log = logging.getLogger("mailyard.imapd")

QUIET = 2.0  # seconds without a change through the index before an UNSURE cur/ is synced


@dataclass(eq=False)
class FolderWatch:
    """One folder of one user watched for this process's sessions."""

    account: Account
    name: str
    generation: int = 0
    sessions: set[Callable[[], None]] = field(default_factory=set)
    _header: tuple[int, int, int] | None = None
    clock: Callable[[], float] = time.monotonic
    _moved: float = 0.0  # when the header last moved (clock)

    @property
    def index(self) -> MailboxIndex:
        return self.account.index

    @property
    def uidnext(self) -> int:
        """UIDNEXT at the last probe (0 before the first)."""
        return self._header[1] if self._header is not None else 0

    def poke(self) -> None:
        """Something changed (this process knows): wake every session now."""
        self.generation += 1
        for wake in list(self.sessions):
            wake()

    def probe(self) -> bool:
        """Blocking: did the folder change since the last probe?  Syncs the index
        at once when mail waits in ``new/`` or another program changed ``cur/``
        (CHANGED), and when the index is UNSURE of ``cur/`` once it has been quiet
        for :data:`QUIET` seconds (a burst of IMAP changes has ended)."""
        account, name = self.account, self.name
        try:
            try:
                check: FolderCheck | None = self.index.check(name)
            except FolderNotFound:
                check = None  # not indexed yet: the sync makes its row
            header = check.header if check is not None else None
            now = self.clock()
            if header != self._header:
                self._moved = now
            if check is None or check.cur is CurState.CHANGED or account.new_mail(name) or (
                    check.cur is CurState.UNSURE and now - self._moved >= QUIET):
                account.full_sync(name)
                header = self.index.header(name)
        except FolderNotFound:
            return False  # deleted: its sessions learn it from their next command
        if header != self._header:
            self._header = header
            return True
        return False


class Watcher:
    """The process's watched folders and the one task that polls them."""

    def __init__(self, interval: float, warm: Callable[[Account, str], None] | None = None
                 ) -> None:
        self.interval = interval
        self.warm = warm  # queues a folder for search-index warming (non-blocking)
        self._watches: dict[tuple[int, str], FolderWatch] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, account: Account, name: str, wake: Callable[[], None]) -> FolderWatch:
        key = (id(account), name)
        fw = self._watches.get(key)
        if fw is None:
            fw = self._watches[key] = FolderWatch(account, name)
        fw.sessions.add(wake)
        if self.warm is not None:
            self.warm(account, name)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return fw

    def unwatch(self, fw: FolderWatch, wake: Callable[[], None]) -> None:
        fw.sessions.discard(wake)
        if not fw.sessions:
            self._watches.pop((id(fw.account), fw.name), None)

    async def check(self, fw: FolderWatch) -> None:
        """Probe one folder now (NOOP, CHECK, the start of IDLE)."""
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, self._probe_one, fw):
            fw.poke()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._watches:
            await asyncio.sleep(self.interval)
            watches = list(self._watches.values())
            before = {fw: fw.uidnext for fw in watches}
            changed = await loop.run_in_executor(None, self._probe_all, watches)
            for fw in changed:
                fw.poke()
                if self.warm is not None and fw.uidnext > before[fw] > 0:
                    self.warm(fw.account, fw.name)

    def _probe_all(self, watches: list[FolderWatch]) -> list[FolderWatch]:
        return [fw for fw in watches if self._probe_one(fw)]

    @staticmethod
    def _probe_one(fw: FolderWatch) -> bool:
        try:
            return fw.probe()
        except (MailboxNameError, MailboxIndexError, OSError) as exc:
            log_event(log, "folder watch failed", level=logging.WARNING, folder=fw.name,
                      error=str(exc))
            return False

    def close(self) -> None:
        self._watches.clear()
        if self._task is not None:
            self._task.cancel()

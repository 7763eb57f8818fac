"""Warming the search index: a selected folder's messages are indexed in the
background, so the first SEARCH of a large folder does not have to read them all.

The search index (:mod:`mailyard.imapd.searchindex`) is filled by the searches that
read messages; on its own the first BODY search of a 10,000-message folder would run
out of its time budget several times before the folder is indexed.  So SELECT and
EXAMINE (and the folder watcher, when new mail arrives in a selected folder) hand the
folder to :class:`SearchWarmer`, which builds the same documents a search builds
(:func:`~mailyard.imapd.search.fields_document`,
:func:`~mailyard.imapd.search.texts_document`) for the messages the index does not
hold yet, and stores them through
:class:`~mailyard.imapd.searchindex.FolderSearch` (so the size caps apply).

**Choice: one thread per process, not a task per session.**  Reading and decoding is
blocking work; one worker thread per process, at the lowest CPU priority the system
gives a thread once it first reads messages (not while it only checks what a folder
lacks, under the index's lock), with a bounded queue of folders (a folder already waiting is not
queued twice; when the queue is full, a folder is left to its searches), never takes
more than one executor-sized share of a process.  It works in batches of
:data:`BATCH` messages and pauses :data:`PAUSE` seconds after each, releasing the
interpreter lock and the index to live sessions; it stops between batches when the
process shuts down, or when the account has no session left.  A SEARCH that runs
meanwhile reads what is missing as before: both write through ``INSERT OR IGNORE``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from mailyard.imapd.accounts import Account
from mailyard.imapd.search import fields_document, texts_document
from mailyard.message import structure, text
from mailyard.obs import log_event
from mailyard.store.maildir import read_message

__all__ = ["BATCH", "MAX_QUEUED", "PAUSE", "SearchWarmer"]

log = logging.getLogger("mailyard.imapd")

BATCH = 25  # messages read and stored between pauses
PAUSE = 0.05  # seconds the worker sleeps after each batch
MAX_QUEUED = 64  # folders waiting; more are left to their searches
LOWEST_PRIORITY = 19  # nice value of the worker thread (Linux: per thread)


class SearchWarmer:
    """The process's search-index warmer: :meth:`warm` queues a folder (any thread,
    never blocks), one daemon thread indexes the queued folders in turn."""

    def __init__(self, *, batch: int = BATCH, pause: float = PAUSE,
                 max_queued: int = MAX_QUEUED,
                 read: Callable[[Path], bytes] = read_message) -> None:
        self.batch = batch
        self.pause = pause
        self.max_queued = max_queued
        self.read = read
        self._queue: OrderedDict[tuple[int, str], tuple[Account, str]] = OrderedDict()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.warmed = 0  # messages stored, for tests and logs
        self._lowered = False

    def warm(self, account: Account, name: str) -> None:
        """Index ``name`` of ``account`` in the background, once its turn comes."""
        if self._stop.is_set() or account.search_held(name):
            return  # (the worker thread, at low priority, would only find that out)
        key = (id(account), name)
        with self._cond:
            if key in self._queue:
                return
            if len(self._queue) >= self.max_queued:
                return
            self._queue[key] = (account, name)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="imap-search-warm",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (it ends its current batch) and wait up to ``timeout``."""
        self._stop.set()
        with self._cond:
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the worker ---------------------------------------------------------------------

    def _lower(self) -> None:
        """The worker thread to the lowest priority, before it first reads messages:
        not before, as the check of what a folder lacks takes the search index's lock
        that searches wait for, and a thread the scheduler seldom runs must not hold
        it (nor the interpreter lock) on a busy machine.  Once lowered it stays so."""
        if self._lowered or threading.current_thread() is not self._thread:
            return
        self._lowered = True
        with suppress(OSError, AttributeError):  # not everywhere: then at normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                _, (account, name) = self._queue.popitem(last=False)
            try:
                self.warm_folder(account, name)
            except Exception as exc:  # noqa: BLE001 - a cache: never let the worker die
                log_event(log, "search index warming failed", level=logging.WARNING,
                          folder=name, error=str(exc))

    def warm_folder(self, account: Account, name: str) -> int:
        """Blocking: store the documents of the folder's messages the index lacks;
        the number stored.  Returns early on :meth:`close` or once the account has
        no session."""
        if account.sessions <= 0:
            return 0  # logged out meanwhile: the account may be closing
        state = account.sync(name)
        folder = account.search_index().folder(state.uidvalidity, state.messages)
        if folder is None:
            return 0  # the index cannot be used now (it was made afresh: next time)
        count = len(state.messages)
        if len(folder.fields) >= count and len(folder.texts) >= count:
            return 0  # all held (the sets hold UIDs of these messages only)
        todo = [m for m in state.messages
                if m.uid not in folder.fields or m.uid not in folder.texts]
        if todo:
            self._lower()
        try:
            for start in range(0, len(todo), self.batch):
                if self._stop.is_set() or account.sessions <= 0:
                    break
                for info in todo[start:start + self.batch]:
                    try:
                        raw = self.read(info.path)
                    except FileNotFoundError:
                        continue  # expunged or renamed meanwhile: a search reads it
                    data = structure.to_crlf(raw)
                    folder.add(info.uid, fields_document(text.header_fields(
                        text.header_block(data))), texts_document(data))
                folder.flush()
                self._stop.wait(self.pause)
        finally:
            folder.close()
        self.warmed += folder.added
        return folder.added

"""The mailbox indexes this process has open, one per logged-in user, shared by that
user's sessions; and the user's subscriptions (RFC 9051 6.3.7).

One :class:`~mailyard.store.index.MailboxIndex` per user per process: it holds one
SQLite connection and serialises its own calls, and every session of the user goes
through it, so they share its cache and a watcher sees one object per folder.  It is
closed a while after the user's last session ends (:class:`Accounts`).

Subscriptions live in ``mailyard-subscriptions`` in the root of the user's Maildir,
one UTF-8 folder name per line, rewritten whole through a temporary file and a
rename.  Until the file exists every folder counts as subscribed (so a client that
lists only subscribed folders shows the default ones at first login); the first
SUBSCRIBE or UNSUBSCRIBE writes it.

Every method blocks (disk, SQLite): call them in an executor.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from mailyard.fs import fsync_dir
from mailyard.imapd.searchindex import SearchIndex
from mailyard.store.index import Changes, CurState, FolderNotFound, FolderState, MailboxIndex
from mailyard.store.maildir import MaildirStore

__all__ = ["Account", "Accounts"]

SUBSCRIPTIONS = "mailyard-subscriptions"
LINGER = 120.0  # seconds an account stays open after its last session
MAX_LINGERING = 200


def has_entries(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(not e.name.startswith(".") for e in entries)
    except FileNotFoundError:
        return False


@dataclass(eq=False)
class Account:
    """One user's mailbox as this process serves it.

    When must a folder's index be synced with its Maildir (a full listing of
    ``cur/`` and of the folder's rows: a good part of a second for 10,000 messages)?
    Two cheap signals say: ``new/`` is not empty (mail not indexed yet: sync moves
    it to ``cur/``), or the index's :meth:`~MailboxIndex.check` says another program
    changed ``cur/`` (CHANGED).  Changes made through the index (any IMAP session,
    in any process) leave the index right and are taken in from it: the state of
    the last SELECT here, advanced by the index's ``changes`` since its
    HIGHESTMODSEQ (a read of the changed rows), so a busy folder is never listed
    again while only IMAP sessions change it.  A ``cur/`` the index is UNSURE of
    is synced by the folder watcher once the folder is quiet (see
    :mod:`mailyard.imapd.watch`)."""

    address: str
    index: MailboxIndex
    sessions: int = 0
    _states: dict[str, FolderState] = field(default_factory=dict)
    _search: SearchIndex | None = None
    _search_lock: threading.Lock = field(default_factory=threading.Lock)

    def search_index(self) -> SearchIndex:
        """The user's search index, opened on first use; rows of folders that no
        longer exist are dropped then."""
        with self._search_lock:
            return self._open_search()

    def _open_search(self) -> SearchIndex:
        if self._search is None:
            search = SearchIndex(self.root)
            live = []
            try:
                for folder in self.index.list_folders():
                    with suppress(FolderNotFound):  # never indexed: no row names it
                        live.append(self.index.header(folder.name)[0])
            except OSError:
                pass  # pruned another time
            else:
                search.prune(live)
            self._search = search
        return self._search

    def search_held(self, name: str) -> bool:
        """Whether the search index held all of the folder's cached state at its last
        search or warming here (no lock, no I/O)."""
        state, search = self._states.get(name), self._search
        return (state is not None and search is not None
                and search.holds_all(state.uidvalidity, state.messages))

    def close(self) -> None:
        self.index.close()
        if self._search is not None:
            self._search.close()

    def new_mail(self, name: str) -> bool:
        return has_entries(self.index.maildir(name).path / "new")

    def full_sync(self, name: str) -> FolderState:
        state = self.index.sync(name)
        self._states[name] = state
        return state

    def sync(self, name: str) -> FolderState:
        """The folder's state (SELECT, STATUS): synced with the Maildir when a signal
        says so, else the state of the last sync here brought up to date from the
        index (one indexed read when nothing changed)."""
        cached = self._states.get(name)
        if cached is None or self.new_mail(name):
            return self.full_sync(name)
        try:
            check = self.index.check(name)
        except FolderNotFound:
            return self.full_sync(name)  # not indexed yet (or gone: sync says so)
        if check.cur is CurState.CHANGED or check.header[0] != cached.uidvalidity:
            return self.full_sync(name)
        if check.header == (cached.uidvalidity, cached.uidnext, cached.highestmodseq):
            return cached
        changes = self.index.changes(name, cached.highestmodseq)
        state = advance(cached, check.header, changes)
        self._states[name] = state
        return state

    @property
    def root(self) -> Path:
        return self.index.inbox.path

    def subscriptions(self) -> set[str]:
        try:
            text = (self.root / SUBSCRIPTIONS).read_text("utf-8")
        except FileNotFoundError:
            return {f.name for f in self.index.list_folders()}
        return {line for line in text.split("\n") if line}

    def set_subscribed(self, name: str, on: bool) -> None:
        names = self.subscriptions()
        if on:
            names.add(name)
        else:
            names.discard(name)
        path = self.root / SUBSCRIPTIONS
        tmp = path.with_name(f"{SUBSCRIPTIONS}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text("".join(f"{n}\n" for n in sorted(names)), "utf-8")
        os.replace(tmp, path)
        fsync_dir(self.root)


def advance(state: FolderState, header: tuple[int, int, int], changes: Changes
            ) -> FolderState:
    """``state`` with ``changes`` (read after ``header``, so they may go further)
    applied: changed messages replaced, new ones added, vanished ones dropped."""
    changed = {m.uid: m for m in changes.messages}
    gone = set(changes.vanished)
    messages = [changed.pop(m.uid, m) for m in state.messages if m.uid not in gone]
    if changed:
        last = messages[-1].uid if messages else 0
        messages += sorted(changed.values(), key=lambda m: m.uid)
        if min(changed) < last:
            messages.sort(key=lambda m: m.uid)
    uidnext = max(header[1], messages[-1].uid + 1 if messages else 1)
    return FolderState(state.name, header[0], uidnext, header[2], tuple(messages))


class Accounts:
    """The open accounts of this process (thread-safe: opened in executors).

    An account whose last session ended stays open for :data:`LINGER` seconds (at
    most :data:`MAX_LINGERING` of them), so a client that logs in again soon (a
    phone checking every few minutes, a client with a connection per folder) finds
    its index open and its folder states cached."""

    def __init__(self, store: MaildirStore, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.store = store
        self.clock = clock
        self._open: dict[str, Account] = {}
        self._idle: dict[str, float] = {}  # address -> when its last session ended
        self._lock = threading.Lock()

    def open(self, address: str) -> Account:
        """The account of ``address`` (its Maildir and index made if missing).
        Raises MailboxNameError, OSError."""
        with self._lock:
            account = self._open.get(address)
            if account is None:
                self.store.mailbox(address)  # creates the Maildir, sweeps tmp/
                account = Account(address, MailboxIndex(self.store.maildir(address)))
                self._open[address] = account
            account.sessions += 1
            self._idle.pop(address, None)
            doomed = self._expired()
        for old in doomed:
            old.close()
        return account

    def release(self, account: Account) -> None:
        with self._lock:
            account.sessions -= 1
            if account.sessions <= 0:
                self._idle[account.address] = self.clock()
            doomed = self._expired()
        for old in doomed:
            old.close()

    def _expired(self) -> list[Account]:
        now = self.clock()
        out = []
        for address, since in list(self._idle.items()):
            if now - since >= LINGER or len(self._idle) > MAX_LINGERING:
                del self._idle[address]
                account = self._open.pop(address, None)
                if account is not None:
                    out.append(account)
        return out

    def close(self) -> None:
        with self._lock:
            accounts = list(self._open.values())
            self._open.clear()
            self._idle.clear()
        for account in accounts:
            account.close()

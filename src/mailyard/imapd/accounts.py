"""The mailbox indexes this process has open, one per logged-in user, shared by that
user's sessions; and the user's subscriptions (RFC 9051 6.3.7).

One :class:`~mailyard.store.index.MailboxIndex` per user per process: it holds one
SQLite connection and serialises its own calls, and every session of the user goes
through it, so they share its cache and a watcher sees one object per folder.  It is
closed when the user's last session ends.

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
from dataclasses import dataclass, field
from pathlib import Path

from mailyard.fs import fsync_dir
from mailyard.store.index import FolderState, MailboxIndex
from mailyard.store.maildir import MaildirStore

__all__ = ["Account", "Accounts"]

SUBSCRIPTIONS = "mailyard-subscriptions"
RACY_NS = 1_000_000_000  # a directory mtime younger than this may hide a change


def stamp(index: MailboxIndex, name: str) -> tuple[int, int] | None:
    """The mtimes (ns) of a folder's ``new/`` and ``cur/``: every delivery, flag
    change, expunge or move by any program changes one of them.  None when they are
    too recent to trust: a change within the same clock tick as the last look may
    leave the mtime unchanged (the "racy" case), so a stamp younger than
    :data:`RACY_NS` is never taken as "nothing changed"."""
    box = index.maildir(name)
    try:
        new = os.stat(box.path / "new").st_mtime_ns
        cur = os.stat(box.path / "cur").st_mtime_ns
    except FileNotFoundError:
        return None
    if time.time_ns() - max(new, cur) < RACY_NS:
        return None
    return new, cur


@dataclass(eq=False)
class Account:
    address: str
    index: MailboxIndex
    sessions: int = 0
    _states: dict[str, tuple[tuple[int, int], FolderState]] = field(default_factory=dict)

    def sync(self, name: str) -> FolderState:
        """The folder's state (SELECT, STATUS), synced with the Maildir unless
        neither the directories nor the index moved since the last sync here: a
        SELECT of an unchanged folder costs two stats and one indexed read."""
        before = stamp(self.index, name)
        cached = self._states.get(name)
        if before is not None and cached is not None and cached[0] == before:
            state = cached[1]
            if self.index.header(name) == (state.uidvalidity, state.uidnext,
                                           state.highestmodseq):
                return state
        state = self.index.sync(name)
        if before is not None:
            self._states[name] = (before, state)
        else:
            self._states.pop(name, None)
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


class Accounts:
    """The open accounts of this process (thread-safe: opened in executors)."""

    def __init__(self, store: MaildirStore) -> None:
        self.store = store
        self._open: dict[str, Account] = {}
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
            return account

    def release(self, account: Account) -> None:
        with self._lock:
            account.sessions -= 1
            if account.sessions > 0:
                return
            self._open.pop(account.address, None)
        account.index.close()

    def close(self) -> None:
        with self._lock:
            accounts = list(self._open.values())
            self._open.clear()
        for account in accounts:
            account.index.close()

"""Folder-level commands of a logged-in session: LIST/LSUB (with LIST-EXTENDED,
LIST-STATUS, SPECIAL-USE, CHILDREN), STATUS, CREATE (CREATE-SPECIAL-USE), DELETE,
RENAME, SUBSCRIBE/UNSUBSCRIBE, and APPEND (UIDPLUS).

Every name a client gives goes through :func:`mailyard.store.index.normalize`, which
refuses empty levels, ``.``, ``%``, ``*``, ``\\`` and control characters, so no name
can leave the user's Maildir (``..``, ``/etc``, ``a/../b``); and every folder is
looked up in the user's own index, so one user never sees another's folders.

APPEND streams the message into an anonymous temporary file in the Maildir's
``tmp/`` (unlinked from the start: a crash leaves nothing), then stores it with the
index's ``append`` (Maildir delivery: ``tmp/`` -> ``new/`` -> ``cur/`` with its UID),
so a SIGKILL at any point leaves either no message or a complete one.
"""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO

from mailyard.directory.api import DirectoryError
from mailyard.imapd.engine import MailSession
from mailyard.imapd.listing import list_entries, status_items
from mailyard.imapd.quota import storage_kib
from mailyard.imapd.refusals import quota_refusal, write_refusal
from mailyard.imapd.view import keyword_problem
from mailyard.proto.imap import responses as resp
from mailyard.proto.imap.commands import (
    Append,
    Create,
    GetQuota,
    GetQuotaRoot,
    ListMailboxes,
    MailboxCommand,
    Rename,
    Status,
)
from mailyard.proto.imap.events import (
    AppendComplete,
    AppendRequested,
    CommandRequested,
    ListRequested,
    StatusRequested,
)
from mailyard.store.api import INBOX, MailboxNameError
from mailyard.store.index import FolderExists, FolderNotFound, MessageInfo, normalize
from mailyard.store.maildir import Maildir

__all__ = ["FolderCommands", "PendingAppend"]

SPECIAL_USES = frozenset({"\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"})


class PendingAppend:
    """The message of an accepted APPEND while it arrives."""

    def __init__(self, command: Append, file: BinaryIO) -> None:
        self.command = command
        self.file = file
        self.size = 0
        self.failed: OSError | None = None  # the write that failed (a full disk)

    def write(self, data: bytes) -> None:
        """Keep a piece of the literal; after a failed write the rest is dropped (the
        literal still has to be read) and the APPEND is refused at its end."""
        if self.failed is not None:
            return
        try:
            self.file.write(data)
        except OSError as exc:
            self.failed = exc
            return
        self.size += len(data)

    def close(self) -> None:
        self.file.close()


def _name_error(ms: MailSession, event: CommandRequested, exc: Exception) -> None:
    ms.done(event, "NO", str(exc) or "Bad mailbox name", "CANNOT")


class FolderCommands:
    """The folder commands, over a :class:`MailSession`."""

    def __init__(self, ms: MailSession) -> None:
        self.ms = ms

    # --- LIST / LSUB / STATUS ---------------------------------------------------------

    async def list_(self, event: ListRequested) -> None:
        ms = self.ms
        cmd: ListMailboxes = event.command
        try:
            folders, subscribed = await ms.blocking(self._folders)
            entries = list_entries(cmd, folders, subscribed, ms.rev2)
        except ValueError as exc:  # too many wildcards
            ms.done(event, "BAD", str(exc))
            return
        except OSError as exc:
            ms.done(event, "NO", *write_refusal("LIST", exc))
            return
        utf8 = ms.conn.utf8
        out = []
        for entry in entries:
            extended: list[resp.Value] = []
            if entry.child_subscribed:
                extended = [resp.Atom("CHILDINFO"), [b"SUBSCRIBED"]]
            out.append(resp.list_mailbox(entry.attributes, "/", entry.name, utf8=utf8,
                                         extended=extended, lsub=cmd.name == "LSUB"))
            if cmd.status_items and entry.exists:
                try:
                    state = await ms.blocking(ms.account.sync, entry.name)
                except (MailboxNameError, OSError):
                    continue
                out.append(resp.status(entry.name, status_items(
                    state, cmd.status_items, ms.limits.appendlimit), utf8=utf8))
        if ms.answering(event):
            ms.conn.respond(*out)
            await ms.finish(event, text=f"{cmd.name} completed", expunges=False)

    def _folders(self) -> tuple[dict[str, str | None], set[str]]:
        folders = {f.name: f.special_use for f in self.ms.index.list_folders()}
        return folders, self.ms.account.subscriptions()

    async def status(self, event: StatusRequested) -> None:
        ms = self.ms
        cmd: Status = event.command
        try:
            state = await ms.blocking(ms.account.sync, cmd.mailbox.name)
        except (FolderNotFound, MailboxNameError):
            ms.done(event, "NO", "No such mailbox", "NONEXISTENT")
            return
        except OSError as exc:
            ms.done(event, "NO", *write_refusal("STATUS", exc))
            return
        if ms.answering(event):
            ms.conn.respond(resp.status(state.name, status_items(
                state, cmd.items, ms.limits.appendlimit), utf8=ms.conn.utf8))
            await ms.finish(event, text="STATUS completed", expunges=False)

    # --- CREATE / DELETE / RENAME / SUBSCRIBE -------------------------------------------

    async def command(self, event: CommandRequested) -> None:
        cmd = event.command
        handler = {"CREATE": self._create, "DELETE": self._delete, "RENAME": self._rename,
                   "SUBSCRIBE": self._subscribe, "UNSUBSCRIBE": self._subscribe}.get(cmd.name)
        if handler is None:
            self.ms.done(event, "BAD", f"{cmd.name} is not supported")
            return
        try:
            await handler(event)
        except FolderExists:
            self.ms.done(event, "NO", "Mailbox exists", "ALREADYEXISTS")
        except FolderNotFound:
            self.ms.done(event, "NO", "No such mailbox", "NONEXISTENT")
        except MailboxNameError as exc:
            _name_error(self.ms, event, exc)
        except OSError as exc:
            self.ms.done(event, "NO", *write_refusal(cmd.name, exc))

    async def _create(self, event: CommandRequested) -> None:
        cmd = event.command
        assert isinstance(cmd, Create)
        name = cmd.mailbox.name.rstrip("/") or cmd.mailbox.name  # RFC 9051 6.3.4
        uses = set(cmd.special_use)
        if len(uses) > 1 or uses - SPECIAL_USES:
            self.ms.done(event, "NO", "Unsupported special-use attribute", "USEATTR")
            return
        name = normalize(name)
        if name == INBOX:
            self.ms.done(event, "NO", "INBOX exists", "ALREADYEXISTS")
            return
        await self.ms.blocking(self._create_levels, name, next(iter(uses), None))
        await self.ms.finish(event, text="CREATE completed", expunges=False)

    def _create_levels(self, name: str, use: str | None) -> None:
        """RFC 9051 6.3.4: the missing parents of ``A/B/C`` are created too."""
        levels = name.split("/")
        existing = {f.name for f in self.ms.index.list_folders()}
        for i in range(1, len(levels)):
            parent = "/".join(levels[:i])
            if parent not in existing and parent != INBOX:
                self.ms.index.create_folder(parent)
        self.ms.index.create_folder(name, use)

    async def _delete(self, event: CommandRequested) -> None:
        cmd = event.command
        assert isinstance(cmd, MailboxCommand)
        name = normalize(cmd.mailbox.name)
        if name == INBOX:
            self.ms.done(event, "NO", "INBOX cannot be deleted", "CANNOT")
            return
        if self.ms.view is not None and self.ms.view.name == name:
            self.ms.leave()
        await self.ms.blocking(self.ms.index.delete_folder, name)
        await self.ms.finish(event, text="DELETE completed", expunges=False)

    async def _rename(self, event: CommandRequested) -> None:
        cmd = event.command
        assert isinstance(cmd, Rename)
        old, new = normalize(cmd.source.name), normalize(cmd.target.name)
        if INBOX in (old, new):
            self.ms.done(event, "NO", "Renaming INBOX is not supported", "CANNOT")
            return
        await self.ms.blocking(self.ms.index.rename_folder, old, new)
        await self.ms.finish(event, text="RENAME completed", expunges=False)

    async def _subscribe(self, event: CommandRequested) -> None:
        cmd = event.command
        assert isinstance(cmd, MailboxCommand)
        name = normalize(cmd.mailbox.name)
        await self.ms.blocking(self.ms.account.set_subscribed, name,
                               cmd.name == "SUBSCRIBE")
        await self.ms.finish(event, text=f"{cmd.name} completed", expunges=False)

    # --- GETQUOTA / GETQUOTAROOT (RFC 9208) ------------------------------------------

    async def quota(self, event: CommandRequested) -> None:
        """One quota root per user, "" (RFC 9208 3): every folder is under it."""
        ms = self.ms
        cmd = event.command
        try:
            used, limits = await ms.blocking(ms.quota)
        except (DirectoryError, OSError) as exc:
            ms.done(event, "NO", *quota_refusal(cmd.name, exc))
            return
        resources = []
        if limits.storage_bytes is not None:
            resources.append(("STORAGE", storage_kib(used.storage_bytes),
                              limits.storage_bytes // 1024))
        if limits.messages is not None:
            resources.append(("MESSAGE", used.messages, limits.messages))
        out = []
        if isinstance(cmd, GetQuotaRoot):
            try:
                name = normalize(cmd.mailbox.name)
            except MailboxNameError:
                ms.done(event, "NO", "No such mailbox", "NONEXISTENT")
                return
            out.append(resp.quotaroot(name, [""] if resources else [], ms.conn.utf8))
            if resources:
                out.append(resp.quota("", resources))
        else:
            assert isinstance(cmd, GetQuota)
            if cmd.root != "" or not resources:
                ms.done(event, "NO", "No such quota root", "NONEXISTENT")
                return
            out.append(resp.quota("", resources))
        ms.conn.respond(*out)
        await ms.finish(event, text=f"{cmd.name} completed", expunges=False)

    # --- APPEND -------------------------------------------------------------------------

    async def append_requested(self, event: AppendRequested) -> PendingAppend | None:
        """Check the target folder; the open temporary file when the message may come."""
        ms = self.ms
        cmd = event.command
        try:
            name = normalize(cmd.mailbox.name)
            box = ms.index.maildir(name)
        except MailboxNameError:
            ms.done(event, "NO", "No such mailbox", "TRYCREATE")
            return None
        if cmd.size > ms.limits.appendlimit:
            ms.done(event, "NO", "Message too big", "TOOBIG")
            return None
        problem = keyword_problem(cmd.flags)
        if problem is not None:
            ms.done(event, "NO", problem, "LIMIT")
            return None
        try:
            # One thread hop for the three checks (an APPEND is a round trip each).
            exists, full, file = await ms.blocking(self._prepare, box, cmd.size)
        except DirectoryError as exc:
            ms.done(event, "NO", *quota_refusal("APPEND", exc))
            return None
        except OSError as exc:  # the temporary file for the literal
            ms.done(event, "NO", *write_refusal("APPEND", exc))
            return None
        if not exists:
            ms.done(event, "NO", "No such mailbox", "TRYCREATE")
            return None
        if full or file is None:
            ms.done(event, "NO", "Quota exceeded", "OVERQUOTA")  # RFC 9208 4.3
            return None
        return PendingAppend(cmd, file)

    async def append_complete(self, event: AppendComplete, pending: PendingAppend) -> None:
        ms = self.ms
        cmd = pending.command
        date = cmd.date.timestamp() if cmd.date is not None else None
        flags = [f for f in cmd.flags if f.lower() != "\\recent"]
        try:
            if pending.failed is not None:
                raise pending.failed
            validity, info = await ms.blocking(self._store, pending, cmd.mailbox.name, flags,
                                               date)
        except FolderNotFound:
            ms.done(event, "NO", "No such mailbox", "TRYCREATE")
            return
        except MailboxNameError as exc:
            ms.done(event, "NO", str(exc), "CANNOT")
            return
        except OSError as exc:
            ms.done(event, "NO", *write_refusal("APPEND", exc))
            return
        finally:
            pending.close()
        view = ms.view
        if view is not None and view.name == normalize(cmd.mailbox.name):
            ms.changed_here()
        await ms.finish(event, text="APPEND completed",
                        code=f"APPENDUID {validity} {info.uid}")

    def _prepare(self, box: Maildir, size: int) -> tuple[bool, bool, BinaryIO | None]:
        """Blocking: (the folder exists, over quota, the temporary file for the
        literal when both checks pass)."""
        if not box.exists():
            return False, False, None
        if self.ms.over_quota(size, 1):
            return True, True, None
        return True, False, _temporary(str(box.path / "tmp"))

    def _store(self, pending: PendingAppend, name: str, flags: list[str],
               date: float | None) -> tuple[int, MessageInfo]:
        pending.file.flush()
        pending.file.seek(0)
        return self.ms.index.append(name, pending.file, flags, date)


def _temporary(directory: str) -> BinaryIO:
    """An anonymous file in ``directory`` (no name: nothing to sweep after a crash)."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    except (OSError, AttributeError):
        return tempfile.TemporaryFile(dir=directory)
    return os.fdopen(fd, "w+b")

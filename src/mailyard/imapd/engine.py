"""The mailbox engine: one logged-in IMAP session's answers to the core's decisions
about its selected folder (SELECT/EXAMINE, FETCH, STORE, SEARCH/SORT/THREAD,
COPY/MOVE, EXPUNGE, CLOSE/UNSELECT, NOOP/CHECK, IDLE).

It owns the session's :class:`~mailyard.imapd.view.MailboxView` and keeps it in step
with the index: every command ends by taking in what changed meanwhile (when the
folder's :class:`~mailyard.imapd.watch.FolderWatch` says something did) and telling
the client what may be told then (RFC 9051 7.5.1: no EXPUNGE after FETCH, STORE or
SEARCH by sequence number).  Index calls and file reads run in the loop's executor;
responses go out through the core (:meth:`ServerConnection.respond`), in batches
that wait for the client to read (``drain``).

Folder-level commands (LIST, STATUS, CREATE, APPEND...) are in
:mod:`mailyard.imapd.folders`.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mailyard.directory.api import DirectoryError
from mailyard.imapd.accounts import Account
from mailyard.imapd.fetch import (
    FetchError,
    fetch_items,
    header_only,
    index_only,
    needs_message,
    render_from_index,
    sets_seen,
    wire_items,
)
from mailyard.imapd.quota import QuotaLimits, QuotaUsage, over_quota, usage
from mailyard.imapd.refusals import quota_refusal, write_refusal
from mailyard.imapd.search import (
    SearchContext,
    SearchProgramError,
    SearchTimeout,
    search,
    search_modseq,
    uses_string_keys,
)
from mailyard.imapd.sort import sort
from mailyard.imapd.thread import render_threads, thread
from mailyard.imapd.view import MAX_MAILBOX_KEYWORDS, BadSequence, MailboxView, Notify, flag_atoms
from mailyard.imapd.watch import FolderWatch, Watcher
from mailyard.message.structure import Structure
from mailyard.proto.imap import responses as resp
from mailyard.proto.imap.commands import (
    CopyMove,
    Expunge,
    Fetch,
    FetchAttribute,
    Search,
    Select,
    Sort,
    Store,
    Thread,
)
from mailyard.proto.imap.events import (
    CommandRequested,
    CopyRequested,
    Decision,
    ExpungeRequested,
    FetchRequested,
    SearchRequested,
    SelectRequested,
    StoreRequested,
)
from mailyard.proto.imap.server import ServerConnection
from mailyard.store.api import MailboxNameError
from mailyard.store.index import FolderNotFound, FolderState, MessageInfo
from mailyard.store.maildir import read_message

__all__ = ["Limits", "MailSession", "SYSTEM_FLAGS"]

T = TypeVar("T")

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_UID, _PATH = operator.attrgetter("uid"), operator.attrgetter("path")
FETCH_BATCH = 32  # messages rendered per executor call when their files are read
FETCH_BATCH_INDEX = 500  # ... when the index has all the FETCH needs


@dataclass(frozen=True)
class Limits:
    appendlimit: int
    search_budget: float  # seconds


class MailSession:
    """One authenticated session's mailbox state."""

    def __init__(self, conn: ServerConnection, account: Account, watcher: Watcher,
                 limits: Limits, drain: Callable[[], Awaitable[None]],
                 quota_limits: Callable[[], QuotaLimits] = QuotaLimits) -> None:
        self.conn = conn
        self.quota_limits = quota_limits  # blocking: the directory
        self.account = account
        self.index = account.index
        self.watcher = watcher
        self.limits = limits
        self.drain = drain
        self.view: MailboxView | None = None
        self.watch: FolderWatch | None = None
        self.generation = 0
        self.saved: tuple[int, ...] = ()  # UIDs of the SEARCHRES result ($)
        self.on_change: Callable[[], None] = lambda: None  # set by the adapter (IDLE)

    # --- plumbing -------------------------------------------------------------------

    @property
    def notify(self) -> Notify:
        enabled = self.conn.session.enabled
        return Notify(condstore="CONDSTORE" in enabled, qresync="QRESYNC" in enabled)

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.conn.session.enabled

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def answering(self, event: Decision) -> bool:
        return self.conn.pending is event

    def done(self, event: Decision, status: str = "OK", text: str = "", code: str = "") -> None:
        if self.answering(event):
            self.conn.complete(status, text, code)

    async def refresh(self, force: bool = False) -> None:
        """Take in the folder's changes since the view's mod-sequence, when the watch
        says there are some (or ``force``)."""
        view, watch = self.view, self.watch
        if view is None or watch is None:
            return
        if not force and watch.generation == self.generation:
            return
        self.generation = watch.generation
        header, changes = await self.blocking(self._changes, view.name, view.highestmodseq)
        if self.view is view:
            view.apply(changes.messages, changes.vanished, header[2], header[1])

    def _changes(self, name: str, since: int) -> tuple[tuple[int, int, int], Any]:
        header = self.index.header(name)  # first: changes() may only show more
        return header, self.index.changes(name, since)

    def flush(self, expunges: bool = True) -> None:
        if self.view is not None:
            self.conn.respond(*self.view.flush(self.notify, expunges))

    async def finish(self, event: Decision, status: str = "OK", text: str = "",
                     code: str = "", expunges: bool = True) -> None:
        """Report what changed meanwhile, then the tagged status."""
        if not self.answering(event):
            return
        with contextlib.suppress(MailboxNameError, OSError):
            await self.refresh()  # on failure (folder gone) the next command says so
        if self.answering(event):
            self.flush(expunges)
            self.conn.complete(status, text, code)

    def changed_here(self) -> None:
        """This session changed its folder: wake the folder's other sessions here."""
        if self.watch is not None:
            self.watch.poke()

    def _wake(self) -> None:
        self.on_change()

    def leave(self) -> None:
        """Forget the selected folder (CLOSE, UNSELECT, a new SELECT, logout)."""
        if self.watch is not None:
            self.watcher.unwatch(self.watch, self._wake)
        self.view = None
        self.watch = None
        self.saved = ()

    # --- quota (RFC 9208) -----------------------------------------------------------

    def quota(self) -> tuple[QuotaUsage, QuotaLimits]:
        """Blocking: the user's usage and limits."""
        return usage(self.index), self.quota_limits()

    def over_quota(self, octets: int, messages: int = 1) -> bool:
        """Blocking: would storing this go over the user's quota?"""
        limits = self.quota_limits()
        if limits.unlimited:
            return False
        return over_quota(usage(self.index), limits, octets, messages)

    # --- SELECT / EXAMINE -------------------------------------------------------------

    async def select(self, event: SelectRequested) -> None:
        self.leave()
        cmd: Select = event.command
        name = cmd.mailbox.name
        try:
            state: FolderState = await self.blocking(self.account.sync, name)
        except FolderNotFound:
            self.done(event, "NO", "No such mailbox", "NONEXISTENT")
            return
        except MailboxNameError:
            self.done(event, "NO", "No such mailbox", "NONEXISTENT")
            return
        view = MailboxView.open(state, readonly=cmd.readonly)
        keywords = view.keywords()
        out = [resp.flags([*SYSTEM_FLAGS, *keywords])]
        # "\\*" (new keywords may be made) only while the mailbox has room for them
        more = ["\\*"] if len(keywords) < MAX_MAILBOX_KEYWORDS else []
        permanent = "()" if cmd.readonly else \
            "(" + " ".join([*SYSTEM_FLAGS, *keywords, *more]) + ")"
        out.append(resp.untagged_status("OK", "Flags permitted",
                                        f"PERMANENTFLAGS {permanent}"))
        out.append(resp.exists(view.exists))
        if not self.rev2:
            out.append(b"* 0 RECENT\r\n")
            unseen = view.first_unseen()
            if unseen is not None:
                out.append(resp.untagged_status("OK", "First unseen", f"UNSEEN {unseen}"))
        out.append(resp.untagged_status("OK", "UIDs valid", f"UIDVALIDITY {view.uidvalidity}"))
        out.append(resp.untagged_status("OK", "Predicted next UID", f"UIDNEXT {view.uidnext}"))
        out.append(resp.untagged_status("OK", "Highest", f"HIGHESTMODSEQ {view.highestmodseq}"))
        if self.rev2:
            out.append(resp.list_mailbox([], "/", name, utf8=self.conn.utf8))
        if cmd.qresync is not None and cmd.qresync.uidvalidity == view.uidvalidity:
            out += await self._qresync(view, cmd)
        if not self.answering(event):
            return
        self.conn.respond(*out)
        self.view = view
        self.watch = self.watcher.watch(self.account, view.name, self._wake)
        self.generation = self.watch.generation
        self.conn.complete("OK", "Select completed",
                           "READ-ONLY" if cmd.readonly else "READ-WRITE")

    async def _qresync(self, view: MailboxView, cmd: Select) -> list[bytes]:
        """RFC 7162 3.2.5.2: what changed since the client's mod-sequence."""
        assert cmd.qresync is not None
        q = cmd.qresync
        changes = await self.blocking(self.index.changes, view.name, q.modseq)
        vanished = list(changes.vanished)
        if q.known_uids is not None:
            known = q.known_uids
            largest = max(vanished, default=0)
            vanished = [u for u in vanished if known.contains(u, largest)]
        out = []
        if vanished:
            out.append(resp.vanished(resp.encode_sequence(vanished), earlier=True))
        notify = Notify(condstore=True, qresync=True)
        for info in changes.messages:
            pos = view.position(info.uid)
            if pos is not None:
                out.append(view.flags_response(pos, notify, uid=True))
        return out

    # --- NOOP, CHECK, CLOSE, UNSELECT -------------------------------------------------

    async def command(self, event: CommandRequested) -> None:
        name = event.command.name
        if name in ("NOOP", "CHECK"):
            if self.watch is not None:
                await self.watcher.check(self.watch)
            await self.finish(event, text=f"{name} completed")
        elif name in ("CLOSE", "UNSELECT"):
            view = self.view
            if name == "CLOSE" and view is not None and not view.readonly:
                try:
                    gone = await self.blocking(self.index.expunge, view.name, None)
                except (MailboxNameError, OSError):
                    gone = []
                if gone:
                    self.changed_here()
                    await self.unindex(view.uidvalidity, gone)
            self.leave()
            self.done(event, "OK", f"{name} completed")
        else:
            self.done(event, "BAD", f"{name} is not supported")

    # --- FETCH --------------------------------------------------------------------------

    async def fetch(self, event: FetchRequested) -> None:
        view = self.view
        cmd: Fetch = event.command
        assert view is not None
        try:
            positions = view.resolve(cmd.sequence, cmd.uid, self.saved)
        except BadSequence as exc:
            self.done(event, "BAD", str(exc))
            return
        attributes = list(cmd.attributes)
        if cmd.uid and not any(a.name == "UID" for a in attributes):
            attributes.insert(0, FetchAttribute("UID"))
        if cmd.changed_since is not None:
            since = cmd.changed_since
            positions = [p for p in positions if view.messages[p].modseq > since]
            if cmd.vanished:
                await self._vanished_earlier(view, cmd, since)
        modseq = "CONDSTORE" in self.conn.session.enabled and (
            cmd.changed_since is not None or any(a.name == "MODSEQ" for a in attributes))
        if sets_seen(attributes) and not view.readonly:
            await self._mark_seen(view, positions, attributes)
        missing = 0
        size = FETCH_BATCH if needs_message(attributes) else FETCH_BATCH_INDEX
        planned = tuple(attributes)  # one tuple: fetch_items plans it once
        for start in range(0, len(positions), size):
            if not self.answering(event) or self.view is not view:
                return
            batch = positions[start:start + size]
            infos = [(p, view.messages[p]) for p in batch]
            try:
                chunk, gone = await self.blocking(self._render, view.name, infos, planned,
                                                  modseq)
            except FetchError as exc:
                self.done(event, "NO", exc.text, exc.code)
                return
            missing += gone
            if not self.answering(event):
                return
            self.conn.respond(chunk)
            await self.drain()
        if missing:
            await self.finish(event, "NO", "Some messages were expunged", "EXPUNGEISSUED",
                              expunges=cmd.uid)
        else:
            await self.finish(event, text="FETCH completed", expunges=cmd.uid)

    async def _mark_seen(self, view: MailboxView, positions: list[int],
                         attributes: list[FetchAttribute]) -> None:
        """RFC 9051 6.4.5: a body fetch without PEEK sets \\Seen; the FETCH response
        then carries the new FLAGS (added here when not asked)."""
        unseen = [view.messages[p].uid for p in positions
                  if "\\Seen" not in view.messages[p].flags]
        if not unseen:
            return
        try:
            result = await self.blocking(self.index.store, view.name, unseen, "+", ["\\Seen"])
        except (MailboxNameError, OSError):
            return
        view.stored(result.messages)
        self.changed_here()
        if not any(a.name == "FLAGS" for a in attributes):
            attributes.append(FetchAttribute("FLAGS"))

    async def _vanished_earlier(self, view: MailboxView, cmd: Fetch, since: int) -> None:
        """RFC 7162 3.2.6: UID FETCH ... (CHANGEDSINCE m VANISHED)."""
        changes = await self.blocking(self.index.changes, view.name, since)
        largest = max(changes.vanished, default=0)
        gone = [u for u in changes.vanished if cmd.sequence.contains(u, largest)]
        if gone:
            self.conn.respond(resp.vanished(resp.encode_sequence(gone), earlier=True))

    def _render(self, name: str, infos: Sequence[tuple[int, MessageInfo]],
                attributes: Sequence[FetchAttribute], modseq: bool) -> tuple[bytes, int]:
        """Blocking: the FETCH responses of a batch (files read here), and how many
        messages were gone."""
        utf8 = self.conn.utf8
        structures: dict[int, tuple[Structure, Structure]] = {}
        wires: dict[int, list[bytes]] = {}
        items = wire_items(attributes)
        if items:
            uids = [i.uid for _, i in infos]
            for uid, (differs, got) in self.index.wires(name, uids, items).items():
                if not (utf8 and differs) and None not in got:
                    wires[uid] = got  # type: ignore[assignment]
            rest = [uid for uid in uids if uid not in wires]
            if rest:
                structures = self.index.structures(name, rest)
        whole = needs_message(attributes)
        read = read_head if whole and header_only(attributes) else read_message
        fast = index_only(attributes)
        out: list[bytes] = []
        gone = 0
        for pos, info in infos:
            octets = wires.get(info.uid)
            if fast and (octets is not None or not items):
                out.append(render_from_index(pos + 1, info, attributes, octets or (), modseq))
                continue
            message = None
            if whole:
                try:
                    message = read(info.path)
                except FileNotFoundError:
                    message = self._reread(name, info)
                    if message is None:
                        gone += 1
                        continue
            env, body = structures.get(info.uid, (None, None))
            if items and octets is None and env is None and message is None:
                try:
                    message = read_message(info.path)
                except FileNotFoundError:
                    gone += 1
                    continue
            wire = dict(zip(items, octets, strict=True)) if octets is not None else None
            values = fetch_items(pos + 1, info, attributes, message=message, envelope=env,
                                 bodystructure=body, modseq=modseq, wire=wire)
            out.append(resp.fetch(pos + 1, values, utf8=utf8))
        return b"".join(out), gone

    def _reread(self, name: str, info: MessageInfo) -> bytes | None:
        """The file was renamed (a flag change elsewhere): find it by UID."""
        try:
            changes = self.index.changes(name, info.modseq - 1 if info.modseq > 0 else 0)
        except (MailboxNameError, OSError):
            return None
        for now in changes.messages:
            if now.uid == info.uid:
                try:
                    return read_message(now.path)
                except FileNotFoundError:
                    return None
        return None

    # --- STORE --------------------------------------------------------------------------

    async def store(self, event: StoreRequested) -> None:
        view = self.view
        cmd: Store = event.command
        assert view is not None
        try:
            positions = view.resolve(cmd.sequence, cmd.uid, self.saved)
        except BadSequence as exc:
            self.done(event, "BAD", str(exc))
            return
        flags = [f for f in cmd.flags if f.lower() != "\\recent"]
        problem = view.store_problem(cmd.mode or "=", flags, positions)
        if problem is not None:
            self.done(event, "NO", problem, "LIMIT")
            return
        uids = [view.messages[p].uid for p in positions if view.messages[p].uid
                not in view.expunged]
        try:
            result = await self.blocking(self.index.store, view.name, uids, cmd.mode or "=",
                                         flags, cmd.unchanged_since)
        except MailboxNameError as exc:
            await self.finish(event, "NO", str(exc), "CANNOT", expunges=False)
            return
        except OSError as exc:  # MailboxIndexError too
            await self.finish(event, "NO", *write_refusal("STORE", exc), expunges=False)
            return
        if self.view is not view:
            return
        touched = view.stored(result.messages)
        if result.messages:
            self.changed_here()
        notify = self.notify
        if not cmd.silent or notify.condstore:
            out = []
            for pos in touched:
                info = view.messages[pos]
                items: list[tuple[str, resp.Value]] = []
                if cmd.uid or notify.qresync:
                    items.append(("UID", info.uid))
                if not cmd.silent:
                    items.append(("FLAGS", flag_atoms(info.flags)))
                if notify.condstore:
                    items.append(("MODSEQ", [info.modseq]))
                out.append(resp.fetch(pos + 1, items))
            self.conn.respond(*out)
        code = ""
        if result.modified:
            if cmd.uid:
                numbers = sorted(result.modified)
            else:
                numbers = sorted(p + 1 for p in map(view.position, result.modified)
                                 if p is not None)
            code = "MODIFIED " + resp.encode_sequence(numbers).decode("ascii")
        await self.finish(event, text="STORE completed", code=code, expunges=cmd.uid)

    # --- COPY / MOVE --------------------------------------------------------------------

    async def copy(self, event: CopyRequested) -> None:
        view = self.view
        cmd: CopyMove = event.command
        assert view is not None
        try:
            positions = view.resolve(cmd.sequence, cmd.uid, self.saved)
        except BadSequence as exc:
            self.done(event, "BAD", str(exc))
            return
        uids = [view.messages[p].uid for p in positions]
        move = cmd.name == "MOVE"
        target = cmd.mailbox.name
        if not uids:
            await self.finish(event, text=f"{cmd.name} completed", expunges=cmd.uid or move)
            return
        if not move:
            adding = sum(view.messages[p].size for p in positions)
            try:
                full = await self.blocking(self.over_quota, adding, len(uids))
            except (DirectoryError, OSError) as exc:
                self.done(event, "NO", *quota_refusal(cmd.name, exc))
                return
            if full:
                self.done(event, "NO", "Quota exceeded", "OVERQUOTA")
                return
        try:
            fn = self.index.move if move else self.index.copy
            result = await self.blocking(fn, view.name, uids, target)
        except FolderNotFound:
            self.done(event, "NO", "No such mailbox", "TRYCREATE")
            return
        except MailboxNameError as exc:
            self.done(event, "NO", str(exc), "CANNOT")
            return
        except OSError as exc:
            self.done(event, "NO", *write_refusal(cmd.name, exc))
            return
        code = ""
        if result.uids:
            src = resp.encode_sequence(u for u, _ in result.uids).decode("ascii")
            dst = ",".join(str(u) for _, u in result.uids)
            code = f"COPYUID {result.uidvalidity} {src} {dst}"
        if move:
            if code:
                self.conn.respond(resp.untagged_status("OK", "Moved", code))
            view.removed(u for u, _ in result.uids)
            self.changed_here()
            await self.blocking(self.account.search_index().carry, view.uidvalidity,
                                result.uidvalidity, list(result.uids))
            await self.finish(event, text="MOVE completed")
        else:
            await self.finish(event, text="COPY completed", code=code, expunges=cmd.uid)

    # --- EXPUNGE ------------------------------------------------------------------------

    async def expunge(self, event: ExpungeRequested) -> None:
        view = self.view
        cmd: Expunge = event.command
        assert view is not None
        uids = None
        if cmd.uids is not None:
            uids = [view.messages[p].uid for p in view.resolve(cmd.uids, True, self.saved)]
        try:
            gone = await self.blocking(self.index.expunge, view.name, uids)
        except MailboxNameError as exc:
            self.done(event, "NO", str(exc), "CANNOT")
            return
        except OSError as exc:
            self.done(event, "NO", *write_refusal("EXPUNGE", exc))
            return
        view.removed(gone)
        if gone:
            self.changed_here()
            await self.unindex(view.uidvalidity, gone)
        await self.finish(event, text="EXPUNGE completed")

    # --- SEARCH / SORT / THREAD ---------------------------------------------------------

    async def unindex(self, uidvalidity: int, uids: Sequence[int]) -> None:
        """Drop expunged or moved messages from the search index (a search of the
        folder would drop them too; this frees the space at once)."""
        await self.blocking(self._unindex, uidvalidity, list(uids))

    def _unindex(self, uidvalidity: int, uids: list[int]) -> None:
        self.account.search_index().forget(uidvalidity, uids)

    async def search(self, event: SearchRequested) -> None:
        view = self.view
        cmd: Search | Sort | Thread = event.command
        assert view is not None
        await self.refresh()
        messages = list(view.messages)
        deadline = time.monotonic() + self.limits.search_budget
        try:
            out, saved = await self.blocking(self._search, cmd, view.name, messages,
                                             view.highestmodseq, deadline, view.uidvalidity)
        except SearchTimeout:
            self.done(event, "NO", "Search took too long", "LIMIT")
            return
        except SearchProgramError as exc:
            self.done(event, "BAD", f"{cmd.name}: {exc}")
            return
        except ValueError as exc:  # a message the search could not read: no details out
            self.done(event, "NO", *write_refusal(cmd.name, exc))
            return
        if not self.answering(event):
            return
        if saved is not None:
            self.saved = saved
        self.conn.respond(*out)
        await self.finish(event, text=f"{cmd.name} completed", expunges=cmd.uid)

    def _search(self, cmd: Search | Sort | Thread, name: str, messages: list[MessageInfo],
                highest: int, deadline: float, uidvalidity: int
                ) -> tuple[list[bytes], tuple[int, ...] | None]:
        """Blocking: the untagged responses of SEARCH/SORT/THREAD, and the UIDs to
        save as ``$`` (RFC 5182) or None."""
        paths = dict(zip(map(_UID, messages), map(_PATH, messages), strict=True))
        key = cmd.criteria if isinstance(cmd, Search) else cmd.search
        index = None
        if uses_string_keys(key):
            index = self.account.search_index().folder(uidvalidity, messages)
        ctx = SearchContext(messages, lambda uid: _load(paths, uid), highest,
                            frozenset(self.saved), deadline,
                            load_header=lambda uid: _load(paths, uid, header=True), index=index)
        try:
            matches = search(key, ctx)
        finally:
            if index is not None:
                index.close()  # what was read is kept, also when the deadline stopped it

        def number(i: int) -> int:
            return messages[i].uid if cmd.uid else i + 1

        if isinstance(cmd, Search):
            return self._search_responses(cmd, matches, ctx, number)
        envelopes: dict[int, Structure] = {}
        if matches:
            cached = self.index.structures(name, [messages[i].uid for i in matches])
            envelopes = {uid: env for uid, (env, _) in cached.items()}
        if isinstance(cmd, Sort):
            order = sort(cmd.criteria, matches, ctx, envelopes)
            line = b"* SORT" + b"".join(b" %d" % number(i) for i in order)
            modseq = search_modseq(key, matches, ctx)
            if modseq is not None:
                line += b" (MODSEQ %d)" % modseq
            return [line + b"\r\n"], None
        threads = thread(cmd.algorithm, matches, ctx, envelopes)
        return [b"* THREAD " + render_threads(threads, number) + b"\r\n"], None

    def _search_responses(self, cmd: Search, matches: list[int], ctx: SearchContext,
                          number: Callable[[int], int]
                          ) -> tuple[list[bytes], tuple[int, ...] | None]:
        """RFC 3501 ``* SEARCH`` for a rev1 client that asked no RETURN; else
        ``* ESEARCH`` (RFC 9051 7.3.4, RFC 4731) with SAVE (RFC 5182)."""
        modseq = search_modseq(cmd.criteria, matches, ctx)
        if cmd.returns is None and not self.rev2:
            return [resp.search((number(i) for i in matches), modseq)], None
        options = set(cmd.returns or ("ALL",))
        saved = tuple(ctx.messages[i].uid for i in matches) if "SAVE" in options else None
        options.discard("SAVE")
        if not options:
            return [], saved  # RFC 5182 2.1: SAVE alone gives no ESEARCH
        numbers = [number(i) for i in matches]
        results: list[tuple[str, int | bytes]] = []
        if numbers:
            if "MIN" in options:
                results.append(("MIN", min(numbers)))
            if "MAX" in options:
                results.append(("MAX", max(numbers)))
            if "ALL" in options:
                results.append(("ALL", resp.encode_sequence(sorted(numbers))))
        if "COUNT" in options:
            results.append(("COUNT", len(numbers)))
        if modseq is not None:
            results.append(("MODSEQ", modseq))
        tag = self.conn.pending.tag if self.conn.pending is not None else None
        return [resp.esearch(tag, cmd.uid, results)], saved


def read_head(path: Path) -> bytes:
    """The start of a message file up to its blank line at least (all of it when there
    is none), with CRLF line ends as :func:`read_message` gives them."""
    with open(path, "rb") as f:
        data = b""
        while chunk := f.read(16384):
            data += chunk
            if b"\n\n" in data or b"\r\n\r\n" in data:
                break
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _load(paths: dict[int, Path], uid: int, header: bool = False) -> bytes:
    """A message file for SEARCH (its header section only when ``header``); b"" when
    it is gone (expunged meanwhile)."""
    try:
        if not header:
            return read_message(paths[uid])
        with open(paths[uid], "rb") as f:
            data = b""
            while chunk := f.read(16384):
                data += chunk
                if b"\n\n" in data or b"\r\n\r\n" in data:
                    break
        return data
    except FileNotFoundError:
        return b""

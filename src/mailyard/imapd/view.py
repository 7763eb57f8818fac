"""The selected mailbox as one session sees it: message sequence numbers, and the
changes the client has not been told about yet (RFC 9051 5.2, 7.5; RFC 7162).

The store (:class:`~mailyard.store.index.MailboxIndex`) always knows the current
folder; a client knows the folder as of the last responses it got.  The two differ
whenever another session (or local delivery, or POP3) changes the folder, and the
difference may only be told at certain moments: new messages (``EXISTS``) and flag
changes (``FETCH``) at the end of any command, but expunges (``EXPUNGE``, or
``VANISHED`` with QRESYNC) not during FETCH, STORE or SEARCH by sequence number
(RFC 9051 7.5.1), since they renumber the messages under the client's feet.  So a
view keeps every message the client knows, in UID order (position + 1 is the
sequence number), marks the ones the store expunged until the client is told, and
collects the pending flag changes.  :meth:`MailboxView.flush` writes what may be
written now.

Everything here is pure: the adapter reads the store in a thread and hands the
results in (:meth:`apply`, :meth:`stored`, :meth:`removed`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mailyard.proto.imap import responses as resp
from mailyard.proto.imap.commands import SequenceSet
from mailyard.store.index import FolderState, MessageInfo

__all__ = ["MAX_MAILBOX_KEYWORDS", "BadSequence", "MailboxView", "Notify", "flag_atoms",
           "keyword_problem"]

# Limits on the keywords a client may set: a message's keywords travel in every FETCH
# FLAGS, a mailbox's in FLAGS and PERMANENTFLAGS at each SELECT.  Real clients use a
# handful ($Forwarded, $Junk, a few labels); Dovecot caps a keyword at 50 characters.
MAX_KEYWORD_LENGTH = 64
MAX_MESSAGE_KEYWORDS = 64
MAX_MAILBOX_KEYWORDS = 256


class BadSequence(ValueError):
    """A message sequence number beyond the mailbox (RFC 9051 9: BAD)."""


@dataclass(frozen=True)
class Notify:
    """What the client enabled that shapes unsolicited responses."""

    condstore: bool = False  # FETCH carries MODSEQ (RFC 7162 3.1.4)
    qresync: bool = False  # VANISHED instead of EXPUNGE, UID in FETCH (RFC 7162 3.2.10)


def flag_atoms(flags: Iterable[str]) -> list[resp.Atom]:
    """Flags in a stable order (system flags first) as atoms."""
    return [resp.Atom(f) for f in sorted(flags, key=lambda f: (not f.startswith("\\"), f))]


def keyword_problem(flags: Iterable[str], have: Iterable[str] = ()) -> str | None:
    """Why one message may not carry ``flags`` (added to the keywords it ``have``s),
    or None: the text of a ``NO [LIMIT]``."""
    keywords = {f for f in flags if not f.startswith("\\")}
    if any(len(k) > MAX_KEYWORD_LENGTH for k in keywords):
        return f"A keyword may have at most {MAX_KEYWORD_LENGTH} characters"
    keywords.update(f for f in have if not f.startswith("\\"))
    if len(keywords) > MAX_MESSAGE_KEYWORDS:
        return f"A message may have at most {MAX_MESSAGE_KEYWORDS} keywords"
    return None


@dataclass
class MailboxView:
    """One session's picture of its selected folder."""

    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int  # every change up to here has been taken in
    readonly: bool = False
    messages: list[MessageInfo] = field(default_factory=list)
    expunged: set[int] = field(default_factory=set)  # UIDs gone, still numbered
    changed: set[int] = field(default_factory=set)  # UIDs whose flags to report
    reported: int = 0  # the EXISTS count the client has
    _uids: list[int] = field(default_factory=list)

    @classmethod
    def open(cls, state: FolderState, readonly: bool = False) -> MailboxView:
        view = cls(state.name, state.uidvalidity, state.uidnext, state.highestmodseq,
                   readonly, list(state.messages))
        view.reported = len(view.messages)
        view._reindex()
        return view

    # --- numbering ----------------------------------------------------------------

    def _reindex(self) -> None:
        self._uids = [m.uid for m in self.messages]

    @property
    def exists(self) -> int:
        return len(self.messages)

    def position(self, uid: int) -> int | None:
        """The 0-based position of ``uid``, None when the client does not know it."""
        i = bisect.bisect_left(self._uids, uid)
        return i if i < len(self._uids) and self._uids[i] == uid else None

    def resolve(self, sequence: SequenceSet, uid: bool,
                saved: Sequence[int] = ()) -> list[int]:
        """Positions named by a sequence set: message numbers (each must exist,
        RFC 9051 9) or UIDs (those that do not exist are skipped, 6.4.8).  ``saved``
        are the UIDs of ``$`` (RFC 5182)."""
        if sequence.saved:
            found = (self.position(u) for u in saved)
            return sorted(p for p in found if p is not None)
        if not uid:
            count = len(self.messages)
            spans = sequence.normalized(count)
            if spans and spans[-1][1] > count:
                raise BadSequence("Invalid message sequence number")
            return [i - 1 for a, b in spans for i in range(a, b + 1)]
        largest = self._uids[-1] if self._uids else 0
        out: list[int] = []
        for a, b in sequence.normalized(largest):
            lo = bisect.bisect_left(self._uids, a)
            hi = bisect.bisect_right(self._uids, b)
            out.extend(range(lo, hi))
        return out

    # --- taking in what the store says --------------------------------------------

    def apply(self, changed: Iterable[MessageInfo], vanished: Iterable[int],
              highestmodseq: int, uidnext: int = 0) -> None:
        """Changes the store reported since :attr:`highestmodseq` (the index's
        ``changes``): flag changes to report, new messages (appended at once; told by
        the next EXISTS), expunged ones (marked until told)."""
        new: list[MessageInfo] = []
        last = self._uids[-1] if self._uids else 0
        for info in changed:
            pos = self.position(info.uid)
            if pos is None:
                if info.uid > last:
                    new.append(info)
                continue
            old = self.messages[pos]
            if info.modseq > old.modseq and info.uid not in self.expunged:
                self.messages[pos] = info
                if info.flags != old.flags or info.modseq != old.modseq:
                    self.changed.add(info.uid)
        for uid in vanished:
            if self.position(uid) is not None:
                self.expunged.add(uid)
                self.changed.discard(uid)
        if new:
            new.sort(key=lambda m: m.uid)
            self.messages.extend(new)
            self._reindex()
            self.uidnext = max(self.uidnext, new[-1].uid + 1)
        self.highestmodseq = max(self.highestmodseq, highestmodseq,
                                 *(m.modseq for m in new))
        self.uidnext = max(self.uidnext, uidnext)

    def stored(self, infos: Iterable[MessageInfo]) -> list[int]:
        """This session's STORE took effect on ``infos``: keep them, with no pending
        report of their own change; returns their positions."""
        out = []
        for info in infos:
            pos = self.position(info.uid)
            if pos is None or info.uid in self.expunged:
                continue
            self.messages[pos] = info
            self.changed.discard(info.uid)
            out.append(pos)
        return out

    def removed(self, uids: Iterable[int]) -> None:
        """This session expunged or moved ``uids`` away (reported by the next flush)."""
        for uid in uids:
            if self.position(uid) is not None:
                self.expunged.add(uid)
                self.changed.discard(uid)

    # --- telling the client -------------------------------------------------------

    def flush(self, notify: Notify, expunges: bool = True) -> list[bytes]:
        """The untagged responses due now: expunges (when ``expunges``), EXISTS when
        the count grew, FETCH of flag changes."""
        out: list[bytes] = []
        if expunges and self.expunged:
            out += self._expunge(notify)
        if len(self.messages) > self.reported:
            out.append(resp.exists(len(self.messages)))
        self.reported = len(self.messages)
        if self.changed:
            for uid in sorted(self.changed):
                pos = self.position(uid)
                if pos is not None:
                    out.append(self.flags_response(pos, notify, uid=notify.qresync))
            self.changed.clear()
        return out

    def _expunge(self, notify: Notify) -> list[bytes]:
        gone = sorted(self.expunged)
        positions = sorted((p for p in map(self.position, gone) if p is not None),
                           reverse=True)
        if notify.qresync:
            out = [resp.vanished(resp.encode_sequence(gone))]
        else:
            # Highest first: each number is still right when the client reads it.
            out = [resp.expunge(p + 1) for p in positions]
        keep = set(positions)
        self.messages = [m for i, m in enumerate(self.messages) if i not in keep]
        self.expunged.clear()
        self._reindex()
        self.reported = len(self.messages)
        return out

    def flags_response(self, pos: int, notify: Notify, uid: bool = False) -> bytes:
        """``* n FETCH ([UID u] FLAGS (...) [MODSEQ (m)])``."""
        info = self.messages[pos]
        items: list[tuple[str, resp.Value]] = []
        if uid:
            items.append(("UID", info.uid))
        items.append(("FLAGS", flag_atoms(info.flags)))
        if notify.condstore:
            items.append(("MODSEQ", [info.modseq]))
        return resp.fetch(pos + 1, items)

    # --- figures ------------------------------------------------------------------

    def first_unseen(self) -> int | None:
        for i, m in enumerate(self.messages):
            if "\\Seen" not in m.flags:
                return i + 1
        return None

    def keywords(self) -> list[str]:
        """The keywords in use (for FLAGS / PERMANENTFLAGS)."""
        seen: set[str] = set()
        for flags in {m.flags for m in self.messages}:  # few distinct sets
            seen.update(f for f in flags if not f.startswith("\\"))
        return sorted(seen)

    def store_problem(self, mode: str, flags: Sequence[str],
                      positions: Iterable[int]) -> str | None:
        """Why STORE ``mode`` ``flags`` on ``positions`` would pass a keyword limit
        (per keyword, per message, or new keywords beyond the mailbox's), or None."""
        keywords = {f for f in flags if not f.startswith("\\")}
        if mode == "-" or not keywords:
            return None  # removing, or system flags only: no limit to pass
        problem = keyword_problem(keywords)
        if problem is None and mode == "+":
            for flag_set in {self.messages[p].flags for p in positions}:
                problem = keyword_problem(keywords, flag_set)
                if problem is not None:
                    break
        if problem is not None:
            return problem
        known = set(self.keywords())
        new = keywords - known
        if new and len(known) + len(new) > MAX_MAILBOX_KEYWORDS:
            return f"A mailbox may have at most {MAX_MAILBOX_KEYWORDS} keywords"
        return None

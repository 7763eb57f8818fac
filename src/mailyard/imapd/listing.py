"""LIST, LSUB and STATUS answers computed from folder names and folder states
(RFC 9051 6.3.9-6.3.11, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154
SPECIAL-USE, RFC 3348 CHILDREN).  Pure: the adapter reads the folders and the
subscriptions in a thread and hands them in.

Patterns: ``*`` matches any characters, ``%`` any but the hierarchy delimiter
(RFC 9051 6.3.9); the reference name is prefixed to the pattern.  A name that
matches nothing on disk is never invented, except the parents of existing folders
(``A`` for ``A/B`` when only ``.A.B`` exists), listed ``\\NonExistent``
(``\\Noselect`` for rev1).  Names are matched as decoded Unicode, so a user's
pattern can only select among that user's own folders: there is no path in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mailyard.proto.imap.commands import ListMailboxes
from mailyard.store.index import FolderState

__all__ = ["ListEntry", "list_entries", "matcher", "status_items"]

DELIMITER = "/"
MAX_WILDCARDS = 16


@dataclass(frozen=True)
class ListEntry:
    name: str
    attributes: tuple[str, ...]
    child_subscribed: bool = False  # CHILDINFO ("SUBSCRIBED"), RFC 5258 3.5
    exists: bool = True


def matcher(reference: str, pattern: str) -> re.Pattern[str]:
    """A compiled match for ``reference`` + ``pattern``; INBOX in any case matches."""
    full = reference + pattern
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in "/*%"):
        full = "INBOX" + full[5:]  # RFC 9051 5.1: INBOX is case-insensitive
    # Runs of wildcards are one wildcard (a "*" in it wins); their number is capped,
    # since each one multiplies the backtracking a non-matching name costs.
    tokens = re.findall(r"[*%]+|[^*%]+", full)
    if sum(1 for t in tokens if t[0] in "*%") > MAX_WILDCARDS:
        raise ValueError(f"more than {MAX_WILDCARDS} wildcards in a LIST pattern")
    out = []
    for token in tokens:
        if "*" in token:
            out.append(".*")
        elif token[0] == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(token))
    regex = "".join(out)
    return re.compile(regex, re.S)


def _ancestors(name: str) -> list[str]:
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]


def list_entries(command: ListMailboxes, folders: Mapping[str, str | None],
                 subscribed: Iterable[str], rev2: bool) -> list[ListEntry]:
    """The entries to answer LIST/LSUB with.  ``folders``: existing name -> its
    SPECIAL-USE attribute (or None)."""
    subs = set(subscribed)
    lsub = command.name == "LSUB"
    select_subscribed = "SUBSCRIBED" in command.selection or lsub
    select_special = "SPECIAL-USE" in command.selection
    recursive = "RECURSIVEMATCH" in command.selection
    ret_subscribed = "SUBSCRIBED" in command.returns or (select_subscribed and not lsub)
    ret_special = "SPECIAL-USE" in command.returns or select_special or not command.extended
    ret_children = "CHILDREN" in command.returns or not command.extended
    patterns = [matcher(command.reference, p) for p in command.patterns]
    if command.patterns == ("",) and not command.extended:
        return [ListEntry("", ("\\Noselect",), exists=False)]

    names = set(folders)
    parents = {a for n in names for a in _ancestors(n)} - names
    candidates = names | parents | (subs if select_subscribed else set())
    out: list[ListEntry] = []
    for name in sorted(candidates, key=lambda n: (n != "INBOX", n)):
        matched = any(p.fullmatch(name) for p in patterns)
        exists = name in names
        child_subscribed = False
        if select_subscribed and name not in subs:
            if not (recursive and matched and any(s.startswith(name + DELIMITER) for s in subs)):
                continue
            child_subscribed = True
        if not matched:
            continue
        if select_special and not folders.get(name):
            continue
        attrs: list[str] = []
        if not exists:
            attrs.append("\\NonExistent" if rev2 or command.extended else "\\Noselect")
            if not select_subscribed and not any(c.startswith(name + DELIMITER)
                                                 for c in names):
                continue
        if ret_children or not exists:
            has = any(c.startswith(name + DELIMITER) for c in names)
            attrs.append("\\HasChildren" if has else "\\HasNoChildren")
        if ret_subscribed and name in subs and not lsub:
            attrs.append("\\Subscribed")
        use = folders.get(name)
        if ret_special and use:
            attrs.append(use)
        out.append(ListEntry(name, tuple(attrs), child_subscribed, exists))
    return out


def status_items(state: FolderState, items: Sequence[str], appendlimit: int
                 ) -> list[tuple[str, int]]:
    """STATUS data (RFC 9051 6.3.11, RFC 7162 3.1.9 HIGHESTMODSEQ, RFC 8438 SIZE,
    RFC 7889 APPENDLIMIT); RECENT is always 0 (RFC 9051 drops \\Recent)."""
    return [(item, _status_value(state, item, appendlimit)) for item in items
            if item in _STATUS_KNOWN]


_STATUS_KNOWN = frozenset({"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
                           "HIGHESTMODSEQ", "RECENT", "APPENDLIMIT"})


def _status_value(state: FolderState, item: str, appendlimit: int) -> int:
    msgs = state.messages
    if item == "MESSAGES":
        return len(msgs)
    if item == "UIDNEXT":
        return state.uidnext
    if item == "UIDVALIDITY":
        return state.uidvalidity
    if item == "UNSEEN":
        return sum(1 for m in msgs if "\\Seen" not in m.flags)
    if item == "DELETED":
        return sum(1 for m in msgs if "\\Deleted" in m.flags)
    if item == "SIZE":
        return sum(m.size for m in msgs)
    if item == "HIGHESTMODSEQ":
        return state.highestmodseq
    if item == "APPENDLIMIT":
        return appendlimit
    return 0  # RECENT

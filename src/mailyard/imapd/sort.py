"""IMAP SORT (RFC 5256 3, RFC 5957 DISPLAYFROM/DISPLAYTO) and the base subject
(RFC 5256 2.1) that SORT SUBJECT and THREAD compare.

Sort keys, as RFC 5256 3 defines them:

* ARRIVAL: the internal date; SIZE: RFC822.SIZE;
* DATE: the sent date (the ``Date:`` field, compared in UTC), the internal date when
  the field is missing or unreadable (RFC 5256 2.2);
* FROM, TO, CC: the local part (addr-mailbox) of the first address of the field;
* DISPLAYFROM, DISPLAYTO (RFC 5957): the first address's display name (RFC 2047
  decoded), its addr-spec when it has none;
* SUBJECT: the base subject;
* a missing field sorts as the empty string.

Strings compare under i;ascii-casemap (RFC 4790 9.2, RFC 5256's default collation):
ASCII letters case-folded, the rest by code point (the order of their UTF-8
octets).  REVERSE reverses one key; messages that tie on every key stay in
sequence-number order (RFC 5256 3).  The keys come from the ENVELOPE the index
caches when the caller passes it (the same fields RFC 5256 names); otherwise the
header section of each message is read once (``load_header`` when the context has
it).  The deadline is checked before each message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailyard.imapd.search import SearchContext, SearchProgramError, header_fields
from mailyard.message import text
from mailyard.message.structure import Structure
from mailyard.store.index import MessageInfo

__all__ = ["SORT_KEYS", "Summary", "base_subject", "casemap", "sent_time", "sort", "summary"]

SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",
                       "DISPLAYFROM", "DISPLAYTO"})
_INDEX_KEYS = frozenset({"ARRIVAL", "SIZE"})

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# RFC 5256 5: subj-leader = (*subj-blob subj-refwd) / WSP; subj-blob = "[" *BLOBCHAR "]"
# *WSP; subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_BLOB = r"\[[^\[\]]*\][ \t]*"
_REFWD = re.compile(rf"(?:re|fwd?)[ \t]*(?:{_BLOB})?:", re.I | re.A)
_SUBJ_BLOB = re.compile(_BLOB)


def casemap(value: str) -> str:
    """The i;ascii-casemap comparison form of ``value``."""
    return value.translate(_ASCII_UPPER)


def _strip_trailers(s: str, start: int, end: int) -> tuple[int, bool]:
    """RFC 5256 2.1 step 2: drop trailing WSP and "(fwd)"; (new end, removed "(fwd)")."""
    fwd = False
    while end > start:
        if s[end - 1] in " \t":
            end -= 1
        elif end - start >= 5 and s[end - 5:end].lower() == "(fwd)":
            end -= 5
            fwd = True
        else:
            break
    return end, fwd


def _strip_leaders(s: str, start: int, end: int) -> tuple[int, bool]:
    """RFC 5256 2.1 steps 3 to 5; (new start, removed a subj-refwd).  A run of blobs
    is scanned once: if no subj-refwd follows it, none follows any later blob of the
    run either, so step 4 then drops the run (all of it, or all but the last blob
    when nothing else is left)."""
    refwd = False
    while start < end:
        if s[start] in " \t":
            start += 1
            continue
        blobs: list[int] = []
        pos = start
        while (m := _SUBJ_BLOB.match(s, pos, end)) is not None:
            blobs.append(pos)
            pos = m.end()
        m = _REFWD.match(s, pos, end)
        if m is not None:
            start, refwd = m.end(), True
            continue
        if blobs:
            start = pos if pos < end else blobs[-1]
        break
    return start, refwd


def base_subject(subject: bytes | None) -> tuple[str, bool]:
    """The base subject of a raw ``Subject:`` field (RFC 5256 2.1) and whether the
    message is a reply or forward: whether the extraction removed a subj-refwd, a
    "(fwd)" trailer or a "[fwd: ...]" wrapper (RFC 5256 2.1, used by THREAD)."""
    if subject is None:
        return "", False
    s = text.normalize_space(text.decode_header(subject))  # step 1
    start, end = 0, len(s)
    reply = False
    while True:
        end, fwd = _strip_trailers(s, start, end)  # step 2
        start, refwd = _strip_leaders(s, start, end)  # steps 3, 4, 5
        reply = reply or fwd or refwd
        # step 6: "[fwd:" subject "]"
        if end - start >= 6 and s[start:start + 5].lower() == "[fwd:" and s[end - 1] == "]":
            start, end, reply = start + 5, end - 1, True
            continue
        return s[start:end], reply


def sent_time(date: bytes | None, info: MessageInfo) -> float:
    """The sent date (RFC 5256 2.2) as a UTC timestamp: the ``Date:`` field, the
    internal date when it is missing or unreadable."""
    sent = text.sent_date(date)
    return sent.timestamp if sent is not None else info.internal_date


@dataclass(frozen=True, slots=True)
class Summary:
    """What SORT and ORDEREDSUBJECT look at: the raw Date and Subject fields and the
    From, To and Cc address lists, each either the raw field (``bytes``) or the
    ENVELOPE's parsed list; addresses are parsed only when a key asks for them."""

    date: bytes | None = None
    subject: bytes | None = None
    sender: Structure = None  # From
    to: Structure = None
    cc: Structure = None

    @classmethod
    def of_fields(cls, fields: Sequence[tuple[str, bytes]]) -> Summary:
        wanted: dict[str, bytes] = {}
        for name, value in fields:
            if name in ("date", "subject", "from", "to", "cc"):
                wanted.setdefault(name, value)
        return cls(wanted.get("date"), wanted.get("subject"), wanted.get("from"),
                   wanted.get("to"), wanted.get("cc"))

    @classmethod
    def of_envelope(cls, envelope: Structure) -> Summary | None:
        """From a cached ENVELOPE (RFC 9051 7.5.2); None if it is not one."""
        if not isinstance(envelope, list) or len(envelope) != 10:
            return None
        date, subject = envelope[0], envelope[1]
        lists = [v if isinstance(v, list) else None for v in (envelope[2], envelope[5],
                                                               envelope[6])]
        return cls(date if isinstance(date, bytes) else None,
                   subject if isinstance(subject, bytes) else None, *lists)

    def first_address(self, field: str) -> text.Address | None:
        """The first address of ``field`` ("from", "to" or "cc")."""
        value = {"from": self.sender, "to": self.to, "cc": self.cc}[field]
        if isinstance(value, bytes):
            return text.first_address(value)
        return text.first_in_list(value)


def summary(ctx: SearchContext, index: int,
            envelopes: Mapping[int, Structure] | None = None) -> Summary:
    """The :class:`Summary` of message ``index``: from its cached ENVELOPE when
    ``envelopes`` (by UID) has it, else from its header section."""
    if envelopes is not None:
        envelope = envelopes.get(ctx.messages[index].uid)
        got = Summary.of_envelope(envelope) if envelope is not None else None
        if got is not None:
            return got
    return Summary.of_fields(header_fields(ctx, index))


def _text_key(name: str, info: Summary) -> str:
    if name == "SUBJECT":
        return casemap(base_subject(info.subject)[0])
    address = info.first_address(name.removeprefix("DISPLAY").lower())
    if address is None:
        return ""
    if name.startswith("DISPLAY"):
        return casemap(address.name or address.spec)
    return casemap(address.mailbox)


def sort(criteria: Sequence[str], indices: Sequence[int], ctx: SearchContext,
         envelopes: Mapping[int, Structure] | None = None) -> list[int]:
    """``indices`` (into ``ctx.messages``) in the order of the SORT ``criteria``
    (e.g. ``("REVERSE DATE", "SUBJECT")``, as the parser gives them).  ``envelopes``
    (cached ENVELOPEs by UID, e.g. from ``MailboxIndex.structures``) spare reading
    the files of the messages they cover.  Raises
    :class:`~mailyard.imapd.search.SearchTimeout` past the deadline."""
    keys = [(c.startswith("REVERSE "), c.removeprefix("REVERSE ")) for c in criteria]
    for _, name in keys:
        if name not in SORT_KEYS:
            raise SearchProgramError(f"unknown sort key {name}")
    need_header = any(name not in _INDEX_KEYS for _, name in keys)
    numbers: list[dict[int, float]] = [{} for _ in keys]
    strings: list[dict[int, str]] = [{} for _ in keys]
    empty = Summary()
    for index in indices:
        info = ctx.messages[index]
        head = empty
        if need_header:
            ctx.check_deadline()
            head = summary(ctx, index, envelopes)
        for pos, (_, name) in enumerate(keys):
            if name == "ARRIVAL":
                numbers[pos][index] = info.internal_date
            elif name == "SIZE":
                numbers[pos][index] = info.size
            elif name == "DATE":
                numbers[pos][index] = sent_time(head.date, info)
            else:
                strings[pos][index] = _text_key(name, head)
    order = sorted(indices)  # ties stay in sequence-number order
    for pos in reversed(range(len(keys))):  # stable sorts, least significant key first
        reverse = keys[pos][0]
        if numbers[pos]:
            order.sort(key=numbers[pos].__getitem__, reverse=reverse)
        elif strings[pos]:
            order.sort(key=strings[pos].__getitem__, reverse=reverse)
    return order

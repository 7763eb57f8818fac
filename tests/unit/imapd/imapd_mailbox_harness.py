"""A mailbox in memory for the SEARCH, SORT and THREAD tests: messages built from
header fields and a body, index data (UIDs, flags, dates, sizes) beside them, and a
loader that counts how often each message file is read."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailyard.imapd.search import SearchContext
from mailyard.proto.imap.commands import Search, SearchKey, Sort, Thread
from mailyard.proto.imap.parser import ParseContext, parse_command
from mailyard.store.index import MessageInfo

UTC = dt.UTC


def when(text: str) -> float:
    """``2026-12-01 10:00`` (UTC) as a timestamp."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def build(*fields: tuple[str, str], body: str | bytes = "Hello.\n") -> bytes:
    """A message with LF line ends, as the Maildir stores it."""
    head = "".join(f"{name}: {value}\n" for name, value in fields).encode("utf-8")
    return head + b"\n" + (body.encode("utf-8") if isinstance(body, str) else body)


@dataclass
class Mailbox:
    raw: list[bytes] = field(default_factory=list)
    infos: list[MessageInfo] = field(default_factory=list)
    loads: Counter[int] = field(default_factory=Counter)
    header_loads: Counter[int] = field(default_factory=Counter)
    positions: dict[int, int] = field(default_factory=dict)  # UID -> position

    def add(self, raw: bytes, *, uid: int | None = None, flags: tuple[str, ...] = (),
            date: str = "2026-12-01 10:00", size: int | None = None,
            modseq: int = 1) -> int:
        uid = uid if uid is not None else (self.infos[-1].uid + 1 if self.infos else 1)
        crlf = raw.replace(b"\n", b"\r\n")
        self.positions[uid] = len(self.raw)
        self.raw.append(raw)
        self.infos.append(MessageInfo(uid, frozenset(flags), modseq, when(date),
                                      len(crlf) if size is None else size,
                                      Path(f"/nonexistent/{uid}")))
        return len(self.infos) - 1

    def _by_uid(self, uid: int) -> bytes:
        return self.raw[self.positions[uid]]

    def load(self, uid: int) -> bytes:
        self.loads[uid] += 1
        return self._by_uid(uid)

    def load_header(self, uid: int) -> bytes:
        self.header_loads[uid] += 1
        raw = self._by_uid(uid)
        return raw[:raw.find(b"\n\n") + 1]

    def ctx(self, *, headers_only: bool = False, **kwargs: Any) -> SearchContext:
        kwargs.setdefault("tz", UTC)
        return SearchContext(self.infos, self.load,
                             load_header=self.load_header if headers_only else None, **kwargs)


def program(text: str) -> SearchKey:
    """The search program of ``SEARCH <text>`` as the parser builds it."""
    _, command = parse_command([b"a1 SEARCH " + text.encode("utf-8")], ParseContext())
    assert isinstance(command, Search)
    return command.criteria


def sort_command(text: str) -> Sort:
    _, command = parse_command([b"a1 SORT " + text.encode("utf-8")], ParseContext())
    assert isinstance(command, Sort)
    return command


def thread_command(text: str) -> Thread:
    _, command = parse_command([b"a1 THREAD " + text.encode("utf-8")], ParseContext())
    assert isinstance(command, Thread)
    return command

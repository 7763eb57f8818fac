"""IMAP's answers when the server fails under a command: the quota cannot be read
(RFC 9208; RFC 5530 [UNAVAILABLE]), a search meets an error ([SERVERBUG]): a fixed
text on the wire, the failure (a server path, an SQLite message) in the log."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from mailyard.directory.api import DirectoryError
from mailyard.imapd.engine import Limits, MailSession
from mailyard.imapd.folders import FolderCommands
from mailyard.imapd.refusals import quota_refusal
from mailyard.imapd.search import SearchProgramError
from mailyard.proto.imap.events import CommandRequested, CopyRequested, SearchRequested
from mailyard.proto.imap.parser import ParseContext, parse_command
from mailyard.store.index import MailboxIndexError

SECRET = "/srv/mailyard/data/mail/example.test/alice/mailyard-index.db"
FAILURES = (MailboxIndexError(f"mailbox index {SECRET}: disk I/O error"),
            OSError(5, f"Input/output error: '{SECRET}'"),
            DirectoryError(f"directory database error: unable to open {SECRET}"))


@dataclass
class Conn:
    """What the engine needs of the protocol core: the pending command, the answer."""

    pending: Any = None
    completed: list[tuple[str, str, str]] = field(default_factory=list)
    session: Any = field(default_factory=lambda: SimpleNamespace(enabled=set()))

    def complete(self, status: str, text: str, code: str) -> None:
        self.completed.append((status, text, code))


def command(line: bytes) -> Any:
    return parse_command([line], ParseContext())[1]


class FailingIndex:
    """A mailbox index every use of which fails with ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        raise self.exc


def session(conn: Conn, exc: Exception) -> MailSession:
    """A session whose mailbox index and directory (quota limits) fail with ``exc``."""
    def limits() -> Any:
        raise exc

    async def drain() -> None:
        return None

    account = SimpleNamespace(index=FailingIndex(exc))
    return MailSession(conn, account, None, Limits(1 << 20, 1.0), drain,  # type: ignore[arg-type]
                       quota_limits=limits)


@pytest.mark.parametrize("exc", FAILURES)
def test_the_refusal_names_nothing_of_the_server(exc: Exception,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="mailyard.imapd"):
        text, code = quota_refusal("GETQUOTAROOT", exc)
    assert (text, code) == ("Cannot check the quota, try again", "UNAVAILABLE")
    assert any(SECRET in str(getattr(rec, "fields", "")) for rec in caplog.records)  # logged


@pytest.mark.parametrize("exc", FAILURES)
def test_getquotaroot_on_a_failing_store(exc: Exception) -> None:
    conn = Conn()
    ms = session(conn, exc)
    event = CommandRequested("a1", command(b"a1 GETQUOTAROOT INBOX"))
    conn.pending = event
    asyncio.run(FolderCommands(ms).quota(event))
    assert conn.completed == [("NO", "Cannot check the quota, try again", "UNAVAILABLE")]
    assert SECRET not in repr(conn.completed)


@pytest.mark.parametrize("exc", FAILURES)
def test_copy_on_a_failing_quota_check(exc: Exception) -> None:
    conn = Conn()
    ms = session(conn, exc)
    ms.view = SimpleNamespace(  # type: ignore[assignment]
        resolve=lambda *_: [0], messages=[SimpleNamespace(uid=1, size=100)])
    event = CopyRequested("a1", command(b"a1 COPY 1 Archive"))
    conn.pending = event
    asyncio.run(ms.copy(event))
    assert conn.completed == [("NO", "Cannot check the quota, try again", "UNAVAILABLE")]
    assert SECRET not in repr(conn.completed)


def search_failing_with(exc: Exception) -> list[tuple[str, str, str]]:
    """The answer to ``SEARCH ALL`` when the search itself raises ``exc``."""
    conn = Conn()
    ms = session(conn, OSError())
    ms.view = SimpleNamespace(messages=[], name="INBOX", highestmodseq=1,  # type: ignore[assignment]
                              uidvalidity=1)

    def failing(*_: Any) -> Any:
        raise exc

    ms._search = failing  # type: ignore[method-assign]
    event = SearchRequested("a1", command(b"a1 SEARCH ALL"))
    conn.pending = event
    asyncio.run(ms.search(event))
    return conn.completed


def test_search_failure_names_nothing_of_the_server() -> None:
    got = search_failing_with(UnicodeDecodeError("utf-8", b"\xff", 0, 1, f"in {SECRET}"))
    assert got == [("NO", "SEARCH failed, try again", "SERVERBUG")]


def test_an_unknown_search_program_is_bad() -> None:
    got = search_failing_with(SearchProgramError("unknown sort key COLOUR"))
    assert got == [("BAD", "SEARCH: unknown sort key COLOUR", "")]

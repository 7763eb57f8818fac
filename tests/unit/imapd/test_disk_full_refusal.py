"""IMAP's answers for a change the store could not make: a full disk is
``NO [OVERQUOTA] Not enough disk space`` (as Dovecot answers ENOSPC and EDQUOT), other
failures a generic ``[SERVERBUG]`` without server paths; an APPEND literal whose
temporary file cannot take more is still read to its end and then refused."""

from __future__ import annotations

import errno
import io
import logging
import sqlite3
from pathlib import Path

import pytest

from mailyard.imapd.folders import PendingAppend
from mailyard.imapd.refusals import write_refusal
from mailyard.proto.imap.commands import Append
from mailyard.proto.imap.events import CommandRequested, IdleRequested, LoginRequested
from mailyard.proto.imap.parser import ParseContext, parse_command
from mailyard.proto.imap.server import command_of as command_name
from mailyard.store.index import MailboxIndexError
from mailyard.store.index_db import index_error


def test_disk_full_is_overquota() -> None:
    index_full = index_error(Path("/srv/mail/u/mailyard-index.db"),
                             sqlite3.OperationalError("database or disk is full"))
    assert isinstance(index_full, MailboxIndexError) and index_full.errno == errno.ENOSPC
    for exc in (OSError(errno.ENOSPC, "No space left on device"),
                OSError(errno.EDQUOT, "Disk quota exceeded"), index_full):
        assert write_refusal("APPEND", exc) == ("Not enough disk space", "OVERQUOTA")


def test_other_failures_say_nothing_of_the_server() -> None:
    exc = MailboxIndexError("mailbox index /srv/mail/u/mailyard-index.db: disk I/O error")
    text, code = write_refusal("STORE", exc)
    assert (text, code) == ("STORE failed, try again", "SERVERBUG")


class FullFile(io.BytesIO):
    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_append_literal_on_a_full_disk_is_read_and_remembered() -> None:
    pending = PendingAppend(Append.__new__(Append), FullFile(10))
    pending.write(b"12345")
    pending.write(b"678901")  # no room: remembered, not raised
    pending.write(b"more")  # the rest of the literal is dropped
    assert pending.failed is not None and pending.failed.errno == errno.ENOSPC
    assert pending.size == 5


def test_a_failed_command_is_named_in_its_refusal(caplog: pytest.LogCaptureFixture) -> None:
    """The session's own refusal (a store failure under any command) names the command,
    as the engine's do, and logs the client."""
    caplog.set_level(logging.INFO, logger="mailyard.imapd")
    requested = CommandRequested("a1", parse_command([b"a1 GETQUOTAROOT INBOX"],
                                                     ParseContext())[1])
    assert command_name(requested) == "GETQUOTAROOT"
    assert command_name(LoginRequested("a2", "u", "p")) == "LOGIN"
    assert command_name(IdleRequested("a3")) == "IDLE"
    exc = OSError(errno.EIO, "Input/output error: '/srv/mail/u/x'")
    assert write_refusal(command_name(requested), exc, client="192.0.2.1") == (
        "GETQUOTAROOT failed, try again", "SERVERBUG")
    assert any(getattr(r, "fields", {}).get("client") == "192.0.2.1" for r in caplog.records)

"""Maildir++ layout and durable delivery (the Maildir convention as Dovecot reads it)."""

from __future__ import annotations

import errno
import io
import os
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailyard.store import maildir as maildir_module
from mailyard.store.maildir import (
    LfWriter,
    MailboxNameError,
    Maildir,
    mailbox_path,
    message_sizes,
    read_message,
    unique_token,
)

MESSAGE = b"From: a@remote.org\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello\r\n"
NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q([A-Za-z0-9_-]+)\.([^,:/]+),S=(\d+),W=(\d+)$")


@pytest.fixture
def box(tmp_path: Path) -> Maildir:
    m = Maildir(tmp_path / "mail" / "example.test" / "alice", host="mx.example.test",
                clock=lambda: 1700000000.123456)
    m.create()
    return m


def test_layout(tmp_path: Path, box: Maildir) -> None:
    assert box.path == tmp_path / "mail" / "example.test" / "alice"
    for sub in ("cur", "new", "tmp"):
        assert (box.path / sub).is_dir()
    assert box.exists()
    box.create()  # idempotent


def test_mailbox_path() -> None:
    assert mailbox_path("/data/mail", "alice@example.test") == Path(
        "/data/mail/example.test/alice")
    for bad in ("../x@example.test", "a/b@example.test", "alice@..", ".hidden@example.test",
                "noatsign", "@example.test"):
        with pytest.raises(MailboxNameError):
            mailbox_path("/data/mail", bad)


def test_deliver_writes_prefix_then_message_into_new(box: Maildir) -> None:
    prefix = b"Return-Path: <a@remote.org>\r\n"
    name = box.deliver(io.BytesIO(MESSAGE), prefix, "Q123.0")
    path = box.path / "new" / name
    assert path.read_bytes() == (prefix + MESSAGE).replace(b"\r\n", b"\n")
    assert os.listdir(box.path / "tmp") == []
    m = NAME.match(name)
    assert m is not None, name
    assert m.group(1) == "1700000000" and m.group(2) == "123456"
    assert int(m.group(3)) == os.getpid()
    assert m.group(5) == "mx.example.test"
    assert int(m.group(6)) == path.stat().st_size  # S= is the file size (Maildir++)
    assert int(m.group(7)) == len(prefix) + len(MESSAGE)  # W= the size as received (CRLF)
    assert message_sizes(name) == (path.stat().st_size, len(prefix) + len(MESSAGE))
    assert (path.stat().st_mode & 0o777) == 0o600


def test_stored_with_lf_line_ends(box: Maildir) -> None:
    """maildir(5) and Dovecot: LF line ends.  mutt shows ^M and s-nail cannot find the
    end of the header when the file has CRLF."""
    name = box.deliver(io.BytesIO(MESSAGE), b"Return-Path: <a@remote.org>\r\n", "k")
    data = (box.path / "new" / name).read_bytes()
    assert b"\r" not in data
    assert b"\nSubject: hi\n\nHello\n" in data


def test_lone_cr_is_kept(box: Maildir) -> None:
    """A CR not followed by LF is message data: it stays, and counts once in S= and W=."""
    message = b"Subject: cr\r\n\r\nhalf\rway\r\nend\r"
    name = box.deliver([message], b"", "k")
    data = (box.path / "new" / name).read_bytes()
    assert data == b"Subject: cr\n\nhalf\rway\nend\r"
    assert message_sizes(name) == (len(data), len(message))


@pytest.mark.parametrize("split", range(1, len(MESSAGE)))
def test_crlf_split_across_chunks(split: int) -> None:
    """A CRLF whose CR ends one chunk and whose LF starts the next is one line end."""
    writer = LfWriter()
    out = b"".join(writer.convert([MESSAGE[:split], b"", MESSAGE[split:]]))
    assert out == MESSAGE.replace(b"\r\n", b"\n")
    assert (writer.lf_size, writer.crlf_size) == (len(out), len(MESSAGE))


@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"xy"]), max_size=40),
       st.lists(st.integers(min_value=0, max_value=8), max_size=10))
def test_chunking_does_not_change_the_result(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    chunks, rest = [], data
    for n in cuts:
        chunks.append(rest[:n])
        rest = rest[n:]
    chunks.append(rest)
    writer = LfWriter()
    out = b"".join(writer.convert(chunks))
    assert out == data.replace(b"\r\n", b"\n")
    assert writer.crlf_size == len(out) + out.count(b"\n")


def test_read_message_reads_lf_and_legacy_crlf_files(box: Maildir) -> None:
    """Files written before LF storage (CRLF, S= only) are found and read the same."""
    name = box.deliver(io.BytesIO(MESSAGE), b"", "new-format")
    legacy = box.path / "cur" / f"1600000000.M1P1Qold-format.mx.example.test,S={len(MESSAGE)}:2,S"
    legacy.write_bytes(MESSAGE)
    assert read_message(box.path / "new" / name) == MESSAGE
    assert read_message(legacy) == MESSAGE
    assert box.find("old-format") == legacy
    assert box.find("nothing", "old-format") == legacy
    assert message_sizes(legacy.name) == (len(MESSAGE), None)


def test_deliver_from_chunks(box: Maildir) -> None:
    name = box.deliver([b"a" * 10, b"", b"b" * 5], b"", "x")
    assert (box.path / "new" / name).read_bytes() == b"a" * 10 + b"b" * 5


def test_names_are_unique_without_key(box: Maildir) -> None:
    names = {box.deliver(io.BytesIO(MESSAGE)) for _ in range(20)}
    assert len(names) == 20


def test_host_escapes() -> None:
    """Maildir convention: '/' and ':' in the host name are written as \\057 and \\072."""
    m = Maildir("/nonexistent", host="a/b:c")
    assert m.host == "a\\057b\\072c"


def test_fsync_before_rename_then_directory_fsync(box: Maildir,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Durability: the file is on disk before it appears in new/, and new/ is synced."""
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        events.append(("rename", str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(maildir_module.os, "fsync", fsync)
    monkeypatch.setattr(maildir_module.os, "rename", rename)
    name = box.deliver(io.BytesIO(MESSAGE), b"", "k")
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "rename", "fsync"]
    assert "/tmp/" in events[0][1]
    assert events[1][1].endswith("/new/" + name)
    assert events[2][1] == str(box.path / "new")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_failed_write_leaves_nothing(box: Maildir, code: int) -> None:
    def failing() -> Iterator[bytes]:
        yield b"partial"
        raise OSError(code, os.strerror(code))

    with pytest.raises(OSError) as info:
        box.deliver(failing(), b"", "k")
    assert info.value.errno == code
    for sub in ("tmp", "new", "cur"):
        assert os.listdir(box.path / sub) == []
    assert box.find("k") is None


def test_find_in_new_and_cur(box: Maildir) -> None:
    name = box.deliver(io.BytesIO(MESSAGE), b"", "Q1.0")
    assert box.find("Q1.0") == box.path / "new" / name
    assert box.find("Q1.1") is None
    assert box.find("Q1") is None
    # A mail reader moves it to cur/ and adds flags (":2,S").
    os.rename(box.path / "new" / name, box.path / "cur" / (name + ":2,S"))
    assert box.find("Q1.0") == box.path / "cur" / (name + ":2,S")


def test_find_ignores_foreign_files(box: Maildir) -> None:
    (box.path / "new" / "1700000000.12345_1.otherhost").write_bytes(b"x")
    (box.path / "cur" / "dovecot-uidlist").write_bytes(b"x")
    assert box.find("k") is None


def test_find_without_directories(tmp_path: Path) -> None:
    assert Maildir(tmp_path / "none").find("k") is None


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_unique_token_is_safe_and_injective(a: str, b: str) -> None:
    ta, tb = unique_token(a), unique_token(b)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", ta)
    assert (ta == tb) == (a == b)


def test_large_message_is_streamed(box: Maildir) -> None:
    """A 50 MB message goes through in chunks: Python memory stays far below its size."""
    size = 50 * 1024 * 1024
    chunk = b"x" * 1022 + b"\r\n"

    def chunks() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    tracemalloc.start()
    try:
        name = box.deliver(chunks(), b"Return-Path: <>\r\n", "big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    lines = size // len(chunk) + 1
    assert (box.path / "new" / name).stat().st_size == size + len(b"Return-Path: <>\r\n") - lines
    assert message_sizes(name) == (size + len(b"Return-Path: <>\r\n") - lines,
                                   size + len(b"Return-Path: <>\r\n"))


def test_large_file_source_is_streamed(box: Maildir, tmp_path: Path) -> None:
    source = tmp_path / "big.eml"
    with open(source, "wb") as f:
        f.truncate(20 * 1024 * 1024)
    tracemalloc.start()
    try:
        with open(source, "rb") as f:
            name = box.deliver(f, b"", "big-file")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert (box.path / "new" / name).stat().st_size == 20 * 1024 * 1024


def test_sweep_tmp(box: Maildir) -> None:
    stale = box.path / "tmp" / "stale"
    stale.write_bytes(b"x")
    os.utime(stale, (1, 1))
    fresh = box.path / "tmp" / "fresh"
    fresh.write_bytes(b"x")
    os.utime(fresh, (1700000000, 1700000000))
    assert box.sweep_tmp() == 1
    assert os.listdir(box.path / "tmp") == ["fresh"]


def test_subfolder(box: Maildir) -> None:
    """Maildir++: folders are .Name directories with a maildirfolder marker."""
    archive = box.folder("Archive")
    archive.create()
    assert archive.path == box.path / ".Archive"
    assert (archive.path / "maildirfolder").is_file()
    assert (archive.path / "new").is_dir()
    with pytest.raises(MailboxNameError):
        box.folder("../x")

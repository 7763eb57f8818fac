"""Maildir++ mailboxes on disk, in the layout Dovecot reads.

A mailbox is ``<data_dir>/mail/<domain>/<localpart>/`` holding ``cur/``, ``new/`` and
``tmp/`` (the INBOX); sub-folders are ``.Name/`` directories beside them, each a
Maildir of its own with a ``maildirfolder`` marker file.

Delivery is the classic Maildir protocol made durable: stream the message into
``tmp/``, fsync the file, rename it into ``new/``, fsync ``new/``; only then is the
message delivered.  File names follow the Maildir convention
``<sec>.M<usec>P<pid>Q<unique>.<host>,S=<size>`` (``cur/`` names add ``:2,<flags>``),
with the ``Q`` part derived from the caller's ``unique`` key (queue id and recipient),
so :meth:`Maildir.find` can tell whether an interrupted delivery already left a copy.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

CHUNK_SIZE = 256 * 1024
SUBDIRS = ("cur", "new", "tmp")
TMP_MAX_AGE = 36 * 3600  # the Maildir convention for stale tmp/ files
_NAME = re.compile(r"(\d+)\.M(\d+)P(\d+)Q([A-Za-z0-9_-]+)\.")
_TOKEN_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_counter = itertools.count(1)


class MailboxNameError(ValueError):
    """An address or folder name that cannot name a directory safely."""


def mailbox_path(mail_root: Path | str, address: str) -> Path:
    """``<mail_root>/<domain>/<localpart>`` for a canonical (lower-case) address."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        raise MailboxNameError(f"not an address: {address!r}")
    for part in (local, domain):
        _check_component(part, address)
    return Path(mail_root) / domain / local


def _check_component(part: str, what: str) -> None:
    if not part or part in (".", "..") or part.startswith(".") or any(
            c in part for c in "/\\\0"):
        raise MailboxNameError(f"cannot use {what!r} as a mailbox directory name")


def unique_token(unique: str) -> str:
    """An injective, file-name-safe encoding of ``unique``: letters, digits and '-'
    stay, every other byte becomes ``_XX`` (hex)."""
    out = []
    for ch in unique:
        if ch in _TOKEN_SAFE:
            out.append(ch)
        else:
            out.extend(f"_{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _host_part(host: str) -> str:
    """The Maildir spec's escapes for '/' and ':' in the host name."""
    return host.replace("/", "\\057").replace(":", "\\072") or "localhost"


Source = BinaryIO | Iterable[bytes]


def _chunks(source: Source) -> Iterator[bytes]:
    read: Callable[[int], bytes] | None = getattr(source, "read", None)
    if read is None:
        yield from source  # type: ignore[misc]
        return
    while chunk := read(CHUNK_SIZE):
        yield chunk


class Maildir:
    def __init__(self, path: Path | str, host: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.host = _host_part(host or socket.gethostname())
        self.clock = clock

    def create(self) -> None:
        """Create the Maildir (and missing parents); idempotent.  New directories are
        fsynced into their parents so the mailbox survives a crash."""
        created = _makedirs_durable(self.path)
        for sub in SUBDIRS:
            try:
                os.mkdir(self.path / sub, 0o700)
                created = True
            except FileExistsError:
                pass
        if created:
            _fsync_dir(self.path)

    def exists(self) -> bool:
        return all((self.path / sub).is_dir() for sub in SUBDIRS)

    def folder(self, name: str) -> Maildir:
        """The Maildir++ sub-folder ``.name`` (not created)."""
        if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise MailboxNameError(f"bad folder name {name!r}")
        return _Folder(self.path / f".{name}", self.host, self.clock)

    # --- delivery ------------------------------------------------------------------
    def deliver(self, source: Source, prefix: bytes = b"", unique: str = "") -> str:
        """Store one message (``prefix`` then the stream) in ``new/``; returns its file
        name.  The message is streamed in chunks, never held whole in memory.  Raises
        OSError (ENOSPC, EDQUOT, EIO, ...) with nothing left behind in ``tmp/``."""
        now = self.clock()
        sec, usec = int(now), int((now - int(now)) * 1_000_000)
        token = unique_token(unique) if unique else f"{next(_counter)}-{os.urandom(4).hex()}"
        base = f"{sec}.M{usec}P{os.getpid()}Q{token}.{self.host}"
        tmp = self.path / "tmp" / base
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        try:
            size = _write_all(fd, itertools.chain((prefix,), _chunks(source)))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        os.close(fd)
        name = f"{base},S={size}"
        try:
            os.rename(tmp, self.path / "new" / name)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _fsync_dir(self.path / "new")
        return name

    def find(self, unique: str) -> Path | None:
        """An earlier copy delivered with ``unique`` (in ``new/`` or ``cur/``), or None."""
        token = unique_token(unique)
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(self.path / sub)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    m = _NAME.match(entry.name)
                    if m and m.group(4) == token:
                        return Path(entry.path)
        return None

    def sweep_tmp(self, max_age: float = TMP_MAX_AGE) -> int:
        """Remove files left in ``tmp/`` by deliveries that died; returns how many."""
        removed = 0
        cutoff = self.clock() - max_age
        try:
            entries = os.scandir(self.path / "tmp")
        except FileNotFoundError:
            return 0
        with entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    _unlink_quietly(Path(entry.path))
                    removed += 1
        return removed


class _Folder(Maildir):
    """A Maildir++ sub-folder: a Maildir plus the ``maildirfolder`` marker."""

    def create(self) -> None:
        super().create()
        marker = self.path / "maildirfolder"
        if not marker.exists():
            marker.touch(0o600)
            _fsync_dir(self.path)


def _write_all(fd: int, chunks: Iterable[bytes]) -> int:
    size = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]
            size += written
    return size


def _makedirs_durable(path: Path) -> bool:
    """mkdir -p, fsyncing each parent that gained an entry.  True if anything was made."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        _fsync_dir(d.parent)
    return bool(missing)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

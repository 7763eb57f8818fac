"""Maildir++ mailboxes on disk, in the layout Dovecot reads.

A mailbox is ``<data_dir>/mail/<domain>/<localpart>/`` holding ``cur/``, ``new/`` and
``tmp/`` (the INBOX); sub-folders are ``.Name/`` directories beside them, each a
Maildir of its own with a ``maildirfolder`` marker file.

Delivery is the classic Maildir protocol made durable: stream the message into
``tmp/``, fsync the file, rename it into ``new/``, fsync ``new/``; only then is the
message delivered.  File names follow the Maildir convention
``<sec>.M<usec>P<pid>Q<unique>.<host>,S=<size>,W=<crlf size>`` (``cur/`` names add
``:2,<flags>``), with the ``Q`` part derived from the caller's ``unique`` key (queue id
and final mailbox), so :meth:`Maildir.find` can tell whether an interrupted delivery
already left a copy.

Messages are stored with LF line ends, as maildir(5) and Dovecot expect and as mutt,
s-nail and mblaze read them: every CRLF of the message (SMTP's line end) becomes LF
while the file is written, in a streaming pass that also handles a CRLF split across
two chunks.  A CR that is not followed by LF is data, and is kept as it is.
``S=`` is the size of the file (the LF form), ``W=`` the size with CRLF line ends
(Dovecot's convention, RFC822.SIZE for IMAP), so neither needs the file to be read.
Files written by earlier versions with CRLF line ends and only ``S=`` are still found
by :meth:`Maildir.find` and read by :func:`read_message`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from mailyard.fs import DirectorySyncer, fsync_dir, unlink_quietly, write_all
from mailyard.store.api import (
    INBOX,
    InboxMessage,
    Mailbox,
    MailboxBusy,
    MailboxLock,
    MailboxNameError,
    MailStore,
    Source,
    StoredMessage,
)
from mailyard.store.quota import QuotaUsage

CHUNK_SIZE = 256 * 1024
SUBDIRS = ("cur", "new", "tmp")
TMP_MAX_AGE = 36 * 3600  # the Maildir convention for stale tmp/ files
_MAX_CACHED_BOXES = 4096  # MaildirStore.maildir: Maildir objects kept by address
_NAME = re.compile(r"(\d+)\.M(\d+)P(\d+)Q([A-Za-z0-9_-]+)\.")
_SIZES = re.compile(r",S=(\d+)(?:,W=(\d+))?")
_TOKEN_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_counter = itertools.count(1)


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


def _chunks(source: Source) -> Iterator[bytes]:
    read: Callable[[int], bytes] | None = getattr(source, "read", None)
    if read is None:
        yield from source
        return
    while chunk := read(CHUNK_SIZE):
        yield chunk


class LfWriter:
    """CRLF -> LF, chunk by chunk.  Feed the chunks in order, then call :meth:`end`;
    a CR that ends one chunk is held back until the next shows whether LF follows.
    ``lf_size`` counts the bytes returned, ``crlf_size`` the size the same text has
    with every LF written as CRLF (a lone CR counts once in both)."""

    def __init__(self) -> None:
        self._held_cr = False
        self.lf_size = 0
        self.crlf_size = 0

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        if self._held_cr:
            chunk = b"\r" + chunk
        self._held_cr = chunk.endswith(b"\r")
        if self._held_cr:
            chunk = chunk[:-1]
        return self._count(chunk.replace(b"\r\n", b"\n"))

    def end(self) -> bytes:
        """What is still held back: a CR that ended the last chunk (kept as data)."""
        held, self._held_cr = self._held_cr, False
        return self._count(b"\r" if held else b"")

    def _count(self, out: bytes) -> bytes:
        self.lf_size += len(out)
        self.crlf_size += len(out) + out.count(b"\n")
        return out

    def convert(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            out = self.feed(chunk)
            if out:
                yield out
        out = self.end()
        if out:
            yield out


def message_sizes(name: str) -> tuple[int, int | None] | None:
    """(``S=``, ``W=`` or None) from a Maildir file name, None without ``S=``."""
    m = _SIZES.search(name)
    if m is None:
        return None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) else None)


def read_message(path: Path | str) -> bytes:
    """A stored message with CRLF line ends (as IMAP and SMTP carry it), whether the
    file has LF line ends or, written by an earlier version, CRLF ones."""
    data = Path(path).read_bytes()
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def base_name(name: str) -> str:
    """A Maildir file's unique part: its name before the ``:2,<flags>`` info and the
    ``,S=``/``,W=`` fields, the same in ``new/`` and ``cur/`` and whatever the flags."""
    return name.split(":", 1)[0].split(",", 1)[0]


def crlf_size(path: Path | str) -> int:
    """The size of a stored message with CRLF line ends, read from the file (for
    names without ``W=``): LF files and the CRLF files of earlier versions alike."""
    lf = LfWriter()
    with open(path, "rb") as f:
        for _ in lf.convert(iter(lambda: f.read(CHUNK_SIZE), b"")):
            pass
    return lf.crlf_size


def _delivered_at(name: str, path: str) -> float:
    """When a message was delivered: the ``<sec>.M<usec>`` of its name, else its mtime."""
    m = _NAME.match(name)
    if m is not None:
        return int(m.group(1)) + int(m.group(2)) / 1_000_000
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


class _FlockLock(MailboxLock):
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file drops the flock


#: The directory fsyncs of every Maildir in this process, grouped per ``new/``.
SHARED_SYNCER = DirectorySyncer()


class Maildir:
    """One Maildir directory.  ``syncer`` groups the fsyncs of ``new/`` with other
    deliveries into the same Maildir (default: the process-wide one)."""

    def __init__(self, path: Path | str, host: str | None = None,
                 clock: Callable[[], float] = time.time,
                 syncer: DirectorySyncer | None = None) -> None:
        self.path = Path(path)
        self._root = os.fspath(self.path)  # plain strings on the delivery path
        self.host = _host_part(host or socket.gethostname())
        self.clock = clock
        self.syncer = syncer or SHARED_SYNCER

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
            fsync_dir(self.path)

    def exists(self) -> bool:
        return all((self.path / sub).is_dir() for sub in SUBDIRS)

    def folder(self, name: str) -> Maildir:
        """The Maildir++ sub-folder ``.name`` (not created)."""
        if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise MailboxNameError(f"bad folder name {name!r}")
        return _Folder(self.path / f".{name}", self.host, self.clock, self.syncer)

    # --- delivery ------------------------------------------------------------------
    def deliver(self, source: Source, prefix: bytes = b"", unique: str = "",
                info: str | None = None) -> str:
        """Store one message (``prefix`` then the stream) in ``new/`` with LF line
        ends; returns its file name.  With ``info`` (flag letters) it goes straight
        to ``cur/`` as ``name:2,<info>`` (IMAP APPEND: the index gives it its UID in
        the same step, so it need not pass through ``new/``).  The message is
        streamed in chunks, never held whole in memory.  Returns once the file and its
        entry in ``new/`` are on disk:
        the file is fsynced before its rename, and the fsync of ``new/`` after it is
        shared with the deliveries into this Maildir that rename at about the same
        time (:class:`~mailyard.fs.DirectorySyncer`).  Raises OSError (ENOSPC,
        EDQUOT, EIO, ...) with nothing left behind in ``tmp/``."""
        now = self.clock()
        sec, usec = int(now), int((now - int(now)) * 1_000_000)
        token = unique_token(unique) if unique else f"{next(_counter)}-{os.urandom(4).hex()}"
        base = f"{sec}.M{usec}P{os.getpid()}Q{token}.{self.host}"
        tmp = f"{self._root}{os.sep}tmp{os.sep}{base}"
        new = f"{self._root}{os.sep}{'new' if info is None else 'cur'}"
        with self.syncer.pending(new) as ticket:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_CLOEXEC", 0), 0o600)
            lf = LfWriter()
            try:
                size = write_all(fd, lf.convert(itertools.chain((prefix,), _chunks(source))))
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                unlink_quietly(tmp)
                raise
            os.close(fd)
            name = f"{base},S={size},W={lf.crlf_size}"
            if info is not None:
                name += f":2,{info}"
            try:
                os.rename(tmp, f"{new}{os.sep}{name}")
            except BaseException:
                unlink_quietly(tmp)
                raise
            ticket.sync()
        return name

    def find(self, *uniques: str) -> Path | None:
        """An earlier copy delivered with one of the ``uniques`` keys (in ``new/`` or
        ``cur/``), or None.  Only the file name is read, so copies stored with CRLF
        line ends by earlier versions are found too."""
        tokens = {unique_token(u) for u in uniques}
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(self.path / sub)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    m = _NAME.match(entry.name)
                    if m and m.group(4) in tokens:
                        return Path(entry.path)
        return None

    # --- retrieval ---------------------------------------------------------------------
    def scan(self) -> dict[str, tuple[str, str]]:
        """The messages in ``new/`` and ``cur/``: base name -> (file name, path)."""
        found: dict[str, tuple[str, str]] = {}
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(self.path / sub)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    found.setdefault(base_name(entry.name), (entry.name, entry.path))
        return found

    def lock(self, purpose: str) -> MailboxLock:
        """An exclusive ``flock`` on ``mailyard-<purpose>.lock`` in this Maildir."""
        if not purpose.isalnum():
            raise ValueError(f"bad lock purpose {purpose!r}")
        fd = os.open(self.path / f"mailyard-{purpose}.lock",
                     os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise MailboxBusy(f"{self.path} is locked ({purpose})") from None
            raise
        return _FlockLock(fd)

    def sweep_tmp(self, max_age: float = TMP_MAX_AGE) -> int:
        """Remove files left in ``tmp/`` by deliveries that died; returns how many.
        Safe while deliveries run: a file renamed away during the scan is skipped."""
        removed = 0
        cutoff = self.clock() - max_age
        try:
            entries = os.scandir(self.path / "tmp")
        except FileNotFoundError:
            return 0
        with entries:
            for entry in entries:
                try:
                    stale = (entry.is_file(follow_symlinks=False)
                             and entry.stat(follow_symlinks=False).st_mtime < cutoff)
                except FileNotFoundError:
                    continue  # a delivery renamed it into new/ meanwhile
                if stale:
                    unlink_quietly(entry.path)
                    removed += 1
        return removed


class _Folder(Maildir):
    """A Maildir++ sub-folder: a Maildir plus the ``maildirfolder`` marker."""

    def create(self) -> None:
        super().create()
        marker = self.path / "maildirfolder"
        if not marker.exists():
            marker.touch(0o600)
            fsync_dir(self.path)


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
        fsync_dir(d.parent)
    return bool(missing)


# --- the MailStore interface on Maildir++ ---------------------------------------------

def _stored(folder: str, path: Path) -> StoredMessage:
    sizes = message_sizes(path.name)
    if sizes is None:
        size, rfc822 = path.stat().st_size, None
    else:
        size, rfc822 = sizes
    return StoredMessage(folder, path.name, size, rfc822)


class MaildirMailbox(Mailbox):
    """A user's Maildir++ mailbox (its INBOX is the top-level Maildir)."""

    def __init__(self, address: str, inbox: Maildir) -> None:
        self.address = address
        self.inbox = inbox
        self._paths: dict[str, str] = {}  # base name -> path, as last listed

    def deliver(self, source: Source, *, prefix: bytes = b"", key: str,
                folder: str = INBOX) -> StoredMessage:
        box = self._maildir(folder)
        if folder != INBOX and not box.exists():
            box.create()
        name = box.deliver(source, prefix, key)
        sizes = message_sizes(name)
        assert sizes is not None  # deliver() always writes S= and W=
        return StoredMessage(folder, name, sizes[0], sizes[1])

    def find(self, *keys: str, folder: str = INBOX) -> StoredMessage | None:
        path = self._maildir(folder).find(*keys)
        return None if path is None else _stored(folder, path)

    def _maildir(self, folder: str) -> Maildir:
        from mailyard.store.index import disk_name, normalize

        name = normalize(folder)
        return self.inbox if name == INBOX else self.inbox.folder(disk_name(name))

    def special_folder(self, use: str) -> str | None:
        """From the mailbox index (which creates the default folders, ``Junk`` with
        ``\\Junk`` among them, when it is first opened)."""
        from mailyard.store.index import MailboxIndex

        index = MailboxIndex(self.inbox)
        try:
            for info in index.list_folders():
                if info.special_use is not None and info.special_use.lower() == use.lower():
                    return info.name
        finally:
            index.close()
        return None

    def folders(self) -> list[str]:
        names = []
        try:
            with os.scandir(self.inbox.path) as entries:
                for entry in entries:
                    if (entry.name.startswith(".") and entry.name not in (".", "..")
                            and entry.is_dir(follow_symlinks=False)):
                        names.append(entry.name[1:])
        except FileNotFoundError:
            pass
        return [INBOX, *sorted(names)]


    # --- retrieval: messages are named by their base name (see base_name) ------------

    def inbox_messages(self) -> list[InboxMessage]:
        out = []
        found = self.inbox.scan()
        self._paths = {key: path for key, (_name, path) in found.items()}
        for key, (name, path) in found.items():
            sizes = message_sizes(name)
            try:
                size = sizes[1] if sizes is not None and sizes[1] is not None else crlf_size(path)
            except FileNotFoundError:
                continue  # removed by another program meanwhile
            out.append(InboxMessage(key, size, _delivered_at(name, path)))
        out.sort(key=lambda m: (m.received, m.key))
        return out

    def open_message(self, key: str) -> BinaryIO:
        path = self._paths.get(key)
        if path is not None:
            try:
                return open(path, "rb")
            except FileNotFoundError:
                pass  # moved (new/ to cur/, a flag change) since it was listed: look again
        found = self.inbox.scan().get(key)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "message removed", key)
        self._paths[key] = found[1]
        return open(found[1], "rb")

    def remove_messages(self, keys: Iterable[str]) -> int:
        wanted = set(keys)
        if not wanted:
            return 0
        removed, failure = 0, None
        for key, (_name, path) in self.inbox.scan().items():
            if key not in wanted:
                continue
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass  # removed meanwhile by someone else: the same outcome
            except OSError as exc:
                failure = exc
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(self.inbox.path / sub)
        if failure is not None:
            raise failure
        return removed

    def lock_exclusive(self, purpose: str) -> MailboxLock:
        return self.inbox.lock(purpose)


class MaildirStore(MailStore):
    """Mailboxes as ``<mail_root>/<domain>/<localpart>/`` Maildir++ directories.

    The mailboxes this process has created or found complete are remembered, so a
    delivery costs no ``mkdir`` calls after the first one into a mailbox; the same
    first use sweeps the mailbox's ``tmp/`` of files older than 36 hours (left by
    deliveries that died), and so does any use ``sweep_interval`` seconds after the
    last sweep.  That is one directory scan per mailbox per interval, of a directory
    that is normally empty.  A mailbox removed behind the store's back is made
    again by the retry of the delivery that found it gone.
    """

    def __init__(self, mail_root: Path | str, host: str | None = None, *,
                 clock: Callable[[], float] = time.time,
                 syncer: DirectorySyncer | None = None,
                 sweep_interval: float = 12 * 3600) -> None:
        self.mail_root = Path(mail_root)
        self.host = host
        self.clock = clock
        self.syncer = syncer or SHARED_SYNCER
        self.sweep_interval = sweep_interval
        self._lock = threading.Lock()
        self._ready: dict[Path, float] = {}  # created mailbox -> time of its last tmp/ sweep
        # Maildir objects by address (immutable; saves the path work per delivery)
        self._boxes: dict[str, Maildir] = {}

    def maildir(self, address: str) -> Maildir:
        """The INBOX Maildir of ``address`` (nothing created)."""
        box = self._boxes.get(address)
        if box is None:
            box = Maildir(mailbox_path(self.mail_root, address), self.host, self.clock,
                          self.syncer)
            if len(self._boxes) >= _MAX_CACHED_BOXES:
                self._boxes.clear()
            self._boxes[address] = box
        return box

    def mailbox(self, address: str, *, create: bool = True) -> MaildirMailbox:
        box = self.maildir(address)
        if create:
            self._prepare(box)
        return _StoreMailbox(address, box, self)

    def exists(self, address: str) -> bool:
        return self.maildir(address).exists()

    def usage(self, address: str) -> QuotaUsage:
        # The index is built over Maildir (store.index imports this module).
        from mailyard.store.usage import mailbox_usage

        return mailbox_usage(self.maildir(address))

    def _prepare(self, box: Maildir) -> None:
        """Create the Maildir unless known, and sweep its tmp/ when due."""
        now = self.clock()
        with self._lock:
            last = self._ready.get(box.path)
        if last is not None and now - last < self.sweep_interval:
            return
        box.create()
        box.sweep_tmp()
        with self._lock:
            self._ready[box.path] = now

    def _forget(self, box: Maildir) -> None:
        with self._lock:
            self._ready.pop(box.path, None)


class _StoreMailbox(MaildirMailbox):
    """A mailbox from :class:`MaildirStore`: when a delivery finds its directories
    gone (removed while the store remembered it as created), the store forgets it, so
    the retry of that delivery creates it again."""

    def __init__(self, address: str, inbox: Maildir, store: MaildirStore) -> None:
        super().__init__(address, inbox)
        self._store = store

    def deliver(self, source: Source, *, prefix: bytes = b"", key: str,
                folder: str = INBOX) -> StoredMessage:
        try:
            return super().deliver(source, prefix=prefix, key=key, folder=folder)
        except FileNotFoundError:
            self._store._forget(self.inbox)
            raise

"""Local submission by users who may not write the queue: the maildrop and its pickup.

``mailyard sendmail`` writes straight into the queue when it can (the data directory's
owner, as the server runs it).  Any other local user cannot, and must not be able to:
a user who can write ``queue/`` can forge or destroy anyone's mail.  Such users drop
the message into a directory that only accepts new files, and the server takes it
from there, as Postfix's ``postdrop``/``pickup`` pair does::

    <data_dir>/                 0711 at least: others may pass through, not list it
    <data_dir>/maildrop/        1733: anyone may create a file, nobody but the owner
                                lists it, and (sticky) nobody removes another's file
    <data_dir>/pickup/taken/    0700: files the pickup has taken, named by queue id
    <data_dir>/pickup/bad/      0700: files that were refused, kept for the operator

Why a directory and not a local socket with ``SO_PEERCRED``: the directory needs no
protocol, no listener and no running server (mail dropped while the server is down
is picked up when it starts, exactly like mail queued directly), and the kernel
records who wrote each file (``st_uid``) as reliably as it reports a socket peer.

**What is trusted.**  Only the file's owner, which the kernel sets and the user cannot
change; it names the submitter in the ``Received:`` line ("from user NAME") and as
the envelope's submitter.  The content is not trusted: a drop file is opened with
``O_NOFOLLOW|O_NONBLOCK`` and must be a regular file with one link (a hard link to
someone else's file would otherwise be mailed out in that person's name) and at
most ``smtpd.max_message_size`` (plus the small envelope line).  Its envelope is
checked like the command line's, and the message gets the same treatment as
``mailyard sendmail`` gives it (:func:`prepare_local_message`, then ingest as a
``LOCAL`` submission: the trace field, Date and Message-ID, the limits).  What is queued is
what was read through that descriptor; the rename into the private ``taken/`` then
checks that the name still refers to the same inode (a file swapped in meanwhile
is handled on its own at the next round).
A refused file moves to ``pickup/bad/`` with a log line.

**Exactly once.**  After the file was read and checked, the queue id is reserved
before anything is written (:meth:`FileSpool.open_message`), and the drop file is
taken under that id::

    1. writer = ingest.open(...)                   queue id Q reserved, nothing durable
    2. rename maildrop/F -> pickup/taken/Q          fsync both directories
    3. write and commit the record                  queue/msg/Q durable and indexed
    4. unlink pickup/taken/Q                        fsync the directory

A file left in ``taken/`` (a crash, or a failed commit) is looked up by its name at
the next round: if the queue has ``Q`` (a file in ``msg/`` or a live index row),
step 3 completed and the file is only removed; otherwise the record was never
committed (its temporary file is swept) and the message is queued again under a new
id.  So a message is never lost: the drop file exists until the record does.  It is
not queued twice unless the process dies between steps 3 and 4 *after* the
dispatcher has already delivered the message to every recipient: step 4 runs as
soon as the commit returns, without yielding to the event loop, and the commit's
completion is scheduled before any delivery of the new message can finish, so
this needs a crash inside a window of a few microseconds that also contains a
whole delivery.  (The opposite order, unlinking first, could lose mail.)
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailyard.config import Config
from mailyard.ingest.api import Ingest, IngestRefused
from mailyard.ingest.pipeline import ingest_for
from mailyard.message.submit import (
    SubmissionError,
    from_field,
    is_valid_address,
    local_submission,
    prepare_local_message,
    user_name,
)
from mailyard.obs import log_event
from mailyard.queue.api import StorageError
from mailyard.queue.layout import fsync_dir
from mailyard.sending.limiter import SendLimiter, SendRefusal
from mailyard.sending.store import SqliteSendCounters, sending_db_path

log = logging.getLogger("mailyard.pickup")

MAGIC = b"MAILYARD-MAILDROP 1\n"
MAX_ENVELOPE_LINE = 256 * 1024  # the JSON line: sender, recipients, options
MAX_RECIPIENTS = 1000
POLL_INTERVAL = 1.0  # seconds between scans of the maildrop
DROP_MODE = 0o1733
PRIVATE_MODE = 0o700


class DropFileError(ValueError):
    """A drop file that cannot be accepted (the reason is logged)."""


@dataclass(frozen=True)
class MaildropPaths:
    data: Path

    @property
    def maildrop(self) -> Path:
        return self.data / "maildrop"

    @property
    def taken(self) -> Path:
        return self.data / "pickup" / "taken"

    @property
    def bad(self) -> Path:
        return self.data / "pickup" / "bad"

    def prepare(self) -> None:
        """Create the directories with their modes (run by the server, as the data
        directory's owner).  The data directory gains the search bits for others
        (never read or write), so that they can reach ``maildrop/``."""
        for d in (self.taken, self.bad):
            d.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
            os.chmod(d, PRIVATE_MODE)
        os.chmod(self.data / "pickup", PRIVATE_MODE)
        self.maildrop.mkdir(exist_ok=True)
        os.chmod(self.maildrop, DROP_MODE)  # mkdir's mode is cut by the umask
        mode = stat.S_IMODE(os.stat(self.data).st_mode)
        if mode & 0o011 != 0o011:
            os.chmod(self.data, mode | 0o011)


# --- the writing side (mailyard sendmail, as any user) ------------------------------

def encode_drop(sender: str, recipients: list[str], raw: bytes, *, full_name: str = "",
                strip_bcc: bool = True) -> bytes:
    meta = {"sender": sender, "recipients": recipients, "full_name": full_name,
            "strip_bcc": strip_bcc}
    return MAGIC + json.dumps(meta, ensure_ascii=False).encode("utf-8") + b"\n" + raw


def write_drop_file(maildrop: Path, data: bytes) -> str:
    """Write ``data`` into the maildrop under a unique name: a temporary name first
    (never picked up), fsync, then a rename to the final name.  Returns that name."""
    token = f"{os.getpid()}.{os.urandom(8).hex()}"
    tmp = maildrop / f".{token}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, maildrop / token)
    return token


# --- the reading side (the server) ---------------------------------------------------

def decode_drop(data: bytes) -> tuple[dict[str, Any], bytes]:
    if not data.startswith(MAGIC):
        raise DropFileError("not a maildrop file")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_ENVELOPE_LINE)
    if end < 0:
        raise DropFileError("envelope line missing or too long")
    try:
        meta = json.loads(data[len(MAGIC):end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DropFileError(f"bad envelope line: {exc}") from exc
    if not isinstance(meta, dict):
        raise DropFileError("bad envelope line")
    sender, recipients = meta.get("sender"), meta.get("recipients")
    full_name, strip_bcc = meta.get("full_name", ""), meta.get("strip_bcc", True)
    if not (isinstance(sender, str) and isinstance(recipients, list)
            and all(isinstance(r, str) for r in recipients)
            and isinstance(full_name, str) and isinstance(strip_bcc, bool)):
        raise DropFileError("envelope fields of the wrong type")
    if not recipients or len(recipients) > MAX_RECIPIENTS:
        raise DropFileError(f"between 1 and {MAX_RECIPIENTS} recipients needed")
    bad = [r for r in recipients if not is_valid_address(r)]
    if bad or (sender and not is_valid_address(sender)):
        raise DropFileError(f"not a valid address: {(bad or [sender])[0]!r}")
    try:
        from_field(full_name, sender or "x@invalid")  # checks the full name
    except SubmissionError as exc:
        raise DropFileError(str(exc)) from exc
    return {"sender": sender, "recipients": recipients, "full_name": full_name,
            "strip_bcc": strip_bcc}, data[end + 1:]


class MaildropPickup:
    """Moves dropped files into the queue (see the module docstring).  Runs in the
    supervisor, on the dispatcher's event loop; ``spool`` is its FileSpool, which the
    messages reach through ``ingest`` (by default one over ``spool``)."""

    def __init__(self, config: Config, spool: Any, ingest: Ingest | None = None,
                 limiter: SendLimiter | None = None) -> None:
        self.config = config
        self.spool = spool
        self.ingest = ingest or ingest_for(config, spool)
        self.paths = MaildropPaths(config.data_path)
        self.max_size = config.smtpd.max_message_size + len(MAGIC) + MAX_ENVELOPE_LINE
        # The envelope sender's sending limits: a file over them stays in the maildrop
        # until the limit allows it (``held``: file name -> time to look again).
        self.limiter = limiter or SendLimiter(
            SqliteSendCounters(sending_db_path(config.data_path)), config.sending)
        self.held: dict[str, float] = {}

    async def run(self) -> None:
        """Prepare the directories, then pick up every :data:`POLL_INTERVAL` seconds
        until cancelled."""
        self.paths.prepare()
        while True:
            try:
                await self.scan()
            except (OSError, StorageError) as exc:
                log_event(log, "maildrop pickup failed; retrying", level=logging.ERROR,
                          error=str(exc))
            await asyncio.sleep(POLL_INTERVAL)

    async def scan(self) -> int:
        """One round: leftovers in ``taken/`` first, then new files.  Returns how many
        messages were queued."""
        await self.recover()
        n = 0
        now = time.time()
        self.held = {k: t for k, t in self.held.items() if t > now}
        for name in sorted(os.listdir(self.paths.maildrop)):
            if name.startswith(".") or name in self.held:
                continue  # still being written under its temporary name, or held
            if await self._take_and_queue(self.paths.maildrop / name):
                n += 1
        return n

    async def recover(self) -> None:
        """Finish what a crash (or a failed commit) interrupted: files in ``taken/``
        (see the module docstring)."""
        for qid in sorted(os.listdir(self.paths.taken)):
            path = self.paths.taken / qid
            if self._queued(qid):
                os.unlink(path)
                fsync_dir(self.paths.taken)
                log_event(log, "maildrop file already queued; removed", qid=qid)
            else:
                await self._take_and_queue(path)

    def _queued(self, qid: str) -> bool:
        return (self.spool.layout.message_path(qid).exists()
                or self.spool.get(qid) is not None)

    async def _take_and_queue(self, source: Path) -> bool:
        """Queue the file at ``source`` (in ``maildrop/`` or ``taken/``).  True when
        it was queued, False when it was refused or vanished."""
        try:
            fd = _open_regular(source)
        except FileNotFoundError:
            return False
        except (DropFileError, OSError) as exc:
            self._refuse(source, str(exc))
            return False
        try:
            uid = os.fstat(fd).st_uid
            data = _read_limited(fd, self.max_size)
            meta, raw = decode_drop(data)
            user = user_name(uid)
            content = prepare_local_message(
                raw, user=user, strip_bcc=meta["strip_bcc"],
                sender=meta["sender"], full_name=meta["full_name"])
            submission = local_submission(meta["sender"], meta["recipients"], content, user)
            self.ingest.check(submission, content)  # the size limit, a Received loop
            ino = os.fstat(fd).st_ino
        except (DropFileError, SubmissionError, IngestRefused) as exc:
            self._refuse(source, str(exc))
            return False
        finally:
            os.close(fd)
        sender, count = meta["sender"], len(meta["recipients"])
        if source.parent == self.paths.maildrop and sender:
            refusal = await self._limits("check", sender, count)
            if isinstance(refusal, SendRefusal):
                self.held[source.name] = time.time() + refusal.retry_after
                log_event(log, "maildrop message held by sending limit", file=source.name,
                          user=user, sender=sender, reply=str(refusal.reply))
                return False
        writer = self.ingest.open(submission)  # step 1: the queue id
        committed = False
        try:
            taken = self.paths.taken / writer.qid
            os.rename(source, taken)  # step 2
            fsync_dir(self.paths.taken)
            if source.parent != self.paths.taken:
                fsync_dir(source.parent)
            if os.lstat(taken).st_ino != ino:
                # Replaced between our read and the rename: what was read is not what
                # was taken.  The taken file is dealt with on its own, later.
                return False
            writer.write(content)
            await writer.commit()  # step 3
            committed = True
            os.unlink(taken)  # step 4, without yielding (see the module docstring)
            fsync_dir(self.paths.taken)
        except FileNotFoundError:
            return False  # the user removed it before the rename: nothing was sent
        finally:
            if not committed:
                writer.abort()
        if sender:
            await self._limits("record", sender, count)
        log_event(log, "maildrop message queued", qid=writer.qid, user=user,
                  uid=uid, sender=meta["sender"], recipients=len(meta["recipients"]),
                  size=len(content))
        return True

    async def _limits(self, call: str, sender: str, recipients: int) -> SendRefusal | None:
        """The limiter's ``check`` or ``record``, in a thread; a store that fails is
        logged and lets the message through."""
        try:
            result: SendRefusal | None = await asyncio.to_thread(
                getattr(self.limiter, call), sender, recipients)
        except (sqlite3.Error, OSError) as exc:
            log_event(log, "sending limits unavailable", level=logging.WARNING,
                      error=str(exc))
            return None
        return result

    def _refuse(self, path: Path, reason: str) -> None:
        target = self.paths.bad / path.name
        n = 0
        while os.path.lexists(target):
            n += 1
            target = self.paths.bad / f"{path.name}.{n}"
        try:
            os.rename(path, target)
            fsync_dir(self.paths.bad)
        except FileNotFoundError:
            return
        except OSError as exc:
            log_event(log, "maildrop file refused but not moved", level=logging.ERROR,
                      file=path.name, reason=reason, error=str(exc))
            return
        log_event(log, "maildrop file refused", level=logging.ERROR, file=path.name,
                  reason=reason, moved_to=str(target))


def _read_limited(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(1 << 20, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise DropFileError(f"file over the size limit ({limit} bytes)")


def _open_regular(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DropFileError("a symbolic link") from exc
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise DropFileError("not a regular file with a single link")
    return fd

"""Where the file spool keeps things, and the directory-level operations on them.

::

    <root>/msg/<qid>                  committed records (one flat directory, so one
                                      directory fsync covers every rename of a batch)
    <root>/tmp/<qid>.<owner>.tmp      records being written by process <owner>
    <root>/corrupt/<qid>[.<n>]        records that failed validation, kept for the operator
    <root>/index.db                   the SQLite index (plus -wal and -shm, and -lock:
                                      its writers' lock)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from mailyard.obs import log_event
from mailyard.queue.api import StorageError

log = logging.getLogger("mailyard.queue")

TEMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class SpoolLayout:
    root: Path

    @property
    def msg_dir(self) -> Path:
        return self.root / "msg"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def corrupt_dir(self) -> Path:
        return self.root / "corrupt"

    @property
    def index_path(self) -> Path:
        return self.root / "index.db"

    def message_path(self, qid: str) -> Path:
        return self.msg_dir / qid

    def temp_path(self, qid: str, owner: str) -> Path:
        return self.tmp_dir / f"{qid}.{owner}{TEMP_SUFFIX}"

    def create(self) -> None:
        try:
            for d in (self.root, self.msg_dir, self.tmp_dir, self.corrupt_dir):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                make_private(d)
        except OSError as exc:
            raise StorageError(f"cannot create the queue directories in {self.root}: {exc}") \
                from exc

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a bad record to ``corrupt/`` (durably) and log it."""
        target = self.corrupt_dir / path.name
        n = 0
        while target.exists():
            n += 1
            target = self.corrupt_dir / f"{path.name}.{n}"
        os.rename(path, target)
        fsync_dir(self.corrupt_dir)
        fsync_dir(path.parent)
        log_event(log, "queue file quarantined", level=logging.ERROR, file=path.name,
                  reason=reason, moved_to=str(target))
        return target


def make_private(path: Path) -> None:
    """Take group and other permissions away from ``path`` if it has any (a spool made
    with a looser umask, or by an older version, is repaired at open)."""
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, st.st_mode & 0o700)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_if_present(path: Path | str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True

"""One ``mailyard serve`` per data directory.

Two servers on the same data_dir would sweep and deliver the same queue and bind
each other's ports; until several nodes are supported on purpose, the second one is
refused. The lock is an ``flock`` on ``<data_dir>/serve.lock``, held by the supervisor
for as long as it runs: the kernel releases it when the process ends, however it ends,
so a crash never leaves a stale lock behind. The file holds the holder's pid, for the
message only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "serve.lock"


class AlreadyRunning(Exception):
    """Another ``mailyard serve`` holds the data directory."""


def acquire_serve_lock(data_dir: Path) -> int:
    """Take the lock and return its descriptor (keep it open while serving)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise AlreadyRunning(
            f"another mailyard serve (pid {holder}) is already running on {data_dir}; "
            "stop it first, or give this one its own data_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd

"""The queue holds every envelope: its directories are 0700 and its index files 0600,
whatever the umask, and a spool made looser is repaired when opened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mailyard.queue.spool import FileSpool


def test_spool_is_private_despite_a_loose_umask(tmp_path: Path):
    root = tmp_path / "queue"
    root.mkdir(mode=0o755)
    (root / "msg").mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        for name in ("index.db", "index.db-wal", "index.db-shm", "index.db-lock"):
            (root / name).touch()
            (root / name).chmod(0o644)
        spool = FileSpool(root, "mx.example.test")
        spool.sweep()
    finally:
        os.umask(old)
    for path in [root, *root.iterdir()]:
        want = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_new_index_is_private(tmp_path: Path):
    old = os.umask(0o022)
    try:
        FileSpool(tmp_path / "queue", "mx.example.test")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "queue" / "index.db").stat().st_mode) == 0o600

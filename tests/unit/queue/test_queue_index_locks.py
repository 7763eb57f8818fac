"""The queue index keeps its SQLite locks when the same process opens it again.

The supervisor, its queue thread and the CLI each open the index; a process that
opened a database file by hand and closed the descriptor would drop every POSIX lock
its connections hold (sqlite.org/howtocorrupt.html 2.2), and the next process to close
its connection would checkpoint and delete the WAL under the others: "database disk
image is malformed".  Opening the index a second time must never do that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mailyard
from mailyard.queue.index import QueueIndex

_OTHER_PROCESS = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("SELECT count(*) FROM messages").fetchone()
db.close()
"""


def test_a_second_index_in_the_process_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    first = QueueIndex(path)
    first.insert([])  # a write: the WAL now exists, with this process's lock on it
    assert Path(f"{path}-wal").exists()
    second = QueueIndex(path)  # as another thread or component of the same process does
    env = dict(os.environ)
    src = str(Path(mailyard.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    # Another process opens and closes the database: it must see it in use.
    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(path)], env=env, check=True,
                   timeout=60)
    assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    first.close()
    second.close()


def test_a_new_index_file_is_private(tmp_path: Path) -> None:
    QueueIndex(tmp_path / "index.db").close()
    assert (tmp_path / "index.db").stat().st_mode & 0o777 == 0o600

"""The queue index's SQLite locks: kept when the same process opens it again, and
waited for (briefly, by polling) when another writer holds them.

The supervisor, its queue thread and the CLI each open the index; a process that
opened a database file by hand and closed the descriptor would drop every POSIX lock
its connections hold (sqlite.org/howtocorrupt.html 2.2), and the next process to close
its connection would checkpoint and delete the WAL under the others: "database disk
image is malformed".  Opening the index a second time must never do that.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mailyard
from mailyard.envelope import Envelope, Recipient
from mailyard.queue.api import StorageError
from mailyard.queue.index import NewMessage, QueueIndex
from mailyard.sqlitedb import begin_immediate

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


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    return conn


def new_message() -> NewMessage:
    return NewMessage("Q1", time.time(), 10, Envelope(
        sender="a@example.test", recipients=(Recipient("b@example.test"),)))


def test_the_lock_is_taken_once_released(tmp_path: Path) -> None:
    holder, waiter = connect(tmp_path / "db"), connect(tmp_path / "db")
    holder.execute("BEGIN IMMEDIATE")
    thread = threading.Timer(0.05, lambda: holder.execute("COMMIT"))
    start = time.monotonic()
    thread.start()
    begin_immediate(waiter, 5000)
    assert time.monotonic() - start >= 0.045  # it waited for the holder's COMMIT
    waiter.execute("INSERT INTO t VALUES (1)")
    waiter.execute("COMMIT")
    thread.join()
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_a_lock_never_released_ends_in_database_is_locked(tmp_path: Path) -> None:
    holder, waiter = connect(tmp_path / "db"), connect(tmp_path / "db")
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_immediate(waiter, 30)
    assert not waiter.in_transaction
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 30
    holder.execute("COMMIT")


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    conn = connect(tmp_path / "db")
    conn.execute("BEGIN")
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        begin_immediate(conn, 5000)


def test_queue_index_writers_in_two_processes_wait_for_each_other(tmp_path: Path) -> None:
    index = QueueIndex(tmp_path / "index.db")
    other = connect(tmp_path / "index.db")
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.05, lambda: other.execute("COMMIT"))
    timer.start()
    index.insert([new_message()])
    timer.join()
    claimed = index.claim_due(time.time() + 1, 10, time.time() + 60, "test")
    assert [e.qid for e in claimed] == ["Q1"]
    index.close()


def test_queue_index_reports_a_lock_that_stays_as_a_storage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mailyard.queue.index.BUSY_TIMEOUT_MS", 30)
    index = QueueIndex(tmp_path / "index.db")
    other = connect(tmp_path / "index.db")
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StorageError, match="locked"):
        index.insert([new_message()])
    other.execute("COMMIT")
    index.close()

"""The queue index's locks: SQLite's kept when the same process opens it again; the
writers' lock (``index.db-lock``) waited for, in one process and across processes; a
writer that skips it (the ``sqlite3`` shell) waited for by SQLite's busy timeout.

The supervisor, its queue thread and the CLI each open the index; a process that
opened a database file by hand and closed the descriptor would drop every POSIX lock
its connections hold (sqlite.org/howtocorrupt.html 2.2), and the next process to close
its connection would checkpoint and delete the WAL under the others: "database disk
image is malformed".  Opening the index a second time must never do that.
"""

from __future__ import annotations

import fcntl
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
from mailyard.sqlitedb import WriterLock

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


def test_a_writer_waits_for_the_lock_in_the_same_process(tmp_path: Path) -> None:
    index = QueueIndex(tmp_path / "index.db")
    holder = WriterLock(tmp_path / "index.db-lock", tmp_path / "index.db")
    holder.__enter__()
    timer = threading.Timer(0.05, holder.__exit__)
    start = time.monotonic()
    timer.start()
    index.insert([new_message()])
    assert time.monotonic() - start >= 0.045  # it slept until the holder let go
    timer.join()
    assert [e.qid for e in index.claim_due(time.time() + 1, 10, time.time() + 60, "t")] == [
        "Q1"]
    holder.close()
    index.close()


_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
fcntl.flock(fd, fcntl.LOCK_UN)
print("dropped", flush=True)
sys.stdin.readline()
"""


def test_a_writer_waits_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    index = QueueIndex(tmp_path / "index.db")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, f"{tmp_path}/index.db-lock"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    writer = threading.Thread(target=index.insert, args=([new_message()],))
    try:
        assert holder.stdout.readline() == "held\n"
        writer.start()
        writer.join(0.2)
        assert writer.is_alive()  # waiting for the other process
        holder.stdin.write("drop\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "dropped\n"
        writer.join(10)
        assert not writer.is_alive()  # woken once the lock was dropped
        assert holder.poll() is None  # and not because the other process ended
    finally:
        holder.kill()
        holder.wait()
        writer.join(10)
    assert [e.qid for e in index.claim_due(time.time() + 1, 10, time.time() + 60, "t")] == [
        "Q1"]
    index.close()


def test_the_lock_is_dropped_when_a_transaction_fails(tmp_path: Path) -> None:
    index = QueueIndex(tmp_path / "index.db")
    with pytest.raises(StorageError), index._write() as db:
        db.execute("INSERT INTO no_such_table VALUES (1)")
    fd = os.open(tmp_path / "index.db-lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: raises if still held
    os.close(fd)
    index.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_lock_file_made_by_root_belongs_to_the_index_owner(tmp_path: Path) -> None:
    QueueIndex(tmp_path / "index.db").close()
    (tmp_path / "index.db-lock").unlink()
    os.chown(tmp_path / "index.db", 65534, 65534)
    QueueIndex(tmp_path / "index.db").close()  # as a CLI command run by root
    lock = (tmp_path / "index.db-lock").stat()
    assert (lock.st_uid, lock.st_gid, lock.st_mode & 0o777) == (65534, 65534, 0o600)


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

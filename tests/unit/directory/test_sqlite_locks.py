"""The directory database keeps its SQLite locks while another process writes.

POSIX locks belong to a process and a file: closing any descriptor of the database
drops every lock the process's connections hold.  A process that opens a connection
per thread (an SMTP worker, the dispatcher) must still hold its locks, or a CLI
command that closes its connection believes it is the last user, checkpoints and
deletes the WAL under the running server (sqlite.org/howtocorrupt.html 2.2).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from argon2 import PasswordHasher

import mailyard
from mailyard.config import Config
from mailyard.directory.sqlite import SqliteDirectory

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

# Runs in a separate interpreter, like `mailyard user passwd` and `mailyard user delete`.
_CLI_CHANGES = """
import sys
from argon2 import PasswordHasher
from mailyard.config import Config
from mailyard.directory.sqlite import SqliteDirectory
config = Config(hostname="mx.example.test", data_dir=sys.argv[2],
                local_domains=("example.test", "config.test"))
d = SqliteDirectory(sys.argv[1], config,
                    hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
d.set_password("alice@example.test", "new-secret")
d.delete_user("bob@example.test")
d.add_user("carol@example.test", "carol-pw")
d.close()
"""


def _run_other_process(path: Path, data_dir: Path) -> None:
    env = dict(os.environ)
    src = str(Path(mailyard.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    subprocess.run([sys.executable, "-c", _CLI_CHANGES, str(path), str(data_dir)],
                   env=env, check=True, timeout=60)


def test_changes_by_another_process_reach_every_thread_and_keep_the_wal(
        tmp_path: Path, config: Config) -> None:
    directory = SqliteDirectory(tmp_path / "directory.db", config, hasher=FAST_HASHER,
                                refresh_each_lookup=False)
    directory.add_user("alice@example.test", "old-secret")
    directory.add_user("bob@example.test", "bob-pw")

    # Threads that each open and keep their own connection, as the password-check
    # and local-delivery threads of a worker do.
    opened = threading.Barrier(4)
    changed = threading.Event()
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def thread_body(name: str) -> None:
        try:
            assert directory.verify_password("alice@example.test", "old-secret")
            assert directory.recipient_exists("bob@example.test")
            opened.wait(30)
            assert changed.wait(60)
            directory.refresh()
            results[name] = (
                directory.verify_password("alice@example.test", "old-secret"),
                directory.verify_password("alice@example.test", "new-secret"),
                directory.verify_password("bob@example.test", "bob-pw"),
                directory.recipient_exists("bob@example.test"),
                directory.recipient_exists("carol@example.test"),
                directory.scram_credentials("bob@example.test"),
            )
            directory.close()
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=thread_body, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    opened.wait(30)  # four connections are open in this process (main thread too)

    _run_other_process(directory.path, tmp_path)

    # The other process closed its connection; this one still has its connections
    # open, so the WAL and the shared-memory index must still be there.
    wal = Path(f"{directory.path}-wal")
    shm = Path(f"{directory.path}-shm")
    assert wal.exists() and shm.exists()

    changed.set()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    expected = (False, True, False, False, True, None)
    assert results == {"t0": expected, "t1": expected, "t2": expected}

    directory.refresh()
    assert not directory.verify_password("alice@example.test", "old-secret")
    assert directory.verify_password("alice@example.test", "new-secret")
    assert not directory.recipient_exists("bob@example.test")
    assert directory.recipient_exists("carol@example.test")
    assert wal.exists() and shm.exists()

    check = sqlite3.connect(directory.path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        check.close()
    directory.close()


def test_new_database_file_is_private_and_existing_file_untouched(
        tmp_path: Path, config: Config) -> None:
    path = tmp_path / "sub" / "directory.db"
    directory = SqliteDirectory(path, config, hasher=FAST_HASHER)
    directory.add_user("alice@example.test", "pw")
    assert path.stat().st_mode & 0o777 == 0o600
    assert Path(f"{path}-wal").stat().st_mode & 0o777 == 0o600
    directory.close()

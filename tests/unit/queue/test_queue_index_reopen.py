"""The queue index keeps its SQLite locks when a process opens a second connection.

A spool process holds two index connections (one for the scheduler and the operator
commands, one opened later for its commits).  POSIX locks belong to a process and a
file: had opening the second one opened and closed a descriptor of the database, the
first one's locks would be gone, and a CLI command closing its own connection would
believe it was the last user, checkpoint and delete the WAL under the running server;
the server's later writes would then go to the deleted file, unseen by
``mailyard queue list`` (sqlite.org/howtocorrupt.html 2.2).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mailyard
from mailyard.queue.index import NewMessage, QueueIndex
from tests.unit.queue.conftest import make_envelope

# Runs in a separate interpreter, like `mailyard queue list`.
_CLI_LIST = """
import sys
from pathlib import Path
from mailyard.queue.index import QueueIndex
index = QueueIndex(Path(sys.argv[1]))
print(",".join(sorted(e.qid for e in index.all_entries())))
index.close()
"""


def _list_in_other_process(path: Path) -> list[str]:
    env = dict(os.environ)
    src = str(Path(mailyard.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", _CLI_LIST, str(path)], env=env,
                         check=True, timeout=60, capture_output=True, text=True).stdout
    return [q for q in out.strip().split(",") if q]


def _message(qid: str) -> NewMessage:
    return NewMessage(qid, 1_700_000_000.0, 10, make_envelope("a@example.net"))


def test_a_second_connection_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    first = QueueIndex(path)
    first.insert([_message("Q1")])
    second = QueueIndex(path)  # as the spool's commit path does, in the same process
    try:
        assert _list_in_other_process(path) == ["Q1"]
        # The other process did not take the WAL away: what this process writes next
        # is seen by the next command.
        assert Path(f"{path}-wal").exists()
        second.insert([_message("Q2")])
        first.insert([_message("Q3")])
        assert _list_in_other_process(path) == ["Q1", "Q2", "Q3"]
    finally:
        second.close()
        first.close()

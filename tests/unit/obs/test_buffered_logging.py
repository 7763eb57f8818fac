"""The buffered log handler of the SMTP workers: lines are late by at most a moment,
never lost on a clean exit, and warnings are written at once."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailyard.obs import FLUSH_DELAY, log_event, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger("mailyard")
    saved = root.handlers[:], root.level, root.propagate
    switches = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
    saved_switches = {name: getattr(logging, name) for name in switches}
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level, root.propagate = saved
    for name, value in saved_switches.items():
        setattr(logging, name, value)


def wait_for(path: Path, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.01)
    raise AssertionError(f"{text!r} not in {path} after {timeout}s")


def test_info_lines_arrive_within_the_flush_delay(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "mailyard.log"
    setup_logging("text", "info", str(log_file), buffered=True)
    log = logging.getLogger("mailyard.smtpd")
    started = time.monotonic()
    log_event(log, "smtp transaction", qid="Q1", result="queued")
    content = wait_for(log_file, "qid=Q1")
    assert time.monotonic() - started < FLUSH_DELAY + 2.0
    assert "info mailyard.smtpd: smtp transaction qid=Q1 result=queued" in content


def test_a_warning_flushes_everything_before_it(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "mailyard.log"
    setup_logging("json", "info", str(log_file), buffered=True)
    log = logging.getLogger("mailyard.smtpd")
    log_event(log, "smtp transaction", qid="Q1")
    log_event(log, "spool commit failed", level=logging.WARNING, qid="Q2")
    lines = log_file.read_text().splitlines()  # no waiting: written by the warning
    assert len(lines) == 2 and '"Q1"' in lines[0] and '"Q2"' in lines[1]


def test_no_line_lost_on_a_clean_exit(tmp_path: Path) -> None:
    log_file = tmp_path / "mailyard.log"
    program = (
        "import logging\n"
        "from mailyard.obs import log_event, setup_logging\n"
        f"setup_logging('text', 'info', {str(log_file)!r}, buffered=True)\n"
        "log = logging.getLogger('mailyard.smtpd')\n"
        "for i in range(500):\n"
        "    log_event(log, 'smtp transaction', n=i)\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
    lines = log_file.read_text().splitlines()
    assert [line.rsplit("n=", 1)[1] for line in lines] == [str(i) for i in range(500)]


def test_buffered_standard_error(tmp_path: Path) -> None:
    """Without a log file the worker logs to standard error, buffered the same way."""
    program = (
        "import logging\n"
        "from mailyard.obs import log_event, setup_logging\n"
        "setup_logging('text', 'info', '', buffered=True)\n"
        "log_event(logging.getLogger('mailyard.smtpd'), 'worker started', pid=1)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          check=True, timeout=60)
    assert "info mailyard.smtpd: worker started pid=1" in done.stderr

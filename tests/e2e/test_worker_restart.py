"""A worker that dies is restarted, and the server keeps accepting and delivering."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import time

import pytest

from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e


def _workers(supervisor_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor_pid), "-f", "mailyard.daemon.worker"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_killed_worker_is_replaced(tmp_path):
    with MailyardServer(tmp_path, domains=("example.test",), workers=1) as srv:
        srv.add_user("u@example.test", "pw")
        [first] = _workers(srv.proc.pid)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = _workers(srv.proc.pid)
            if now and now != [first]:
                break
            time.sleep(0.1)
        assert now and first not in now
        deadline = time.monotonic() + 10
        while not srv._banner_ok(srv.ports["smtp"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
            s.sendmail("a@remote.test", ["u@example.test"], "Subject: after\r\n\r\nhi\r\n")
        assert srv.wait_for_messages("u@example.test", 1)
        assert "worker exited; restarting" in srv.output()

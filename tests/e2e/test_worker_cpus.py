"""``[smtpd] cpu_affinity``: each SMTP worker of a running server on a CPU of its own,
its threads included, or (``"none"``) wherever the scheduler puts it."""

from __future__ import annotations

import os
import smtplib
import subprocess
from pathlib import Path

import pytest

from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")]


def _workers(supervisor_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor_pid), "-f", "mailyard.daemon.worker"],
                         capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


def _cpus_of_every_thread(pid: int) -> list[frozenset[int]]:
    return [frozenset(os.sched_getaffinity(int(tid.name)))
            for tid in Path(f"/proc/{pid}/task").iterdir()]


def _send(srv: MailyardServer) -> None:
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.sendmail("a@remote.test", ["u@example.test"], "Subject: hi\r\n\r\nhi\r\n")


def test_each_smtp_worker_keeps_to_a_cpu_of_its_own(tmp_path):
    mask = sorted(os.sched_getaffinity(0))[:2]
    srv = MailyardServer(tmp_path, workers=2)
    srv.launcher = ["taskset", "-c", ",".join(map(str, mask))]  # the server's mask
    with srv:
        srv.add_user("u@example.test", "pw")
        _send(srv)  # the commit threads exist once a message was queued
        assert srv.wait_for_messages("u@example.test", 1)
        workers = _workers(srv.proc.pid)
        assert len(workers) == 2
        kept = []
        for pid in workers:
            threads = _cpus_of_every_thread(pid)
            assert len(set(threads)) == 1, threads  # every thread of a worker alike
            kept.append(threads[0])
        assert sorted(kept, key=min) == [frozenset({mask[0]}), frozenset({mask[1]})]
        assert os.sched_getaffinity(srv.proc.pid) == set(mask)  # the supervisor is free
        assert (tmp_path / "mailyard.log").read_text().count("worker keeps to a cpu") == 2


def test_with_none_the_workers_run_anywhere_the_server_may(tmp_path):
    with MailyardServer(tmp_path, workers=2,
                        overrides={"smtpd": {"cpu_affinity": "none"}}) as srv:
        srv.add_user("u@example.test", "pw")
        _send(srv)
        assert srv.wait_for_messages("u@example.test", 1)
        mask = os.sched_getaffinity(srv.proc.pid)
        for pid in _workers(srv.proc.pid):
            assert set(_cpus_of_every_thread(pid)) == {frozenset(mask)}
        assert "worker keeps to a cpu" not in (tmp_path / "mailyard.log").read_text()

"""Which CPU each SMTP worker keeps to (``[smtpd] cpu_affinity``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mailyard.config import ConfigError, CpuAffinity, config_from_dict
from mailyard.daemon.cpus import allowed_cpus, keep_to_cpu, worker_cpus

AUTO, NONE = CpuAffinity.AUTO, CpuAffinity.NONE


def test_auto_gives_each_worker_a_cpu_of_the_mask_in_order() -> None:
    assert worker_cpus(AUTO, 2, [0, 1]) == [0, 1]
    assert worker_cpus(AUTO, 2, [2, 5, 7]) == [2, 5]  # a cpuset: its CPUs, not 0 and 1
    assert worker_cpus(AUTO, 1, [0, 1, 2, 3]) == [0]


def test_auto_leaves_the_scheduler_to_decide_with_one_cpu_or_more_workers_than_cpus() -> None:
    assert worker_cpus(AUTO, 1, [3]) == [None]
    assert worker_cpus(AUTO, 3, [0, 1]) == [None, None, None]


def test_none_keeps_no_worker() -> None:
    assert worker_cpus(NONE, 2, [0, 1]) == [None, None]


def test_the_mask_is_this_process_s_affinity() -> None:
    assert allowed_cpus() == sorted(os.sched_getaffinity(0))


def test_a_cpu_the_system_refuses_is_a_message_and_changes_nothing() -> None:
    before = os.sched_getaffinity(0)
    error = keep_to_cpu(4095)  # no such CPU here
    assert error is not None and error.startswith("cannot keep to CPU 4095: ")
    assert os.sched_getaffinity(0) == before


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_keeping_to_a_cpu_holds_for_threads_started_later() -> None:
    cpu = max(os.sched_getaffinity(0))
    code = ("import os, sys, threading\n"
            "from mailyard.daemon.cpus import keep_to_cpu\n"
            f"assert keep_to_cpu({cpu}) is None\n"
            "seen = []\n"
            "t = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))\n"
            "t.start(); t.join()\n"
            "print(sorted(os.sched_getaffinity(0)), sorted(seen[0]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split("\n")[0] == f"[{cpu}] [{cpu}]"


def test_the_setting_takes_the_two_values_only() -> None:
    assert config_from_dict({"smtpd": {"cpu_affinity": "none"}}).smtpd.cpu_affinity is NONE
    assert config_from_dict({}).smtpd.cpu_affinity is AUTO
    with pytest.raises(ConfigError, match="cpu_affinity"):
        config_from_dict({"smtpd": {"cpu_affinity": "all"}})

"""bench/benchlib.py: the TOML writer, /proc sampling and round merging."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import benchlib  # noqa: E402

from mailyard.config import parse_config  # noqa: E402


def test_generated_config_is_valid_mailyard_toml(tmp_path: Path) -> None:
    server = benchlib.MailyardServer(tmp_path, {
        "local_domains": ["bench.test"],
        "smtpd": {"workers": 2, "max_connections_per_ip": 1100},
        "delivery": {"defer_all": True,
                     "transports": [{"domain": "bench.test", "nexthop": "127.0.0.1:2600",
                                     "tls": "none"}]},
    }, port=2500)
    text = benchlib.to_toml(server.config)
    assert tomllib.loads(text)["listen"]["smtp"] == ["127.0.0.1:2500"]
    cfg = parse_config(text)
    assert cfg.delivery.defer_all is True
    assert cfg.delivery.transports[0].nexthop == "127.0.0.1:2600"
    assert cfg.smtpd.max_connections_per_ip == 1100
    assert cfg.local_domains == ("bench.test",)


def test_toml_strings_are_escaped() -> None:
    assert tomllib.loads(benchlib.to_toml({"k": 'a"b\\c'}))["k"] == 'a"b\\c'
    with pytest.raises(TypeError):
        benchlib.to_toml({"k": object()})


def test_tree_sampling_sees_child_processes() -> None:
    code = ("import subprocess,sys; "
            "subprocess.run([sys.executable,'-c','import time; time.sleep(30)'])")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(100):
            pids = benchlib.tree_pids(parent.pid)
            if len(pids) == 2:
                break
            subprocess.run(["sleep", "0.05"])
        assert len(pids) == 2 and pids[0] == parent.pid
        rss, pss = benchlib.tree_memory_kb(pids)
        assert rss > 1000 and 0 < pss <= rss
        # The cheap RSS of the samples between two full ones (statm) is the same figure.
        assert abs(benchlib.tree_rss_kb(pids) - rss) <= rss // 10
        assert benchlib.tree_rss_kb([*pids, 2 ** 22 + 1]) > 0  # a process gone counts 0
        sampler = benchlib.ProcessTreeSampler(parent.pid, interval=0.01, full_every=5).start()
        for _ in range(100):
            if sampler.usage.samples > 10:
                break
            subprocess.run(["sleep", "0.02"])
        usage = sampler.stop()
        assert usage.samples > 10
        assert usage.peak_processes == 2 and usage.peak_rss_kb >= usage.baseline_rss_kb > 0
        assert usage.peak_pss_kb > 0
    finally:
        for pid in reversed(benchlib.tree_pids(parent.pid)):
            subprocess.run(["kill", str(pid)])
        parent.wait(10)


def test_combine_rounds_reports_the_median_round() -> None:
    rounds = [{"ok": True, "msgs_per_s": r, "error": ""} for r in (300.0, 100.0, 200.0)]
    merged = benchlib.combine_rounds("x", rounds)
    assert merged["ok"] and merged["msgs_per_s"] == 200.0
    assert (merged["msgs_per_s_min"], merged["msgs_per_s_max"]) == (100.0, 300.0)
    failed = benchlib.combine_rounds("x", rounds + [{"ok": False, "error": "boom"}])
    assert not failed["ok"] and failed["error"] == "boom" and len(failed["rounds"]) == 4


def test_spread_out_sets_the_top_directory_flag(tmp_path: Path) -> None:
    if not benchlib.spread_out(tmp_path):
        pytest.skip("chattr +T not supported here (not ext4, or no chattr)")
    flags = subprocess.run(["lsattr", "-d", str(tmp_path)], capture_output=True,
                           text=True, check=True).stdout.split()[0]
    assert "T" in flags


def test_spread_out_reports_failure(tmp_path: Path) -> None:
    assert benchlib.spread_out(tmp_path / "missing") is False


def test_host_cpu_share_splits_the_machine_s_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # user nice system idle iowait irq softirq steal
    before = [100, 0, 50, 800, 50, 0, 0, 0]
    monkeypatch.setattr(benchlib, "host_cpu_times", lambda: [300, 0, 150, 1000, 50, 0, 0, 100])
    share = benchlib.host_cpu_share(before)
    assert share == {"idle_pct": 33.3, "steal_pct": 16.7}
    assert benchlib.host_note(share) == ", steal 16.7%, idle 33.3%"


def test_host_cpu_share_without_counters_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchlib, "host_cpu_times", lambda: [])
    assert benchlib.host_cpu_share([1, 2, 3, 4, 5, 6, 7, 8]) == {}
    assert benchlib.host_note({}) == ""


def test_host_cpu_times_reads_this_machine_s_counters() -> None:
    assert len(benchlib.host_cpu_times()) >= 8

"""``mailyard domain mta-sts`` and ``mailyard report tls`` through the real parser."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mailyard.cli.main import main
from mailyard.mtasts.policy import Mode, Policy, parse_policy, parse_record
from mailyard.tlsrpt.results import PolicyTag, PolicyType, ResultType
from mailyard.tlsrpt.store import TlsOutcomes


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "mailyard.toml"
    config.write_text(f'hostname = "mx.example.test"\ndata_dir = "{tmp_path / "data"}"\n')
    (tmp_path / "data").mkdir()

    def call(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(config)])
        out, err = capsys.readouterr()
        return code, out, err
    return call


def test_domain_mta_sts_prints_a_policy_senders_accept(run) -> None:
    code, out, _ = run("domain", "mta-sts", "example.test", "--mode", "enforce",
                       "--mx", "mx1.example.test", "--mx", "*.backup.example.test",
                       "--id", "20261201", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["policy_url"] == "https://mta-sts.example.test/.well-known/mta-sts.txt"
    policy = parse_policy(shown["policy"])
    assert isinstance(policy, Policy) and policy.mode is Mode.ENFORCE
    assert policy.allows("mx1.example.test") and policy.allows("b1.backup.example.test")
    assert shown["txt_name"] == "_mta-sts.example.test"
    assert parse_record([shown["txt"]]).id == "20261201"


def test_domain_mta_sts_defaults_to_testing_with_the_hostname(run) -> None:
    code, out, _ = run("domain", "mta-sts", "example.test")
    assert code == 0
    assert "mode: testing\nmx: mx.example.test\n" in out
    assert '_mta-sts.example.test. IN TXT "v=STSv1; id=' in out


@pytest.mark.parametrize("args", [["--mx", "bad host"], ["--id", "no-dashes"],
                                  ["--max-age", "0"]])
def test_domain_mta_sts_bad_input_is_a_usage_error(run, args) -> None:
    code, out, err = run("domain", "mta-sts", "example.test", *args)
    assert code == 2 and out == "" and err.startswith("mailyard: ")


def test_report_tls_lists_counts_per_domain(run, tmp_path: Path) -> None:
    assert run("report", "tls")[1].endswith("-- 0 row(s)\n")
    store = TlsOutcomes(tmp_path / "data" / "tls-rpt.db", clock=lambda: 1796083200.0)
    tag = PolicyTag("dest.test", PolicyType.STS, ("version: STSv1",))
    store.record(tag, "mx1.dest.test", "192.0.2.1", None)
    store.record(tag, "mx1.dest.test", "192.0.2.1", None)
    store.record(tag, "mx2.dest.test", "192.0.2.2", ResultType.STARTTLS_NOT_SUPPORTED)
    asyncio.run(store.flush())
    store.close()
    code, out, _ = run("report", "tls", "--json")
    assert code == 0
    assert json.loads(out) == [{"day": "2026-12-01", "domain": "dest.test", "policy": "sts",
                                "successful": 2, "failed": 1,
                                "failures": {"starttls-not-supported": 1}}]
    code, out, _ = run("report", "tls")
    assert "dest.test" in out and "starttls-not-supported 1" in out
    assert run("report", "tls", "--domain", "other.test")[1].endswith("-- 0 row(s)\n")

"""``mailyard check spf`` against a DNS server on loopback (``--dns``): the result
keyword first, the explanation, JSON, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailyard.cli.main import main
from tests.support.dnsserver import DnsTestServer

pytestmark = [pytest.mark.e2e]

ZONES = {
    "example.org": {"TXT": ["v=spf1 ip4:192.0.2.0/24 a:mx.example.org -all "
                            "exp=why.example.org"],
                    "MX": ["10 mx.example.org"]},
    "mx.example.org": {"A": ["198.51.100.25"], "AAAA": ["2001:db8::25"],
                       "TXT": ["v=spf1 a -all"]},
    "why.example.org": {"TXT": ["%{i} may not send for %{d}"]},
    "soft.example.org": {"TXT": ["v=spf1 ~all"]},
    "broken.example.org": {"TXT": ["v=spf1 ip4:192.0.2.300 -all"]},
    "down.example.org": {"TXT": ["v=spf1 -all"]},
}


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    server = DnsTestServer(ZONES)
    server.servfail("down.example.org")
    with server:
        yield server


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailyard.toml"
    path.write_text(f'hostname = "mx.example.net"\ndata_dir = "{tmp_path / "data"}"\n'
                    '[listen]\nsmtp = ["127.0.0.1:1"]\n[delivery]\n'
                    'dns_servers = ["127.0.0.1:1"]\ndns_timeout = 1.0\n')
    return path


def check(dns: DnsTestServer, config: Path, capsys: pytest.CaptureFixture[str],
          *args: str) -> tuple[int, str, str]:
    code = main(["check", "spf", *args, "--dns", dns.server_spec, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("ip", "sender", "first"), [
    ("192.0.2.7", "alice@example.org", "pass"),
    ("198.51.100.25", "alice@example.org", "pass"),
    ("203.0.113.9", "alice@example.org", "fail"),
    ("203.0.113.9", "bob@soft.example.org", "softfail"),
    ("203.0.113.9", "bob@nowhere.example.org", "none"),
    ("203.0.113.9", "bob@broken.example.org", "permerror"),
    ("203.0.113.9", "bob@down.example.org", "temperror"),
    ("2001:db8::25", "<>", "pass"),  # null sender: postmaster@HELO
])
def test_result_keyword_is_the_first_word(dns: DnsTestServer, config: Path,
                                          capsys: pytest.CaptureFixture[str], ip: str,
                                          sender: str, first: str) -> None:
    code, out, _ = check(dns, config, capsys, "--ip", ip, "--mail-from", sender,
                         "--helo", "mx.example.org")
    assert code == 0
    assert out.split()[0] == first, out


def test_fail_prints_the_domains_explanation(dns: DnsTestServer, config: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = check(dns, config, capsys, "--ip", "203.0.113.9", "--mail-from",
                         "alice@example.org", "--helo", "client.example.net")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("fail example.org does not designate 203.0.113.9")
    assert "explanation: 203.0.113.9 may not send for example.org" in lines


def test_json(dns: DnsTestServer, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = check(dns, config, capsys, "--ip", "192.0.2.7", "--mail-from",
                         "alice@example.org", "--helo", "client.example.net", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["result"] == "pass" and data["mechanism"] == "ip4:192.0.2.0/24"
    assert data["domain"] == "example.org" and data["identity"] == "mailfrom"


@pytest.mark.parametrize("args", [
    ["--mail-from", "a@example.org", "--helo", "h.example"],  # no --ip
    ["--ip", "192.0.2.1", "--helo", "h.example"],  # no --mail-from
    ["--ip", "192.0.2.1", "--mail-from", "a@example.org"],  # no --helo
    ["--ip", "192.0.2.300", "--mail-from", "a@example.org", "--helo", "h.example"],
    ["--ip", "x", "--mail-from", "a@example.org", "--helo", "h.example"],
    ["--ip", "192.0.2.1", "--mail-from", "no-at-sign", "--helo", "h.example"],
    ["--ip", "192.0.2.1", "--mail-from", "a\r\n@example.org", "--helo", "h.example"],
    ["--ip", "192.0.2.1", "--mail-from", "a@example.org", "--helo", ""],
    ["--ip", "192.0.2.1", "--mail-from", "a@example.org", "--helo", "h.example",
     "--dns", "dns.example:53"],
    ["--ip", "192.0.2.1", "--mail-from", "a@example.org", "--helo", "h.example",
     "--dns", "127.0.0.1:99999"],
])
def test_bad_arguments_one_line_exit_2(config: Path, capsys: pytest.CaptureFixture[str],
                                       args: list[str]) -> None:
    code = main(["check", "spf", *args, "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_installed_command(dns: DnsTestServer, config: Path) -> None:
    """The real program, as a user runs it."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "mailyard.cli.main", "check", "spf", "--ip", "203.0.113.9",
         "--mail-from", "alice@example.org", "--helo", "client.example.net", "--dns",
         dns.server_spec, "--config", str(config)],
        capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "fail"

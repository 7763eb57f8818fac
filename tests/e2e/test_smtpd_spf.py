"""End to end: SPF at MAIL FROM on port 25 (RFC 7208), over real SMTP, with the
server's DNS pointed at a DNS server on loopback.  The client connects from
127.0.0.1, which ``spf.skip_addresses`` is emptied of here (by default the host's
own connections are not checked, which keeps every other end-to-end test free of
DNS lookups)."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e

ZONES = {
    "good.example": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
    "bad.example": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all exp=why.bad.example"]},
    "why.bad.example": {"TXT": ["%{i} is not a mail server of %{d}"]},
    "soft.example": {"TXT": ["v=spf1 ~all"]},
    "broken.example": {"TXT": ["v=spf1 ip4:127.0.0.300 -all"]},
    "down.example": {"TXT": ["v=spf1 +all"]},
    "client.example": {"TXT": ["v=spf1 a:localhost.example -all"]},
    "localhost.example": {"A": ["127.0.0.1"]},
    "strict.example": {"TXT": ["v=spf1 -all"]},
    "loop.example": {"TXT": ["v=spf1 include:loop.example -all"]},
    "slow.example": {"TXT": ["v=spf1 +all"]},
}


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    server = DnsTestServer(ZONES)
    server.servfail("down.example")
    server.drop("slow.example")  # never answers
    with server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dns: DnsTestServer
           ) -> Iterator[MailyardServer]:
    srv = MailyardServer(tmp_path_factory.mktemp("spf"), overrides={
        "spf": {"skip_addresses": [], "temperror": "defer", "time_budget": 1.0},
        "delivery": {"dns_servers": [dns.server_spec], "dns_timeout": 0.5},
    })
    srv.add_user("alice@example.test", "alice-secret")
    with srv:
        yield srv


def mail_from(server: MailyardServer, sender: str, helo: str = "client.example"
              ) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        s.ehlo(helo)
        return s.mail(sender)


def send(server: MailyardServer, sender: str, marker: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        s.ehlo("client.example")
        s.sendmail(sender, ["alice@example.test"],
                   f"From: {sender}\r\nSubject: {marker}\r\n\r\nhello\r\n")


def log_line(server: MailyardServer, marker: str, timeout: float = 20.0) -> str:
    log = Path(server.root / "mailyard.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            if marker in line and "smtp transaction" in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no transaction log line with {marker!r}:\n{server.output()}")


def test_fail_is_refused_with_the_domains_explanation(server: MailyardServer) -> None:
    code, text = mail_from(server, "mallory@bad.example")
    assert code == 550
    assert text == b"5.7.23 SPF validation failed: 127.0.0.1 is not a mail server of bad.example"
    assert "spf=fail" in log_line(server, "mallory@bad.example")


def test_pass_is_delivered_and_recorded(server: MailyardServer) -> None:
    send(server, "bob@good.example", "spf-pass-marker")
    assert any(b"spf-pass-marker" in m
               for m in server.wait_for_messages("alice@example.test", 1))
    assert "spf=pass" in log_line(server, "bob@good.example")


def test_softfail_and_permerror_are_accepted_and_marked(server: MailyardServer) -> None:
    for sender, result in (("carol@soft.example", "softfail"),
                           ("dave@broken.example", "permerror"),
                           ("erin@loop.example", "permerror"),
                           ("frank@nowhere.example", "none")):
        assert mail_from(server, sender)[0] == 250
        send(server, sender, f"marker-{result}")
        assert f"spf={result}" in log_line(server, sender)


def test_temperror_is_deferred_when_configured(server: MailyardServer) -> None:
    code, text = mail_from(server, "gina@down.example")
    assert code == 451 and text.startswith(b"4.7.24 SPF validation error")


def test_a_silent_dns_server_costs_the_time_budget_not_the_session(
        server: MailyardServer) -> None:
    started = time.monotonic()
    code, text = mail_from(server, "hank@slow.example")
    assert code == 451 and text.startswith(b"4.7.24")
    assert time.monotonic() - started < 10  # the budget is 1 s; generous for a loaded host
    assert mail_from(server, "bob@good.example")[0] == 250  # the server goes on


def test_null_sender_checks_the_helo_name(server: MailyardServer) -> None:
    code, text = mail_from(server, "", helo="strict.example")
    assert code == 550 and text.startswith(b"5.7.23")
    assert mail_from(server, "", helo="good.example")[0] == 250


def test_helo_identity_is_checked_too(server: MailyardServer) -> None:
    """RFC 7208 2.3: a HELO fail refuses unless MAIL FROM passed; both are logged."""
    code, text = mail_from(server, "ivan@nowhere.example", helo="strict.example")
    assert code == 550 and text.startswith(b"5.7.23")
    assert mail_from(server, "judy@good.example", helo="strict.example")[0] == 250
    send(server, "kim@soft.example", "marker-helo")
    line = log_line(server, "kim@soft.example")
    assert "spf=softfail" in line and "spf_helo=pass" in line

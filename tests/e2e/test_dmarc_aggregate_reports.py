"""DMARC aggregate reports end to end (RFC 7489 7.2): two real ``mailyard serve`` over
loopback and a DNS server on loopback.

A publishes ``_dmarc.a.test`` with ``rua=mailto:dmarc-reports@a.test`` (the address
``mailyard domain records`` prints).  A's user mails B; B evaluates DMARC, records
the evaluation, and when its (short) report period is over mails its aggregate report
to A's rua, DKIM-signed, through its queue.  A delivers the report to the rua mailbox
and imports it: A's ``mailyard report dmarc`` lists B's report about A's mail without
a manual import, and B's ``mailyard report dmarc --sent`` lists what it sent."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import smtplib
import time
import tomllib
from collections.abc import Iterator

import pytest

from mailyard.dmarc.reports import AggregateReport, parse_aggregate_xml
from tests.support.certs import unverified_tls
from tests.support.dnsserver import DnsTestServer
from tests.support.mailyard_server import MailyardServer, render_toml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PASSWORD = "report-secret"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[MailyardServer, MailyardServer]]:
    root = tmp_path_factory.mktemp("dmarc-reports")
    dns = DnsTestServer({}).start()
    b = MailyardServer(root / "b", domains=("b.test",), hostname="mx.b.test", overrides={
        "dkim": {"verify": True},
        "dmarc": {"enabled": True, "reports": True, "report_interval": 3.0,
                  "report_sender": "dmarc-noreply@b.test",
                  "report_organization": "B Receiver"},
        "spf": {"skip_addresses": []},
        "delivery": {"dns_servers": [dns.server_spec], "dns_timeout": 2.0,
                     "retry_schedule": [1], "connect_timeout": 5.0},
    })
    a = MailyardServer(root / "a", domains=("a.test",), hostname="mx.a.test", overrides={
        "spf": {"skip_addresses": []},
        "delivery": {"dns_servers": [dns.server_spec], "dns_timeout": 2.0,
                     "transports": [{"domain": "b.test",
                                     "nexthop": f"127.0.0.1:{b.ports['smtp']}",
                                     "tls": "none"}],
                     "retry_schedule": [1], "connect_timeout": 5.0},
    })
    # B reaches A through a transport too (no MX lookups on loopback).
    config = tomllib.loads(b.config_path.read_text())
    config["delivery"]["transports"] = [{"domain": "a.test", "tls": "none",
                                         "nexthop": f"127.0.0.1:{a.ports['smtp']}"}]
    b.config_path.write_text(render_toml(config))
    a.add_user("alice@a.test", PASSWORD)
    a.add_user("dmarc-reports@a.test", PASSWORD)
    b.add_user("bob@b.test", PASSWORD)
    for server, domain in ((a, "a.test"), (b, "b.test")):
        server.cli("domain", "dkim", "rotate", domain)
        shown = json.loads(server.cli("domain", "dkim", "show", domain, "--json").stdout)
        for selector in shown["selectors"]:
            dns.set(selector["name"], "TXT", [selector["value"]])
        dns.set(domain, "TXT", ["v=spf1 ip4:127.0.0.1 -all"])
        dns.set(domain, "A", ["127.0.0.1"])
    dns.set("_dmarc.a.test", "TXT", ["v=DMARC1; p=reject; rua=mailto:dmarc-reports@a.test"])
    dns.set("_dmarc.b.test", "TXT", ["v=DMARC1; p=none"])
    try:
        with b, a:
            yield a, b
    finally:
        dns.stop()


def _wait(check, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def test_b_reports_to_a_and_a_imports_it(servers: tuple[MailyardServer, MailyardServer]) -> None:
    a, b = servers
    message = (b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hello\r\n\r\n"
               b"Hello Bob.\r\n")
    with smtplib.SMTP("127.0.0.1", a.ports["submission"], timeout=30) as client:
        client.starttls(context=unverified_tls())
        client.login("alice@a.test", PASSWORD)
        client.sendmail("alice@a.test", ["bob@b.test"], message)
    b.wait_for_messages("bob@b.test", 1, timeout=60)

    # B's period ends, the report goes to A's rua mailbox
    [report_mail] = a.wait_for_messages("dmarc-reports@a.test", 1, timeout=90)
    msg = email.message_from_bytes(report_mail, policy=email.policy.default)
    assert msg["Subject"].startswith("Report Domain: a.test Submitter: mx.b.test Report-ID: <")
    assert "DKIM-Signature" in msg and "d=b.test" in str(msg["DKIM-Signature"])
    (part,) = list(msg.iter_attachments())
    assert part.get_content_type() == "application/gzip"
    assert part.get_filename().startswith("mx.b.test!a.test!")
    report = parse_aggregate_xml(gzip.decompress(part.get_content()))
    assert isinstance(report, AggregateReport)
    assert (report.org_name, report.domain, report.policy) == ("B Receiver", "a.test", "reject")
    (row,) = report.rows
    assert (row.source_ip, row.count, row.disposition, row.dkim, row.spf) == (
        "127.0.0.1", 1, "none", "pass", "pass")

    # A imported it on delivery: listed without --import
    def listed() -> list[dict]:
        return json.loads(a.cli("report", "dmarc", "--json").stdout)
    rows = _wait(listed, 30)
    assert [(r["domain"], r["source_ip"], r["messages"], r["dmarc_pass"], r["reporters"])
            for r in rows] == [("a.test", "127.0.0.1", 1, 1, ["B Receiver"])]

    sent = json.loads(b.cli("report", "dmarc", "--sent", "--json").stdout)
    assert [(s["policy_domain"], s["messages"], s["recipients"]) for s in sent] == [
        ("a.test", 1, ["dmarc-reports@a.test"])]
    table = b.cli("report", "dmarc", "--sent").stdout.decode()
    assert "a.test" in table and "dmarc-reports@a.test" in table

"""``mailyard domain add|records|check`` through the real argument parser; ``check`` asks
a real DNS server on loopback (tests/support/dnsserver.py) with ``--dns`` and fetches
the MTA-STS policy over HTTPS from a loopback address on port 443 (a test CA)."""

from __future__ import annotations

import http.server
import json
import os
import random
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailyard.cli.main import main
from mailyard.dkim.keys import KeyAlgorithm, KeyStore, dns_record, generate
from tests.support.certs import TestCa, make_ca
from tests.support.dnsserver import DnsTestServer

Cli = Callable[..., tuple[int, str, str]]
DOMAIN = "example.test"
# The policy host's address: nothing listens there unless a test serves the policy.
HTTPS_IP = f"127.{random.randint(20, 250)}.{random.randint(1, 250)}.7"


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    return make_ca(tmp_path)


@pytest.fixture
def run(tmp_path: Path, ca: TestCa, capsys: pytest.CaptureFixture[str]) -> Cli:
    config_path = tmp_path / "mailyard.toml"
    config_path.write_text(
        f'hostname = "mx.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
        'local_domains = ["config.test"]\n'
        '[listen]\nsmtp = ["127.0.0.1:2525"]\nsubmissions = ["0.0.0.0:465"]\n'
        'submission = ["0.0.0.0:587"]\npop3s = ["0.0.0.0:995"]\n'
        '[delivery]\ndns_timeout = 2.0\n'
        f'[mta_sts]\nfetch_timeout = 3.0\nca_file = "{ca.cert_file}"\n')

    def cli(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(config_path)])
        out, err = capsys.readouterr()
        return code, out, err
    return cli


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    server = DnsTestServer().start()
    yield server
    server.stop()


def publish(server: DnsTestServer, shown: dict[str, Any]) -> None:
    """Put every record ``domain records --json`` printed into the server's zone."""
    for record in shown["records"]:
        server.set(record["name"], record["type"], [record["value"]])
    server.set("mx.example.test", "A", ["192.0.2.25"])
    server.set("mta-sts.example.test", "A", [HTTPS_IP])


class PolicyHost:
    """The policy at ``https://mta-sts.example.test/.well-known/mta-sts.txt`` on
    HTTPS_IP:443, with a certificate of the CA the configuration trusts."""

    def __init__(self, ca: TestCa, tmp_path: Path, body: str) -> None:
        data = body.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                self.send_response(200 if self.path == "/.well-known/mta-sts.txt" else 404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*ca.issue(tmp_path, "mta-sts.example.test"))
        self.httpd = http.server.ThreadingHTTPServer((HTTPS_IP, 443), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PolicyHost:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_add_makes_the_key_and_prints_every_record(run: Cli, tmp_path: Path) -> None:
    code, out, _ = run("domain", "add", DOMAIN)
    assert code == 0 and out.startswith(f"domain {DOMAIN} added")
    [key] = KeyStore(tmp_path / "data").signing_keys(DOMAIN)
    for expected in ("10 mx.example.test", "v=spf1 mx -all", key.record,
                     "_dmarc.example.test", "p=quarantine", "_mta-sts.example.test",
                     "v=TLSRPTv1; rua=mailto:tls-reports@example.test",
                     "_submissions._tcp.example.test. 3600 IN SRV 0 1 465 mx.example.test.",
                     "_submission._tcp.example.test. 3600 IN SRV 10 1 587 mx.example.test.",
                     "_pop3s._tcp.example.test. 3600 IN SRV 20 1 995 mx.example.test.",
                     "mode: testing", "mx: mx.example.test"):
        assert expected in out, expected
    assert "_imaps" not in out  # no IMAP listener configured, no SRV record for it
    assert "autoconfig" not in out.lower()
    # The DKIM zone line: the key split into strings of at most 255 characters.
    line = next(li for li in out.splitlines() if li.startswith("mailyard._domainkey."))
    strings = line.split(" IN TXT ", 1)[1].split('" "')
    assert len(strings) == 2 and "".join(s.strip('"') for s in strings) == key.record


def test_records_json_is_stable_and_matches_add(run: Cli) -> None:
    code, out, _ = run("domain", "add", DOMAIN, "--json")
    added = json.loads(out)
    code2, out2, _ = run("domain", "records", DOMAIN, "--json")
    assert code == code2 == 0 and json.loads(out2) == added
    kinds = [r["kind"] for r in added["records"]]
    assert kinds == ["mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt", "srv", "srv", "srv"]
    assert added["mta_sts_policy"]["url"] == \
        "https://mta-sts.example.test/.well-known/mta-sts.txt"
    assert f"v=STSv1; id={added['mta_sts_policy']['id']}" in [r["value"] for r in
                                                               added["records"]]


def test_records_of_a_configured_domain_make_its_key(tmp_path: Path, run: Cli) -> None:
    """A domain of local_domains was never added: `records` makes its DKIM key."""
    code, out, _ = run("domain", "records", "config.test")
    assert code == 0 and "mailyard._domainkey.config.test" in out
    assert KeyStore(tmp_path / "data").signing_keys("config.test")
    code, _, err = run("domain", "records", "nowhere.test")
    assert code == 2 and "not a local domain" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="serves HTTPS on port 443")
def test_check_a_correct_zone(run: Cli, dns: DnsTestServer, ca: TestCa,
                              tmp_path: Path) -> None:
    shown = json.loads(run("domain", "add", DOMAIN, "--json")[1])
    publish(dns, shown)
    with PolicyHost(ca, tmp_path, shown["mta_sts_policy"]["text"]):
        code, out, _ = run("domain", "check", DOMAIN, "--dns", dns.server_spec)
        assert code == 0, out
        assert out.splitlines()[-1] == "-- 9 record(s): 9 ok"
        assert "note: mode testing" in out
        code, out, _ = run("domain", "check", DOMAIN, "--dns", dns.server_spec, "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and {r["status"] for r in result["records"]} == {"ok"}
    asked = {(name, rdtype) for name, rdtype, _ in dns.queries}
    assert ("_smtp._tls.example.test", "TXT") in asked and \
        ("_pop3s._tcp.example.test", "SRV") in asked


def test_check_an_empty_zone_says_missing(run: Cli, dns: DnsTestServer) -> None:
    run("domain", "add", DOMAIN)
    code, out, _ = run("domain", "check", DOMAIN, "--dns", dns.server_spec, "--json")
    result = json.loads(out)
    assert code == 1 and not result["ok"]
    assert {r["status"] for r in result["records"]} == {"missing"}
    dmarc = next(r for r in result["records"] if r["kind"] == "dmarc")
    assert dmarc["fix"] == f"publish: {dmarc['zone']}"


def test_check_a_wrong_zone(run: Cli, dns: DnsTestServer, tmp_path: Path) -> None:
    shown = json.loads(run("domain", "add", DOMAIN, "--json")[1])
    publish(dns, shown)
    dns.set(DOMAIN, "TXT", ["v=spf1 mx -all", "v=spf1 a -all"])
    dns.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=none"])
    dkim_name = next(r["name"] for r in shown["records"] if r["kind"] == "dkim")
    # Another key at our selector; and a rotation whose new key is not published yet.
    dns.set(dkim_name, "TXT", [dns_record(generate(KeyAlgorithm.RSA, 1024))])
    KeyStore(tmp_path / "data").rotate(DOMAIN)
    dns.set("_submissions._tcp.example.test", "SRV", ["0 1 465 mail.elsewhere.test"])
    code, out, _ = run("domain", "check", DOMAIN, "--dns", dns.server_spec)
    assert code == 1
    assert "wrong    spf      TXT  example.test" in out
    assert "2 SPF records" in out and "RFC 7208 4.5" in out
    assert "wrong    dmarc    TXT  _dmarc.example.test" in out and "p=none" in out
    assert f"wrong    dkim     TXT  {dkim_name}" in out and "not this server's key" in out
    assert "missing  dkim" in out  # the pending key of the rotation is not published
    assert "names mail.elsewhere.test port 465, not mx.example.test port 465" in out
    assert "fix: " in out
    assert "wrong    mta-sts  TXT  _mta-sts.example.test" in out
    assert "the policy cannot be fetched" in out  # nothing serves it
    assert out.splitlines()[-1] == "-- 10 record(s): 4 ok, 1 missing, 5 wrong"


def test_check_usage_errors(run: Cli) -> None:
    run("domain", "add", DOMAIN)
    code, _, err = run("domain", "check", DOMAIN, "--dns", "dns.example:53")
    assert code == 2 and "--dns" in err and "IP address" in err
    code, _, err = run("domain", "check", "other.test", "--dns", "127.0.0.1:53")
    assert code == 2 and "not a local domain" in err
    code, _, err = run("domain", "check", "bad..name")
    assert code == 2 and "not a valid domain name" in err
    with pytest.raises(SystemExit) as exited:
        run("domain", "check")
    assert exited.value.code == 2


def test_check_without_an_answer_is_unknown(run: Cli, dns: DnsTestServer) -> None:
    shown = json.loads(run("domain", "add", DOMAIN, "--json")[1])
    publish(dns, shown)
    dns.servfail("_dmarc.example.test")
    code, out, _ = run("domain", "check", DOMAIN, "--dns", dns.server_spec, "--json")
    dmarc = next(r for r in json.loads(out)["records"] if r["kind"] == "dmarc")
    assert code == 1 and dmarc["status"] == "unknown"


def test_client_services_follow_the_listeners() -> None:
    """One RFC 6186 service per client listener kind, on its first listener's port."""
    from mailyard.config import Config, ListenConfig
    from mailyard.dnsrecords import ClientService
    from mailyard.services.domains import client_services

    config = Config(hostname="mx.example.test", listen=ListenConfig(
        smtp=("0.0.0.0:25",), imaps=("0.0.0.0:993", "[::]:993"), imap=("127.0.0.1:1143",),
        pop3=("0.0.0.0:110",)))
    assert sorted(client_services(config), key=lambda s: s.service) == [
        ClientService("imap", 1143), ClientService("imaps", 993), ClientService("pop3", 110)]

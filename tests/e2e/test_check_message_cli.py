"""``mailyard check message``: the inbound checks on a stored message, over a DNS
server on loopback (``--dns``), with and without the envelope options."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailyard.authres.parse import parse_value
from mailyard.dkim.keys import dns_record
from mailyard.dkim.sign import Signer, sign_message
from tests.support.dnsserver import DnsTestServer
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MESSAGE = (b"From: Ada <ada@sender.test>\r\nTo: bob@example.test\r\nSubject: report\r\n\r\n"
           b"Hello Bob,\r\n\r\nthe  report.\r\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MailyardServer, str, Path]]:
    root = tmp_path_factory.mktemp("checkmsg")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dns = DnsTestServer({
        "s1._domainkey.sender.test": {"TXT": [dns_record(key)]},
        "_dmarc.sender.test": {"TXT": ["v=DMARC1; p=reject"]},
        "sender.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"], "A": ["192.0.2.1"]},
    }).start()
    signed = sign_message(MESSAGE, [Signer("sender.test", "s1", key)], time.time()) + MESSAGE
    stored = root / "message.eml"
    stored.write_bytes(b"Return-Path: <ada@sender.test>\n" + signed.replace(b"\r\n", b"\n"))
    server = MailyardServer(root / "srv", hostname="mx.example.test")
    try:
        yield server, dns.server_spec, stored
    finally:
        dns.stop()


def test_dkim_of_a_maildir_file(setup: tuple[MailyardServer, str, Path]) -> None:
    server, dns, stored = setup
    out = server.cli("check", "message", str(stored), "--dns", dns).stdout.decode()
    assert out.startswith("Authentication-Results: mx.example.test;")
    field = out.split("\n# ")[0].replace("\n\t", " ")
    parsed = parse_value(field.partition(":")[2])
    results = {r.method: r.result for r in parsed.results}  # type: ignore[union-attr]
    assert results == {"dkim": "pass", "arc": "none"}, out
    assert "# action: accept" in out


def test_with_the_envelope_spf_and_dmarc(setup: tuple[MailyardServer, str, Path]) -> None:
    server, dns, stored = setup
    out = server.cli("check", "message", str(stored), "--dns", dns, "--ip", "192.0.2.7",
                     "--mail-from", "ada@sender.test", "--helo", "mail.sender.test",
                     "--json").stdout.decode()
    found = json.loads(out)
    assert found["spf"]["result"] == "pass" and found["dmarc"]["result"] == "pass"
    assert "spf=pass smtp.mailfrom=ada@sender.test" in found["authentication_results"]
    forged = server.cli("check", "message", str(stored), "--dns", dns, "--ip", "203.0.113.5",
                        "--mail-from", "<>", "--helo", "evil.example").stdout.decode()
    # The signature still aligns: DMARC passes on DKIM alone (RFC 7489 4.2).
    assert "dmarc=pass" in forged and "# action: accept" in forged


def test_tampered_message_fails_with_reason(setup: tuple[MailyardServer, str, Path],
                                            tmp_path: Path) -> None:
    server, dns, stored = setup
    tampered = tmp_path / "tampered.eml"
    tampered.write_bytes(stored.read_bytes().replace(b"the  report", b"the invoice"))
    out = server.cli("check", "message", str(tampered), "--dns", dns, "--json").stdout.decode()
    found = json.loads(out)
    assert [d["result"] for d in found["dkim"]] == ["fail"]
    assert found["dkim"][0]["reason"] == "body hash did not verify"
    assert found["dmarc"] is None and found["spf"] is None


def test_bad_options_and_files(setup: tuple[MailyardServer, str, Path]) -> None:
    server, dns, stored = setup
    bad_ip = server.cli("check", "message", str(stored), "--ip", "999.1.1.1", "--mail-from",
                        "a@b.test", "--helo", "h.test", check=False)
    assert bad_ip.returncode == 2 and b"is not an IP address" in bad_ip.stderr
    partial = server.cli("check", "message", str(stored), "--ip", "192.0.2.9", check=False)
    assert partial.returncode == 2 and b"--mail-from" in partial.stderr
    missing = server.cli("check", "message", "/nonexistent/x.eml", check=False)
    assert missing.returncode == 1 and b"cannot read /nonexistent/x.eml" in missing.stderr
    assert b"Traceback" not in missing.stderr + partial.stderr

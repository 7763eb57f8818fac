"""Inbound sender authentication end to end: two real ``mailyard serve`` over
loopback and a DNS server on loopback publishing the sender domain's SPF, DKIM key
(made with ``mailyard domain dkim rotate`` on server A, as ``domain dkim show``
prints it) and DMARC records.

A local user's message submitted to A is signed by A, delivered by A to B (a
transport to B's port) and stored by B with B's Authentication-Results; a forged
message (From the signed domain, no signature) sent to B directly is refused with
``550 5.7.1`` under ``p=reject`` and lands in the Junk folder under
``p=quarantine``; an Authentication-Results field claiming B's authserv-id does not
survive (RFC 8601 5)."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Iterator

import pytest

from mailyard.authres.parse import parse_value
from mailyard.store.maildir import read_message
from tests.support.certs import unverified_tls
from tests.support.dnsserver import DnsTestServer
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PASSWORD = "inbound-secret"
B_ID = "mx.b.test"


class Pair:
    def __init__(self, a: MailyardServer, b: MailyardServer, dns: DnsTestServer) -> None:
        self.a, self.b, self.dns = a, b, dns


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("inbound")
    dns = DnsTestServer({}).start()
    # SPF is checked for loopback clients too, and a fail only marks the message, so
    # that DMARC decides (the forged mail's SPF fail would be refused at MAIL FROM).
    b = MailyardServer(root / "b", domains=("b.test",), hostname=B_ID, overrides={
        "dkim": {"verify": True}, "dmarc": {"enabled": True},
        "spf": {"skip_addresses": [], "fail": "mark"},
        "delivery": {"dns_servers": [dns.server_spec], "dns_timeout": 2.0},
    })
    a = MailyardServer(root / "a", domains=("a.test",), hostname="mx.a.test", overrides={
        "delivery": {"dns_servers": [dns.server_spec], "dns_timeout": 2.0,
                     "transports": [{"domain": "b.test", "nexthop": f"127.0.0.1:{b.ports['smtp']}",
                                     "tls": "none"}],
                     "retry_schedule": [1], "connect_timeout": 5.0},
    })
    a.add_user("alice@a.test", PASSWORD)
    for user in ("bob", "carol", "dave"):
        b.add_user(f"{user}@b.test", PASSWORD)
    a.cli("domain", "dkim", "rotate", "a.test")
    shown = json.loads(a.cli("domain", "dkim", "show", "a.test", "--json").stdout)
    for selector in shown["selectors"]:
        dns.set(selector["name"], "TXT", [selector["value"]])
    dns.set("a.test", "TXT", ["v=spf1 ip4:127.0.0.1 -all"])
    dns.set("a.test", "A", ["127.0.0.1"])
    dns.set("_dmarc.a.test", "TXT", ["v=DMARC1; p=reject"])
    dns.set("q.test", "TXT", ["v=spf1 ip4:127.0.0.1 -all"])
    dns.set("_dmarc.q.test", "TXT", ["v=DMARC1; p=quarantine"])
    try:
        with b, a:
            yield Pair(a, b, dns)
    finally:
        dns.stop()


def _results(message: bytes) -> list[str]:
    """The values of the Authentication-Results fields, unfolded."""
    header = message.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    return [line.partition(b":")[2].decode().strip() for line in header.split(b"\r\n")
            if line.lower().startswith(b"authentication-results:")]


def _transaction_line(server: MailyardServer, marker: str, timeout: float = 20.0) -> str:
    """The ``smtp transaction`` log line with ``marker`` (the checks' results are on it)."""
    log = server.root / "mailyard.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            if marker in line and "smtp transaction" in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no transaction log line with {marker!r}:\n{server.output()}")


def _junk(server: MailyardServer, address: str) -> list[bytes]:
    folder = server.maildir(address) / ".Junk"
    return [read_message(p) for sub in ("new", "cur") if (folder / sub).is_dir()
            for p in sorted((folder / sub).iterdir())]


def test_signed_mail_from_a_passes_at_b(pair: Pair) -> None:
    message = (b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: signed\r\n\r\n"
               b"Hello Bob,\r\n\r\nsee you soon.\r\n")
    with smtplib.SMTP("127.0.0.1", pair.a.ports["submission"], timeout=30) as client:
        client.starttls(context=unverified_tls())
        client.login("alice@a.test", PASSWORD)
        client.sendmail("alice@a.test", ["bob@b.test"], message)
    [stored] = pair.b.wait_for_messages("bob@b.test", 1, timeout=60)
    assert b"\r\nDKIM-Signature: v=1; a=rsa-sha256;" in stored
    [ours] = _results(stored)
    parsed = parse_value(ours)
    assert not hasattr(parsed, "position"), ours
    assert parsed.authserv_id == B_ID  # type: ignore[union-attr]
    found = {(r.method, r.properties[0].name): r.result  # type: ignore[union-attr]
             for r in parsed.results}  # type: ignore[union-attr]
    assert (found["spf", "mailfrom"], found["dkim", "d"], found["dmarc", "from"]) == (
        "pass", "pass", "pass"), ours
    assert "smtp.mailfrom=alice@a.test" in ours
    assert ("spf", "helo") in found, ours  # the HELO identity has its own entry (8601 2.7.2)
    assert "header.d=a.test" in ours and "header.from=a.test" in ours


def test_forged_mail_under_p_reject_is_refused(pair: Pair) -> None:
    forged = (b"From: CEO <ceo@a.test>\r\nTo: carol@b.test\r\nSubject: wire money\r\n\r\n"
              b"Urgent.\r\n")
    with smtplib.SMTP("127.0.0.1", pair.b.ports["smtp"], timeout=30,
                      source_address=("127.0.0.2", 0)) as client:
        client.ehlo("forger.example")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("ceo@a.test", ["carol@b.test"], forged)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1 ")
    assert pair.b.messages("carol@b.test") == [] and _junk(pair.b, "carol@b.test") == []
    line = _transaction_line(pair.b, "sender=ceo@a.test")
    assert 'reply="550 5.7.1' in line, line
    assert "dkim=none" in line and "dmarc=fail" in line and "action=reject" in line, line
    assert "from_domain=a.test" in line and "spf=fail" in line, line


def test_forged_mail_under_p_quarantine_lands_in_junk(pair: Pair) -> None:
    forged = (b"Authentication-Results: mx.b.test; dkim=pass header.d=q.test\r\n"
              b"Authentication-Results: elsewhere.example; spf=pass\r\n"
              b"X-Mailyard-Folder: INBOX\r\n"
              b"From: Billing <billing@q.test>\r\nTo: dave@b.test\r\nSubject: invoice\r\n\r\n"
              b"Pay now.\r\n")
    with smtplib.SMTP("127.0.0.1", pair.b.ports["smtp"], timeout=30,
                      source_address=("127.0.0.2", 0)) as client:
        client.ehlo("forger.example")
        client.sendmail("billing@q.test", ["dave@b.test"], forged)
    deadline_messages = []
    for _ in range(400):
        deadline_messages = _junk(pair.b, "dave@b.test")
        if deadline_messages:
            break
        pair.b.wait_for_messages("dave@b.test", 1, timeout=0.05)
    [stored] = deadline_messages
    assert pair.b.messages("dave@b.test") == []  # not in the INBOX
    assert b"\r\nX-Mailyard-Quarantine: dmarc domain=q.test policy=quarantine\r\n" in stored
    results = _results(stored)
    # RFC 8601 5: the incoming field claiming our id is gone; the other one stays.
    assert [r for r in results if r.startswith(B_ID)] == [results[0]]
    assert "dmarc=fail" in results[0] and "header.d=q.test" not in results[0]
    assert "spf=fail smtp.mailfrom=billing@q.test" in results[0]
    assert "elsewhere.example; spf=pass" in results

"""Alias forwards with SRS and ARC, end to end: the real ``mailyard serve`` forwards mail
for an alias to an external address (a scripted MX on loopback) from an SRS address of
the alias's domain, with an ARC Set signed by the domain's DKIM key, and a bounce sent
to that address reaches the original sender's MX.

Zones (tests/support/outbound.py ``remote_zones``): the original sender is at
``remote.test`` (MX 127.0.0.2, then 127.0.0.3), the alias target at ``other.test``
(MX 127.0.0.4).
"""

from __future__ import annotations

import asyncio
import json
import smtplib

import pytest

from mailyard.arc.chain import ArcStatus, validate_message
from mailyard.dns import StaticResolver
from tests.support.dnsserver import DnsTestServer
from tests.support.fake_mx import FakeMx
from tests.support.mailyard_server import MailyardServer, free_port
from tests.support.outbound import make_message, outbound_server, remote_zones, wait_queue_empty

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SENDER_MX, TARGET_MX = "127.0.0.2", "127.0.0.4"


@pytest.fixture
def setup(tmp_path):  # type: ignore[no-untyped-def]
    port = free_port()
    with DnsTestServer(remote_zones()) as dns:
        sender_mx = FakeMx(SENDER_MX, port, name="mx1.remote.test").start()
        target_mx = FakeMx(TARGET_MX, port, name="mx.other.test").start()
        srv: MailyardServer = outbound_server(tmp_path / "mailyard", dns, port,
                                              {"retry_schedule": [600]})
        try:
            srv.cli("alias", "add", "fwd@example.test", "carol@other.test")
            srv.cli("domain", "dkim", "rotate", "example.test")
            yield srv, sender_mx, target_mx
        finally:
            srv.stop()
            sender_mx.stop()
            target_mx.stop()
            print(f"--- {srv.root} ---\n{srv.output()}")


def test_forward_uses_srs_and_a_bounce_goes_back_to_the_sender(setup) -> None:  # type: ignore[no-untyped-def]
    srv, sender_mx, target_mx = setup
    msg, token = make_message("dave@remote.test", ["fwd@example.test"], "forward me")
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as client:
        client.send_message(msg)
    [forwarded] = target_mx.wait_messages(1)
    wait_queue_empty(srv)
    assert forwarded.recipients == ["carol@other.test"]
    srs = forwarded.mail_from
    assert srs.startswith("SRS0=") and srs.endswith("=remote.test=dave@example.test"), srs
    assert token.encode() in forwarded.data
    # RFC 8617: one ARC Set, sealed by example.test, that the next hop validates.
    assert forwarded.data.startswith(b"ARC-Seal: i=1; a=rsa-sha256; t="), forwarded.data[:200]
    assert b"cv=none;\r\n\td=example.test; s=mailyard;" in forwarded.data
    assert b"ARC-Authentication-Results: i=1; " in forwarded.data
    assert b"arc=none" in forwarded.data
    [key] = json.loads(srv.cli("domain", "dkim", "show", "example.test", "--json").stdout)[
        "selectors"]
    resolver = StaticResolver({key["name"]: {"TXT": [key["value"]]}})
    chain = asyncio.run(validate_message(forwarded.data, resolver))
    assert chain.status is ArcStatus.PASS and chain.instances == 1, chain

    # The target's MX bounces later, to the SRS address; it goes on to the sender.
    bounce = (b"From: MAILER-DAEMON@other.test\r\nTo: " + srs.encode() + b"\r\n"
              b"Subject: Undelivered Mail Returned to Sender\r\n\r\n"
              b"carol@other.test: mailbox full " + token.encode() + b"\r\n")
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as client:
        client.sendmail("", [srs.lower()], bounce)  # a mailer that lower-cased it
    [returned] = sender_mx.wait_messages(1)
    wait_queue_empty(srv)
    assert returned.mail_from == "" and returned.recipients == ["dave@remote.test"]
    assert token.encode() in returned.data


def test_forged_or_unknown_srs_addresses_are_refused(setup) -> None:  # type: ignore[no-untyped-def]
    srv, _sender_mx, _target_mx = setup
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as client:
        client.ehlo("bouncer.test")
        client.mail("")
        for address in ("SRS0=AAAAAA=AB=remote.test=dave@example.test",
                        "SRS0=junk@example.test"):
            code, _ = client.rcpt(address)
            assert code == 550, address


def test_local_senders_are_not_rewritten(setup) -> None:  # type: ignore[no-untyped-def]
    srv, _sender_mx, target_mx = setup
    msg, _token = make_message("alice@example.test", ["fwd@example.test"], "from us")
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as client:
        client.send_message(msg, "alice@example.test", ["fwd@example.test"])
    [forwarded] = target_mx.wait_messages(1)
    assert forwarded.mail_from == "alice@example.test"

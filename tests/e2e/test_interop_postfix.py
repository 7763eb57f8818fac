"""Interoperability with a real Postfix, both ways, on loopback.

* Mailyard to Postfix: Mailyard finds Postfix through an MX record (test DNS) and
  relays to it; Postfix accepts for its domain and keeps the mail on hold in its
  queue, where ``postqueue -j`` and ``postcat`` show what arrived.
* Postfix to Mailyard: Postfix's transport for a Mailyard-local domain points at
  Mailyard's port 25; Mailyard delivers into the Maildir.
* A refusal by Postfix comes back to the Mailyard sender as an RFC 3464 report.
"""

from __future__ import annotations

import email
import email.policy
import smtplib

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.outbound import (
    SENDER,
    make_message,
    outbound_server,
    submit,
    wait_bounce,
    wait_queue_empty,
    wait_until,
)
from tests.support.postfix import PostfixInstance, postfix_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postfix,
    pytest.mark.timeout(90),
    pytest.mark.skipif(postfix_available() is not None, reason=str(postfix_available())),
]

PF_DOMAIN = "pf.test"


@pytest.fixture
def postfix(tmp_path):
    """Final destination for pf.test (bob and carol exist), mail kept on hold."""
    with PostfixInstance.accept(PF_DOMAIN, recipients=("bob", "carol"), deferral="hold",
                                hostname="mx.pf.test") as instance:
        yield instance


@pytest.fixture
def dns():
    zones = {PF_DOMAIN: {"MX": ["10 mx.pf.test"]}, "mx.pf.test": {"A": ["127.0.0.1"]}}
    with DnsTestServer(zones) as server:
        yield server


@pytest.fixture
def mailyard_to_postfix(tmp_path, dns, postfix):
    srv = outbound_server(tmp_path / "mailyard", dns, postfix.port,
                          {"retry_schedule": [600]}, start=False)
    srv.start()
    yield srv
    srv.stop()
    print(f"--- mailyard ---\n{srv.output()}\n{postfix.log_tail(60)}")


def held(postfix: PostfixInstance) -> list[dict]:
    return [e for e in postfix.queue_entries() if e.get("queue_name") == "hold"]


def test_mailyard_relays_to_postfix(mailyard_to_postfix, postfix):
    srv = mailyard_to_postfix
    token = submit(srv, [f"bob@{PF_DOMAIN}"], "to postfix", body="hello postfix\n")
    wait_until(lambda: held(postfix), 20, "the message on hold at Postfix")
    wait_queue_empty(srv)
    [entry] = held(postfix)
    assert entry["sender"] == SENDER
    assert [r["address"] for r in entry["recipients"]] == [f"bob@{PF_DOMAIN}"]
    text = postfix.run("postcat", "-q", "-h", "-b", str(entry["queue_id"]))
    assert f"X-Test-Token: {token}" in text
    assert "hello postfix" in text
    # Postfix's Received header names Mailyard's EHLO (its configured hostname).
    assert "from mx.example.test" in text


def test_mailyard_relays_many_messages_to_postfix(mailyard_to_postfix, postfix):
    """Several messages to one destination (Mailyard's connection reuse and
    PIPELINING against Postfix's smtpd)."""
    srv = mailyard_to_postfix
    tokens = {submit(srv, [f"carol@{PF_DOMAIN}"], f"many {i}") for i in range(10)}
    postfix.wait_queue_count(10, timeout=30, queues=["hold"])
    wait_queue_empty(srv)
    found = set()
    for entry in held(postfix):
        text = postfix.run("postcat", "-q", "-h", str(entry["queue_id"]))
        found |= {t for t in tokens if t in text}
    assert found == tokens


def test_postfix_refusal_bounces_to_mailyard_sender(mailyard_to_postfix, postfix):
    """Postfix refuses an unknown user (550 5.1.1 at RCPT); the Mailyard sender gets an
    RFC 3464 report naming Postfix as the Remote-MTA."""
    srv = mailyard_to_postfix
    token = submit(srv, [f"nobody@{PF_DOMAIN}"], "unknown at postfix")
    [dsn] = wait_bounce(srv)
    wait_queue_empty(srv)
    block = dsn.recipient(f"nobody@{PF_DOMAIN}")
    assert str(block["Action"]).strip() == "failed"
    assert str(block["Status"]).strip() == "5.1.1"
    assert "550 5.1.1" in str(block["Diagnostic-Code"])
    assert "mx.pf.test" in str(block["Remote-MTA"])
    assert dsn.returned is not None and token in dsn.returned.as_string()
    assert held(postfix) == []


@pytest.fixture
def postfix_to_mailyard(tmp_path):
    dns = DnsTestServer({}).start()
    srv = outbound_server(tmp_path / "mailyard", dns, 25,
                          users=(("bob@example.test", "bob-secret"),), start=False)
    srv.start()
    try:
        with PostfixInstance.deliver("example.test", ("127.0.0.1", srv.ports["smtp"]),
                                     hostname="relay.postfix.test") as relay:
            yield srv, relay
    finally:
        srv.stop()
        dns.stop()
        print(f"--- mailyard ---\n{srv.output()}")


def test_postfix_relays_to_mailyard(postfix_to_mailyard):
    srv, relay = postfix_to_mailyard
    messages = []
    for i in range(5):
        msg, token = make_message("dave@origin.test", ["bob@example.test"], f"via postfix {i}")
        messages.append(token)
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.send_message(msg)
    got = srv.wait_for_messages("bob@example.test", 5, timeout=30)
    relay.wait_queue_empty(timeout=30)
    assert len(got) == 5
    for raw in got:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        # RFC 5321 4.4: Mailyard's Return-Path is the envelope sender Postfix passed on.
        assert raw.startswith(b"Return-Path: <dave@origin.test>")
        received = [str(r) for r in msg.get_all("Received", [])]
        assert any("by mx.example.test" in r and "relay.postfix.test" in r
                   for r in received), received
        assert any("by relay.postfix.test" in r for r in received), received
    assert sorted(str(email.message_from_bytes(r)["X-Test-Token"]).strip()
                  for r in got) == sorted(messages)


def test_postfix_gets_mailyard_refusal_for_unknown_user(postfix_to_mailyard):
    """Mailyard refuses an unknown local user at RCPT (550 5.1.1); Postfix then
    returns the message instead of retrying (its queue empties)."""
    srv, relay = postfix_to_mailyard
    msg, _ = make_message("dave@origin.test", ["nobody@example.test"], "unknown here")
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        client.send_message(msg)
    wait_until(lambda: "status=bounced" in relay.log_path.read_text(errors="replace"), 30,
               "Postfix to log the bounce")
    log = relay.log_path.read_text(errors="replace")
    assert "nobody@example.test" in log and "550 5.1.1" in log, log[-2000:]
    assert srv.queue() == []

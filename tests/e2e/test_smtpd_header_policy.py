"""End to end: the checks smtpd makes on a message's header section at the end of
DATA/BDAT (Delivered-To loop, header From ownership, Date/Message-ID on submission),
address literals on submission, and ``RCPT TO:<postmaster>`` with directory domains."""

from __future__ import annotations

import re
import smtplib
import time

import pytest

from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MailyardServer(tmp_path_factory.mktemp("hdr"), domains=(),
                         overrides={"smtpd": {"require_header_from_match": True}})
    srv.cli("domain", "add", "example.test")  # the documented flow: no local_domains
    srv.add_user("alice@example.test", "alice-secret")
    srv.add_user("bob@example.test", "bob-secret")
    with srv:
        yield srv


def _submit(server, sender: str, rcpt: str, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("laptop.test")
        s.starttls(context=unverified_tls())
        s.ehlo("laptop.test")
        s.login("alice@example.test", "alice-secret")
        s.mail(sender)
        s.rcpt(rcpt)
        return s.data(data)


def _delivered(server, address: str, marker: bytes) -> bytes:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for m in server.messages(address):
            if marker in m:
                return m
        time.sleep(0.05)
    raise AssertionError(f"{marker!r} not delivered to {address}")


def _header(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0]


def test_forged_delivered_to_of_recipient_refused_in_session(server):
    """A Delivered-To naming the recipient: 554 5.4.6 at end of DATA, nothing queued,
    so no bounce is sent to the (forged) sender."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("spam.test")
        s.mail("victim@remote.test")
        s.rcpt("alice+x@example.test")
        code, text = s.data(b"Delivered-To: alice@example.test\r\nSubject: pills\r\n\r\n"
                            b"PAYLOAD\r\n")
        assert (code, text[:5]) == (554, b"5.4.6")
        # BDAT too, and the session goes on
        s.mail("victim@remote.test")
        s.rcpt("alice@example.test")
        body = b"DELIVERED-TO: <Alice@Example.Test>\r\nSubject: pills\r\n\r\nx\r\n"
        s.putcmd(f"BDAT {len(body)} LAST")
        s.send(body)
        code, text = s.getreply()
        assert (code, text[:5]) == (554, b"5.4.6")
    assert server.queue() == []
    assert "dsn queued" not in server.output()
    assert not any(b"PAYLOAD" in m for m in server.messages("alice@example.test"))


def test_unrelated_delivered_to_is_accepted(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("carol@remote.test", ["bob@example.test"],
                   b"Delivered-To: carol@remote.test\r\nSubject: forwarded once\r\n\r\nhi\r\n")
    _delivered(server, "bob@example.test", b"Subject: forwarded once")


def test_postmaster_without_domain_with_directory_domains(server):
    """RFC 5321 4.5.1: <postmaster> is accepted and delivered to postmaster of the
    first directory domain when local_domains is empty."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.test")
        s.mail("carol@remote.test")
        code, _ = s.rcpt("<PostMaster>")
        assert code == 250
        code, _ = s.data(b"Subject: to the postmaster\r\n\r\nhello\r\n")
        assert code == 250
    _delivered(server, "postmaster@example.test", b"Subject: to the postmaster")


def test_submission_adds_date_and_message_id_when_missing(server):
    """RFC 6409 8.2, 8.3: exactly one Date and one Message-ID, after Received."""
    code, _ = _submit(server, "alice@example.test", "bob@example.test",
                      b"From: alice@example.test\r\nSubject: bare submit\r\n\r\nhi\r\n")
    assert code == 250
    head = _header(_delivered(server, "bob@example.test", b"Subject: bare submit"))
    assert len(re.findall(rb"(?m)^Date: ", head)) == 1
    assert len(re.findall(rb"(?m)^Message-ID: <[^@>]+@mx\.example\.test>\r?$", head)) == 1
    assert head.index(b"Received: ") < head.index(b"Date: ") < head.index(b"From: ")


def test_submission_keeps_existing_date_and_message_id(server):
    original = (b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <own@laptop.test>\r\n"
                b"From: alice@example.test\r\nSubject: complete submit\r\n\r\nhi\r\n")
    assert _submit(server, "alice@example.test", "bob@example.test", original)[0] == 250
    message = _delivered(server, "bob@example.test", b"Subject: complete submit")
    assert message.endswith(original)
    head = _header(message)
    assert head.count(b"Date: ") == 1 and head.count(b"Message-ID: ") == 1


def test_port25_does_not_add_date_or_message_id(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("carol@remote.test", ["bob@example.test"],
                   b"Subject: bare relay\r\n\r\nhi\r\n")
    head = _header(_delivered(server, "bob@example.test", b"Subject: bare relay"))
    assert b"\nDate: " not in head and b"Message-ID:" not in head


def test_header_from_must_be_owned_when_required(server):
    code, text = _submit(server, "alice@example.test", "bob@example.test",
                         b"From: Bob <bob@example.test>\r\nSubject: spoof\r\n\r\nhi\r\n")
    assert (code, text[:5]) == (550, b"5.7.1")
    code, _ = _submit(server, "alice@example.test", "bob@example.test",
                      b"From: Alice <alice+tag@example.test>\r\nSubject: own from\r\n\r\nhi\r\n")
    assert code == 250
    _delivered(server, "bob@example.test", b"Subject: own from")


def test_submission_refuses_address_literals_by_default(server):
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("laptop.test")
        s.starttls(context=unverified_tls())
        s.ehlo("laptop.test")
        s.login("alice@example.test", "alice-secret")
        s.mail("alice@example.test")
        for target in ("x@[127.0.0.1]", "x@[10.0.0.5]", "x@[IPv6:::1]"):
            code, text = s.rcpt(target)
            assert (code, text[:5]) == (550, b"5.7.1"), target

"""DKIM signing end to end: the real ``mailyard serve``, keys made with ``mailyard
domain dkim rotate``, a user's message submitted on 587 (STARTTLS + AUTH) and mail
from another server on 25; what lands in the Maildir is checked with our verifier
against the records ``mailyard domain dkim show --json`` prints."""

from __future__ import annotations

import asyncio
import json
import smtplib
from collections.abc import Iterator

import pytest

from mailyard.dkim.result import DkimStatus
from mailyard.dkim.verify import verify_message
from mailyard.dns.static import StaticResolver
from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PASSWORD = "dkim-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailyardServer]:
    srv = MailyardServer(tmp_path_factory.mktemp("dkim"))
    for user in ("alice", "bob", "carol"):
        srv.add_user(f"{user}@example.test", PASSWORD)
    srv.cli("domain", "dkim", "rotate", "example.test")
    with srv:
        yield srv


def resolver(server: MailyardServer) -> StaticResolver:
    shown = json.loads(server.cli("domain", "dkim", "show", "example.test", "--json").stdout)
    return StaticResolver({s["name"]: {"TXT": [s["value"]]} for s in shown["selectors"]})


def submit(server: MailyardServer, sender: str, rcpt: str, subject: str) -> None:
    message = (f"From: Alice <{sender}>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n"
               "Hello  Bob,\r\n\r\nsee you\tsoon.\r\n").encode()
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as client:
        client.starttls(context=unverified_tls())
        client.login(sender, PASSWORD)
        client.sendmail(sender, [rcpt], message)


def test_submitted_mail_is_signed_and_verifies(server: MailyardServer) -> None:
    submit(server, "alice@example.test", "bob@example.test", "signed")
    [message] = server.wait_for_messages("bob@example.test", 1)
    assert b"\r\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;" in message
    results = asyncio.run(verify_message(message, resolver(server)))
    assert [(r.status, r.domain, r.selector) for r in results] == [
        (DkimStatus.PASS, "example.test", "mailyard")]


def test_second_key_is_picked_up_while_running(server: MailyardServer) -> None:
    server.cli("domain", "dkim", "rotate", "example.test", "--algorithm", "ed25519-sha256")
    submit(server, "alice@example.test", "carol@example.test", "two signatures")
    [message] = server.wait_for_messages("carol@example.test", 1)
    results = asyncio.run(verify_message(message, resolver(server)))
    assert sorted((r.status, r.algorithm) for r in results) == [
        (DkimStatus.PASS, "ed25519-sha256"), (DkimStatus.PASS, "rsa-sha256")]


def test_mail_from_other_servers_is_not_signed(server: MailyardServer) -> None:
    before = len(server.messages("alice@example.test"))
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as client:
        client.sendmail("someone@remote.test", ["alice@example.test"],
                        b"From: someone@remote.test\r\nSubject: hi\r\n\r\nhello\r\n")
    messages = server.wait_for_messages("alice@example.test", before + 1)
    assert b"DKIM-Signature" not in messages[-1]


def test_local_sendmail_is_signed(server: MailyardServer) -> None:
    before = len(server.messages("bob@example.test"))
    server.cli("sendmail", "-i", "-f", "alice@example.test", "bob@example.test",
               input=b"From: alice@example.test\nTo: bob@example.test\nSubject: local\n\n"
                     b"from the command line\n")
    messages = server.wait_for_messages("bob@example.test", before + 1)
    results = asyncio.run(verify_message(messages[-1], resolver(server)))
    assert results and all(r.status is DkimStatus.PASS for r in results), results

"""End to end: direct local delivery (``[delivery] direct_local``) on the real server.

A message for one local mailbox is in that mailbox when the sender gets its 250
("Delivered as"), with nothing queued; every other message, and one whose direct
delivery fails, goes through the queue as before ("Queued as") and ends where the
queue puts it: delivered, or bounced.
"""

from __future__ import annotations

import re
import smtplib

import pytest

from tests.support.mailyard_server import MailyardServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = MailyardServer(tmp_path_factory.mktemp("direct"), workers=2)
    for user in ("alice", "bob", "carol"):
        s.add_user(f"{user}@example.test", "pw")
    s.cli("alias", "add", "both@example.test", "alice@example.test", "bob@example.test")
    s.cli("alias", "add", "ali@example.test", "alice@example.test")
    with s:
        yield s


def _send(server: MailyardServer, sender: str, recipients: list[str], body: bytes,
          rcpt_options: tuple[str, ...] = ()) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=15) as s:
        s.ehlo("client.test")
        assert s.mail(sender)[0] == 250
        for rcpt in recipients:
            assert s.rcpt(rcpt, rcpt_options)[0] == 250
        return s.data(body)


def _subject(server: MailyardServer, address: str, subject: bytes) -> list[bytes]:
    return [m for m in server.messages(address) if b"Subject: " + subject + b"\r\n" in m]


def test_one_recipient_is_in_the_mailbox_when_250_comes(server):
    code, text = _send(server, "someone@remote.test", ["alice@example.test"],
                       b"Subject: direct one\r\n\r\nstraight in\r\n")
    assert code == 250 and text.startswith(b"2.0.0 Delivered as "), text
    qid = text.split()[-1].decode()
    # No waiting: the copy is durable before the reply, and nothing was queued.
    [copy] = _subject(server, "alice@example.test", b"direct one")
    assert copy.startswith(b"Return-Path: <someone@remote.test>\r\n"
                           b"Delivered-To: alice@example.test\r\n")
    assert re.search(rb"Received: from client\.test .*id " + qid.encode(), copy, re.S)
    assert not any(e["qid"] == qid for e in server.queue())
    assert any(qid in f.name for f in server.message_files("alice@example.test"))
    # Worker log lines are written in batches: wait for them.
    log = server.root / "mailyard.log"

    def lines() -> list[str]:
        return [x for x in log.read_text(errors="replace").splitlines() if qid in x]

    assert wait_for(lambda: any("smtp transaction" in x and "result=delivered" in x
                             for x in lines())), lines()
    assert wait_for(lambda: any("delivery attempt" in x and "transport=local" in x
                             for x in lines())), lines()


def test_an_alias_to_one_mailbox_is_delivered_directly(server):
    code, text = _send(server, "someone@remote.test", ["ali@example.test"],
                       b"Subject: via alias\r\n\r\nhi\r\n")
    assert code == 250 and b"Delivered as" in text
    assert len(_subject(server, "alice@example.test", b"via alias")) == 1


@pytest.mark.parametrize("recipients, options", [
    (["alice@example.test", "bob@example.test"], ()),  # two recipients
    (["both@example.test"], ()),  # one recipient, two mailboxes
    (["bob@example.test"], ("NOTIFY=SUCCESS",)),  # a success notice is asked for
])
def test_other_messages_are_queued_and_delivered_as_before(server, recipients, options):
    subject = f"queued {len(recipients)} {'-'.join(options) or 'plain'} {recipients[0]}"
    code, text = _send(server, "someone@remote.test", recipients,
                       f"Subject: {subject}\r\n\r\nvia the queue\r\n".encode(), options)
    assert code == 250 and text.startswith(b"2.0.0 Queued as "), text
    boxes = ({"alice@example.test", "bob@example.test"}
             if recipients[0] != "bob@example.test" else {"bob@example.test"})
    for box in boxes:
        assert len(wait_for(lambda b=box: _subject(server, b, subject.encode()))) == 1
    assert server.wait_queue_empty()


def test_large_messages_go_through_the_queue(server):
    body = b"Subject: large one\r\n\r\n" + (b"y" * 998 + b"\r\n") * 300  # over 256 KiB
    code, text = _send(server, "someone@remote.test", ["bob@example.test"], body)
    assert code == 250 and b"Queued as" in text
    assert len(wait_for(lambda: _subject(server, "bob@example.test", b"large one"))) == 1


def test_over_quota_falls_back_to_the_queue_which_bounces_it(server):
    server.cli("user", "quota", "carol@example.test", "--storage", "2K")
    big = b"Subject: too big for carol\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40
    code, text = _send(server, "bob@example.test", ["carol@example.test"], big)
    assert code == 250 and b"Queued as" in text
    bounce = wait_for(lambda: [m for m in server.messages("bob@example.test")
                            if b"Status: 5.2.2" in m and b"carol@example.test" in m])
    assert bounce
    assert _subject(server, "carol@example.test", b"too big for carol") == []
    server.cli("user", "quota", "carol@example.test", "--storage", "0")


def test_switched_off_every_message_is_queued(tmp_path):
    s = MailyardServer(tmp_path, overrides={"delivery": {"direct_local": False}})
    s.add_user("dora@example.test", "pw")
    with s:
        code, text = _send(s, "someone@remote.test", ["dora@example.test"],
                           b"Subject: queued anyway\r\n\r\nhi\r\n")
        assert code == 250 and b"Queued as" in text
        assert len(wait_for(lambda: _subject(s, "dora@example.test", b"queued anyway"))) == 1

"""End to end: per-user quota (RFC 9208 resources) over real SMTP and the real CLI.

A user at quota is refused at RCPT with 552 5.2.2 (RFC 3463 3.3: mailbox full)
while another recipient of the same transaction is accepted and gets the message;
a message that only goes over the limit once its size is known is accepted and
bounces at delivery, with 5.2.2 in the report, and the mailbox is left as it was."""

from __future__ import annotations

import json
import smtplib
import socket
import time

import pytest

from tests.support.mailyard_server import MailyardServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = MailyardServer(tmp_path_factory.mktemp("quota"))
    for user in ("alice", "bob", "carol", "dave"):
        s.add_user(f"{user}@example.test", "pw")
    with s:
        yield s


def _send(server: MailyardServer, sender: str, recipients: list[str],
          body: bytes) -> dict[str, tuple[int, bytes]]:
    """One transaction without SIZE=; the reply to each RCPT, and DATA's under ""."""
    replies: dict[str, tuple[int, bytes]] = {}
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=15) as s:
        s.ehlo("client.test")
        assert s.mail(sender)[0] == 250
        for rcpt in recipients:
            replies[rcpt] = s.rcpt(rcpt)
        if any(code == 250 for code, _ in replies.values()):
            replies[""] = s.data(body)
    return replies


def _quota(server: MailyardServer, address: str, *args: str) -> dict:
    return json.loads(server.cli("user", "quota", address, *args, "--json").stdout)


def _wait(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_user_at_quota_refused_at_rcpt_other_recipient_accepted(server):
    first = b"Subject: first\r\n\r\nfits\r\n"
    assert _send(server, "someone@remote.test", ["alice@example.test"], first)[""][0] == 250
    assert len(server.wait_for_messages("alice@example.test", 1)) == 1
    got = _quota(server, "alice@example.test", "--messages", "1")  # set while running
    assert got["messages"] == {"usage": 1, "limit": 1, "source": "user"}

    replies = _send(server, "someone@remote.test",
                    ["alice@example.test", "bob@example.test"],
                    b"Subject: second\r\n\r\nfor both\r\n")
    code, text = replies["alice@example.test"]
    assert (code, text.split()[0]) == (552, b"5.2.2")
    assert replies["bob@example.test"][0] == 250 and replies[""][0] == 250
    assert any(b"for both" in m for m in server.wait_for_messages("bob@example.test", 1))
    assert server.wait_queue_empty()
    assert len(server.messages("alice@example.test")) == 1  # only the first

    # Raised again, the same user takes mail at once (limits are read per transaction).
    assert _quota(server, "alice@example.test", "--messages", "0")["messages"]["limit"] is None
    replies = _send(server, "someone@remote.test", ["alice@example.test"],
                    b"Subject: third\r\n\r\nroom again\r\n")
    assert replies["alice@example.test"][0] == 250
    assert len(server.wait_for_messages("alice@example.test", 2)) == 2


def test_over_quota_at_delivery_bounces_with_5_2_2(server):
    """Without SIZE=, RCPT only knows the mailbox is not full yet; the message is too
    big for the room left, so delivery refuses it for good and bob gets the bounce."""
    assert _quota(server, "carol@example.test", "--storage", "2K")["storage"]["limit"] == 2048
    big = b"Subject: too big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40
    replies = _send(server, "bob@example.test", ["carol@example.test"], big)
    assert replies["carol@example.test"][0] == 250 and replies[""][0] == 250

    def bounces() -> list[bytes]:
        return [m for m in server.messages("bob@example.test")
                if b"multipart/report" in m and b"carol@example.test" in m]

    [bounce] = _wait(bounces)
    assert b"Status: 5.2.2" in bounce
    assert b"Final-Recipient: rfc822; carol@example.test" in bounce
    assert server.messages("carol@example.test") == []
    assert _quota(server, "carol@example.test")["storage"]["usage"] == 0


def test_pipelined_rcpts_answered_in_order_while_the_usage_is_read(server):
    """RFC 2920: the replies of a pipelined group come back in order, also when the
    quota check of one RCPT waits for a usage read in a thread.  RFC 1870: the
    declared SIZE= is what the message would add."""
    _quota(server, "dave@example.test", "--storage", "50")
    with socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=15) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        s.sendall(b"EHLO client.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"MAIL FROM:<someone@remote.test> SIZE=100\r\n"
                  b"RCPT TO:<dave@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
                  b"RCPT TO:<dave+tag@example.test>\r\nDATA\r\n")
        replies = [f.readline() for _ in range(5)]
        assert [r[:9] for r in replies] == [b"250 2.1.0", b"552 5.2.2", b"250 2.1.5",
                                           b"552 5.2.2", b"354 End d"], replies
        s.sendall(b"Subject: pipelined\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        assert f.readline().startswith(b"250 ")
    assert any(b"pipelined" in m for m in _wait(
        lambda: [m for m in server.messages("bob@example.test") if b"pipelined" in m]))

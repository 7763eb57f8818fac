"""What comes back for transactional messages acts on the global suppression list, on
a real ``mailyard serve``: messages sent with ``POST /api/v1/messages`` to a fake next
hop, which refuses one address for good (550 5.1.1) and another for now (450) until
the queue lifetime ends, and an RFC 3464 DSN sent over SMTP to a message's VERP
address.  The user sees it in the API: the next message to a suppressed address is
refused (422 ``recipients_suppressed``) and the suppression is listed with its reason.
``bulk.soft_bounce_threshold`` is 2 here: two messages that soft-bounce suppress."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fake_mx import FakeMx
from tests.support.mailyard_server import MailyardServer, free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


class World:
    def __init__(self, srv: MailyardServer, mx: FakeMx, client: httpx.Client,
                 admin: httpx.Client) -> None:
        self.srv, self.mx, self.client, self.admin = srv, mx, client, admin

    def send(self, to: str, subject: str) -> httpx.Response:
        return self.client.post("/api/v1/messages", json={
            "from": "app@example.test", "to": [to], "subject": subject, "text": "Hello."})

    def suppression(self, address: str) -> dict[str, Any] | None:
        resp = self.admin.get(f"/api/v1/suppressions/{address}")
        return resp.json() if resp.status_code == 200 else None


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    port = free_port()
    with FakeMx("127.0.0.1", port) as mx:
        mx.script(rcpt_replies={
            "gone@remote.test": "550 5.1.1 <gone@remote.test>: Recipient address "
                                "rejected: User unknown in local recipient table",
            "busy@remote.test": "450 4.2.1 <busy@remote.test>: try again later"})
        srv = MailyardServer(tmp_path_factory.mktemp("txbounce"), http=True, overrides={
            "bulk": {"soft_bounce_threshold": 2},
            # A lifetime of seconds: a temporary failure expires at the second attempt.
            "delivery": {"max_lifetime": 3, "retry_schedule": [1],
                         "transports": [{"domain": "remote.test",
                                         "nexthop": f"127.0.0.1:{port}", "tls": "none"}]}})
        srv.add_user("app@example.test", "x")
        with srv, srv.api_client("send", name="app") as client, \
                srv.api_client("contacts", name="admin") as admin:
            yield World(srv, mx, client, admin)


def _refused(resp: httpx.Response) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "recipients_suppressed"


def test_a_550_at_rcpt_suppresses_the_address(world: World) -> None:
    assert world.send("gone@remote.test", "Your receipt").status_code == 202
    found = wait_for(timeout=40.0, check=lambda: world.suppression("gone@remote.test"))
    assert found and found["reason"] == "hard-bounce" and "5.1.1" in found["note"]
    _refused(world.send("Gone@remote.test", "Another receipt"))
    assert world.srv.wait_queue_empty()


def test_expired_messages_are_soft_bounces_that_suppress_at_the_threshold(
        world: World) -> None:
    assert world.send("busy@remote.test", "first").status_code == 202
    assert world.srv.wait_queue_empty()
    log_file = world.srv.root / "mailyard.log"
    # The first expiry is counted but does not suppress (1 of 2).
    assert world.suppression("busy@remote.test") is None
    assert world.send("busy@remote.test", "second").status_code == 202
    found = wait_for(timeout=40.0, check=lambda: world.suppression("busy@remote.test"))
    assert found and found["reason"] == "soft-bounces", log_file.read_text()[-3000:]
    assert "2 soft bounces" in found["note"]
    _refused(world.send("busy@remote.test", "third"))


def _dsn(verp: str, recipient: str, status: str, text: str) -> bytes:
    """An RFC 3464 report (section 2.3: per-recipient fields) on the returned message."""
    return (
        f"From: MAILER-DAEMON@mx.remote.test\r\nTo: {verp}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThe mailbox is full.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.remote.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {text}\r\n"
        "--b1--\r\n").encode()


def test_dsns_to_the_verp_address_count_once_per_message(world: World) -> None:
    """The next hop accepted both messages; the recipient's own server reports later
    that the mailbox is full (RFC 3463 5.2.2: soft)."""
    before = len(world.mx.messages)
    assert world.send("full@remote.test", "one").status_code == 202
    assert world.send("full@remote.test", "two").status_code == 202
    accepted = world.mx.wait_messages(before + 2)[before:]
    senders = [m.mail_from for m in accepted]
    assert len(set(senders)) == 2 and all(s.startswith("bounces+") for s in senders)
    report = _dsn(senders[0], "full@remote.test", "5.2.2", "552 5.2.2 mailbox full")
    with smtplib.SMTP("127.0.0.1", world.srv.ports["smtp"], timeout=15) as s:
        s.sendmail("", [senders[0]], report)
        s.sendmail("", [senders[0]], report)  # the same report twice: one message
    assert world.srv.wait_queue_empty()
    assert world.suppression("full@remote.test") is None
    with smtplib.SMTP("127.0.0.1", world.srv.ports["smtp"], timeout=15) as s:
        s.sendmail("", [senders[1]], _dsn(senders[1], "full@remote.test", "5.2.2",
                                          "552 5.2.2 mailbox full"))
    found = wait_for(timeout=40.0, check=lambda: world.suppression("full@remote.test"))
    assert found and found["reason"] == "soft-bounces"
    _refused(world.send("full@remote.test", "three"))

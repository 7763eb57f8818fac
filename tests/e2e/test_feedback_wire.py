"""Bounces, complaints and unsubscribes against a real ``mailyard serve``: a campaign
message refused with 550 at RCPT by the next hop suppresses its contact at once; an
RFC 3464 DSN, an RFC 5965 complaint and a mailto unsubscribe sent over SMTP act on the
contact their VERP token names; a forged token is refused at RCPT."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailyard.bulk.campaigns.model import CampaignSpec
from mailyard.bulk.model import Consent, MembershipStatus, SuppressionReason
from mailyard.bulk.report import BounceType, EventKind
from mailyard.config import load_config
from mailyard.daemon.secret import load_server_secret
from mailyard.feedback.verp import CampaignRecipient, verp_address, verp_key
from mailyard.services.setup import open_campaign_store, open_contacts
from tests.support.fake_mx import FakeMx
from tests.support.mailyard_server import MailyardServer, free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SAMPLES = Path(__file__).parents[1] / "unit" / "feedback" / "samples"
DOMAIN = "example.test"


class World:
    def __init__(self, srv: MailyardServer, mx: FakeMx) -> None:
        self.srv = srv
        self.mx = mx
        config = load_config(srv.config_path)
        self.contacts = open_contacts(config)
        self.campaigns = open_campaign_store(self.contacts)
        self.key = verp_key(load_server_secret(srv.data_dir))
        self.contacts.create_list("news")
        self.contacts.create_list("other")

    def contact(self, address: str) -> int:
        for name in ("news", "other"):
            self.contacts.set_member(name, address, MembershipStatus.CONFIRMED,
                                     Consent(time.time(), "", "test"))
        return self.contacts.get(address).id

    def campaign(self, name: str) -> int:
        return self.campaigns.add_campaign(name, CampaignSpec(lists=["news"]),
                                           time.time()).id

    def verp(self, campaign_id: int, contact_id: int, prefix: str = "bounces") -> str:
        return verp_address(CampaignRecipient(campaign_id, contact_id), self.key, DOMAIN,
                            prefix=prefix)

    def statuses(self, address: str) -> dict[str, MembershipStatus]:
        return {m.list_name: m.status for m in
                self.contacts.store.memberships_of(self.contacts.get(address).id)}

    def smtp(self, sender: str, rcpt: str, content: bytes) -> None:
        with smtplib.SMTP("127.0.0.1", self.srv.ports["smtp"], timeout=15) as s:
            s.sendmail(sender, [rcpt], content)


def events(world: World, campaign_id: int, kind: EventKind) -> list[Any]:
    """The campaign's events of ``kind``, once there are some: the event is written
    after the suppression and the memberships, so they are final by then."""
    return wait_for(lambda: [e for e in world.campaigns.events(campaign_id)
                             if e.kind is kind])


def sample(name: str, token: str) -> bytes:
    data = (SAMPLES / name).read_bytes().replace(b"TOKEN", token.encode())
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("feedback")
    port = free_port()
    with FakeMx("127.0.0.1", port) as mx:
        mx.script(rcpt_replies={
            "gone@remote.test": "550 5.1.1 <gone@remote.test>: Recipient address "
                                "rejected: User unknown in local recipient table",
            "busy@remote.test": "450 4.2.1 <busy@remote.test>: try again later"})
        # A lifetime of seconds: a temporary failure expires at the second attempt.
        srv = MailyardServer(root, overrides={"delivery": {
            "max_lifetime": 3, "retry_schedule": [1],
            "transports": [{"domain": "remote.test", "nexthop": f"127.0.0.1:{port}",
                            "tls": "none"}]}})
        with srv:
            yield World(srv, mx)


def test_a_550_at_rcpt_suppresses_the_contact_without_waiting_for_a_dsn(world: World):
    gone = world.contact("gone@remote.test")
    here = world.contact("here@remote.test")
    cid = world.campaign("spring")
    for contact_id, address in ((gone, "gone@remote.test"), (here, "here@remote.test")):
        world.srv.cli("send", "--from", world.verp(cid, contact_id), "--to", address,
                      "--subject", "Spring news", input=b"Hello.\n")
    assert events(world, cid, EventKind.BOUNCED)
    supp = world.contacts.store.suppression("gone@remote.test")
    assert supp is not None and supp.reason is SuppressionReason.HARD_BOUNCE
    assert "5.1.1" in supp.note
    assert world.statuses("gone@remote.test") == {"news": MembershipStatus.BOUNCED,
                                                  "other": MembershipStatus.CONFIRMED}
    # Our own DSN to the VERP sender is processed here, not sent out: the queue
    # empties and the next hop saw only the one accepted message.
    assert world.srv.wait_queue_empty()
    delivered = events(world, cid, EventKind.DELIVERED)
    assert [e.contact_id for e in delivered] == [here]
    assert [m.recipients for m in world.mx.messages] == [["here@remote.test"]]
    bounced = [e for e in world.campaigns.events(cid) if e.kind is EventKind.BOUNCED]
    assert [(e.contact_id, e.bounce, e.domain) for e in bounced] == [
        (gone, BounceType.HARD, "remote.test")]
    log_file = world.srv.root / "mailyard.log"
    assert wait_for(lambda: "feedback processed" in log_file.read_text())


def test_temporary_failures_until_expiry_are_a_soft_bounce(world: World):
    busy = world.contact("busy@remote.test")
    cid = world.campaign("summer")
    world.srv.cli("send", "--from", world.verp(cid, busy), "--to", "busy@remote.test",
                  "--subject", "Summer news", input=b"Hello.\n")
    [bounce] = events(world, cid, EventKind.BOUNCED)
    assert bounce.bounce is BounceType.SOFT
    deferred = [e for e in world.campaigns.events(cid) if e.kind is EventKind.DEFERRED]
    assert deferred and all(e.contact_id == busy for e in deferred)
    # One soft bounce of three: not suppressed, still on the list.
    assert world.contacts.store.suppression("busy@remote.test") is None
    assert world.statuses("busy@remote.test")["news"] is MembershipStatus.CONFIRMED
    assert world.srv.wait_queue_empty()
    assert [e.kind for e in world.campaigns.events(cid)
            if e.kind is EventKind.BOUNCED] == [EventKind.BOUNCED]


def test_an_rfc3464_dsn_to_the_verp_address_suppresses(world: World):
    ann = world.contact("ann@elsewhere.test")
    cid = world.campaign("dsn")
    verp = world.verp(cid, ann)
    token = verp.partition("+")[2].partition("@")[0]
    dsn = sample("postfix-dsn.eml", token)
    world.smtp("", verp, dsn)
    assert events(world, cid, EventKind.BOUNCED)
    supp = world.contacts.store.suppression("ann@elsewhere.test")
    assert supp is not None and supp.reason is SuppressionReason.HARD_BOUNCE
    assert world.statuses("ann@elsewhere.test")["news"] is MembershipStatus.BOUNCED
    [event] = list(world.campaigns.events(cid))
    assert (event.kind, event.bounce, event.contact_id) == (EventKind.BOUNCED,
                                                            BounceType.HARD, ann)


def test_an_arf_complaint_to_the_complaint_address_suppresses(world: World):
    """RFC 5965: the reported message carries our VERP Return-Path."""
    bob = world.contact("bob@elsewhere.test")
    cid = world.campaign("arf")
    report = (
        "From: <fbl@provider.test>\r\nTo: <fbl@example.test>\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
        'report-type=feedback-report; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\r\n"
        "--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        "User-Agent: Provider-FBL/1.0\r\nVersion: 1\r\n\r\n"
        "--b\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{world.verp(cid, bob)}>\r\nFrom: news@example.test\r\n"
        f"To: bob@elsewhere.test\r\nFeedback-ID: {cid}:news:campaign:mx.example.test\r\n"
        "Subject: News\r\n\r\nHello.\r\n\r\n--b--\r\n").encode()
    world.smtp("fbl@provider.test", "fbl@example.test", report)
    assert events(world, cid, EventKind.COMPLAINED)
    supp = world.contacts.store.suppression("bob@elsewhere.test")
    assert supp is not None and supp.reason is SuppressionReason.COMPLAINT
    assert world.statuses("bob@elsewhere.test")["news"] is MembershipStatus.COMPLAINED
    assert [e.kind for e in world.campaigns.events(cid)] == [EventKind.COMPLAINED]


def test_mailto_unsubscribe_ends_the_membership(world: World):
    """RFC 2369 3.2 List-Unsubscribe mailto: the message is the request."""
    cat = world.contact("cat@elsewhere.test")
    cid = world.campaign("mailto")
    world.smtp("cat@elsewhere.test", world.verp(cid, cat, prefix="unsubscribe"),
               b"From: cat@elsewhere.test\r\nSubject: unsubscribe\r\n\r\n\r\n")
    assert events(world, cid, EventKind.UNSUBSCRIBED)
    assert world.statuses("cat@elsewhere.test")["news"] is MembershipStatus.UNSUBSCRIBED
    assert world.statuses("cat@elsewhere.test")["other"] is MembershipStatus.CONFIRMED
    assert world.contacts.store.suppression("cat@elsewhere.test") is None
    assert [e.kind for e in world.campaigns.events(cid)] == [EventKind.UNSUBSCRIBED]


def test_a_forged_token_is_refused_at_rcpt(world: World):
    dee = world.contact("dee@elsewhere.test")
    verp = world.verp(world.campaign("forged"), dee)
    token = verp.partition("+")[2].partition("@")[0]
    forged = verp.replace(token, token[:-2] + ("aa" if token[-2:] != "aa" else "bb"))
    dsn = sample("postfix-dsn.eml", token)
    for rcpt in (forged, "bounces+nonsense@example.test", "unsubscribe+x@example.test"):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            world.smtp("", rcpt, dsn)
        [(code, text)] = refused.value.recipients.values()
        assert code == 550 and text.startswith(b"5.1.1")
    assert world.contacts.store.suppression("dee@elsewhere.test") is None


def test_unreadable_reports_and_auto_replies_are_dropped_without_a_bounce(world: World):
    eve = world.contact("eve@elsewhere.test")
    cid = world.campaign("junk")
    verp = world.verp(cid, eve)
    junk = (b"Content-Type: multipart/report; boundary=\"x\"\r\n\r\n--x\r\n"
            + b"\xff\xfe garbage\r\n" * 5000)
    ooo = sample("ooo-rfc3834.eml", "")
    world.smtp("", verp, junk)
    world.smtp("eve@elsewhere.test", verp, ooo)
    assert world.srv.wait_queue_empty()
    log_file = world.srv.root / "mailyard.log"
    log = wait_for(lambda: "verdict=auto-reply" in log_file.read_text()
                   and "verdict=not-bounce" in log_file.read_text())
    assert log
    assert world.contacts.store.suppression("eve@elsewhere.test") is None
    assert list(world.campaigns.events(cid)) == []
    assert world.statuses("eve@elsewhere.test")["news"] is MembershipStatus.CONFIRMED
    # Nothing went out: no answer to the reports, no bounce of a bounce.
    assert all(m.recipients != ["eve@elsewhere.test"] for m in world.mx.messages)

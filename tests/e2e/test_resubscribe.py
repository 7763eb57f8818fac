"""Coming back through the public subscribe form after leaving a list, on a real
``mailyard serve`` over HTTP and SMTP.

* After a complaint (an RFC 5965 report to the complaint address), the membership is
  ``complained`` and the address suppressed; the form answers as for anyone, sends no
  mail and changes nothing, even once the operator has lifted the suppression.
* After an unsubscribe (the mailto ``List-Unsubscribe``, RFC 2369 3.2), the form sends
  a fresh confirmation link, even for a single opt-in list; the membership stays
  ``unsubscribed`` until the link's button is pressed.
"""

from __future__ import annotations

import json
import re
import smtplib
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default

import httpx
import pytest

from mailyard.bulk.campaigns.model import CampaignSpec
from mailyard.bulk.model import MembershipStatus, SuppressionReason
from mailyard.config import load_config
from mailyard.daemon.secret import load_server_secret
from mailyard.feedback.verp import CampaignRecipient, verp_address, verp_key
from mailyard.services.setup import open_campaign_store, open_contacts
from tests.support.mailyard_server import MailyardServer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

THANKS = "If this address can be subscribed"


class World:
    def __init__(self, srv: MailyardServer) -> None:
        self.srv = srv
        config = load_config(srv.config_path)
        self.contacts = open_contacts(config)
        self.campaigns = open_campaign_store(self.contacts)
        self.key = verp_key(load_server_secret(srv.data_dir))

    def form(self, list_name: str, address: str) -> None:
        resp = httpx.post(f"{self.srv.http_url}/subscribe/{list_name}",
                          data={"email": address, "name": "", "website": ""})
        assert resp.status_code == 200 and THANKS in resp.text, resp.text
        assert self.srv.wait_queue_empty()  # a confirmation mail is queued before the answer

    def status(self, list_name: str, address: str) -> str:
        shown = json.loads(self.srv.cli("contact", "show", address, "--json").stdout)
        return next(m["status"] for m in shown["memberships"] if m["list"] == list_name)

    def verp(self, campaign_id: int, address: str, prefix: str) -> str:
        contact_id = self.contacts.get(address).id
        return verp_address(CampaignRecipient(campaign_id, contact_id), self.key,
                            "example.test", prefix=prefix)

    def smtp(self, sender: str, rcpt: str, content: bytes) -> None:
        with smtplib.SMTP("127.0.0.1", self.srv.ports["smtp"], timeout=15) as s:
            s.sendmail(sender, [rcpt], content)


def confirm_link(world: World, address: str, count: int) -> str:
    messages = world.srv.wait_for_messages(address, count)
    assert len(messages) == count
    text = message_from_bytes(messages[-1], policy=default).get_body(
        ("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"(http://\S+/confirm/\S+)", text)
    assert found, text
    return found.group(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = MailyardServer(tmp_path_factory.mktemp("resub"), http=True,
                         overrides={"http": {"subscribe_rate": 100}})
    for user in ("ann", "bob"):
        srv.add_user(f"{user}@example.test", "x")
    with srv:
        srv.cli("list", "create", "news", "--double-opt-in")
        srv.cli("list", "create", "open")
        yield World(srv)


def test_a_complainer_is_not_resubscribed_by_the_form(world: World) -> None:
    world.form("news", "ann@example.test")
    assert httpx.post(confirm_link(world, "ann@example.test", 1)).status_code == 200
    assert world.status("news", "ann@example.test") == "confirmed"
    cid = world.campaigns.add_campaign("spring", CampaignSpec(lists=["news"]),
                                       time.time()).id
    report = (
        "From: <fbl@provider.test>\r\nTo: <fbl@example.test>\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
        'report-type=feedback-report; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\r\n"
        "--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        "User-Agent: Provider-FBL/1.0\r\nVersion: 1\r\n\r\n"
        "--b\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{world.verp(cid, 'ann@example.test', 'bounces')}>\r\n"
        "From: news@example.test\r\nTo: ann@example.test\r\nSubject: News\r\n\r\n"
        "Hello.\r\n\r\n--b--\r\n").encode()
    world.smtp("fbl@provider.test", "fbl@example.test", report)
    assert wait_for(lambda: world.status("news", "ann@example.test") == "complained")
    supp = world.contacts.store.suppression("ann@example.test")
    assert supp is not None and supp.reason is SuppressionReason.COMPLAINT
    # The form: the usual answer, no mail, nothing changed.
    world.form("news", "ann@example.test")
    world.form("open", "ann@example.test")  # another list: suppressed, so not there either
    assert len(world.srv.messages("ann@example.test")) == 1
    assert world.status("news", "ann@example.test") == "complained"
    shown = json.loads(world.srv.cli("contact", "show", "ann@example.test", "--json").stdout)
    assert [m["list"] for m in shown["memberships"]] == ["news"]
    # Lifting the suppression does not let the form undo the complaint.
    world.srv.cli("contact", "unsuppress", "ann@example.test")
    world.form("news", "ann@example.test")
    assert len(world.srv.messages("ann@example.test")) == 1
    assert world.status("news", "ann@example.test") == "complained"


def test_an_unsubscribed_person_comes_back_through_a_confirmation(world: World) -> None:
    world.form("open", "bob@example.test")  # single opt-in: confirmed, no mail
    assert world.status("open", "bob@example.test") == "confirmed"
    cid = world.campaigns.add_campaign("summer", CampaignSpec(lists=["open"]),
                                       time.time()).id
    world.smtp("bob@example.test", world.verp(cid, "bob@example.test", "unsubscribe"),
               b"From: bob@example.test\r\nSubject: unsubscribe\r\n\r\n\r\n")
    assert wait_for(lambda: world.status("open", "bob@example.test") == "unsubscribed")
    # The form right after leaving sends nothing (a new link at most every ten
    # minutes); an hour later it does.
    world.form("open", "bob@example.test")
    assert world.srv.messages("bob@example.test") == []
    bob = world.contacts.get("bob@example.test")
    mlist = world.contacts.get_list("open")
    world.contacts.store.set_membership(mlist.id, bob.id, MembershipStatus.UNSUBSCRIBED,
                                        now=time.time() - 3600)
    world.form("open", "bob@example.test")
    link = confirm_link(world, "bob@example.test", 1)
    assert world.status("open", "bob@example.test") == "unsubscribed"
    page = httpx.get(link)  # shows the button, changes nothing
    assert page.status_code == 200 and "<form method=post" in page.text
    assert world.status("open", "bob@example.test") == "unsubscribed"
    done = httpx.post(link, headers={"Accept": "application/json"})
    assert done.status_code == 200 and done.json()["status"] == "confirmed"
    shown = json.loads(world.srv.cli("contact", "show", "bob@example.test", "--json").stdout)
    [member] = [m for m in shown["memberships"] if m["list"] == "open"]
    assert member["status"] == "confirmed"
    assert member["confirmed"]["source"] == "confirmation link"
    assert member["consent"]["source"] == "confirmation link"

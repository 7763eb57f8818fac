"""A campaign sent by a real ``mailyard serve``: the campaign worker picks the
scheduled campaign, queues one message per confirmed, unsuppressed contact through
ingest (DKIM-signed, VERP envelope sender, list headers, tracking) in the campaign's
delivery pool, and the dispatcher relays them to a fake next hop on loopback, which
sees the pool's source address.  Messages are rendered and DKIM-signed in a render
process (``bulk.render_workers``); ingest keeps those signatures, and every message
verifies with dkimpy."""

from __future__ import annotations

import email
import email.policy
import io
import time

import pytest

from mailyard.bulk.campaigns.model import CampaignSpec, CampaignState
from mailyard.bulk.importer import ImportFormat
from mailyard.bulk.model import MembershipStatus, SuppressionReason
from mailyard.config import load_config
from mailyard.daemon.secret import load_server_secret
from mailyard.dkim.keys import KeyStore
from mailyard.feedback.verp import CampaignRecipient, parse_verp_address, verp_key
from mailyard.services.setup import open_campaign_store, open_contacts
from tests.support.fake_mx import FakeMx
from tests.support.mailyard_server import MailyardServer, free_port

dkim = pytest.importorskip("dkim")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PUBLIC = "https://news.example.test"

HTML = """<html><head><style>p { color: #333; }</style></head><body>
<p>Hello {{ name }}, your plan is {{ attributes.plan }}.</p>
<p><a href="https://shop.example/offer">Offer</a> <a href="https://shop.example/faq">FAQ</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>"""


def fill(srv: MailyardServer, count: int, *, domain: str, spec: CampaignSpec) -> int:
    """Contacts on list "news", a campaign scheduled now; returns its id."""
    contacts = open_contacts(load_config(srv.config_path))
    contacts.create_list("news")
    rows = "address,name,plan\n" + "".join(
        f"r{i}@{domain},Reader {i},{'pro' if i % 2 else 'free'}\n" for i in range(count))
    contacts.import_contacts(io.BytesIO(rows.encode()), ImportFormat.CSV, "news")
    store = open_campaign_store(contacts)
    campaign = store.add_campaign("spring", spec, time.time())
    store.move(campaign.id, CampaignState.DRAFT, CampaignState.SCHEDULED, time.time(),
               send_at=time.time())
    return campaign.id


def test_small_campaign_through_a_pool_with_every_header(tmp_path):
    port = free_port()
    count = 300
    overrides = {
        "bulk": {"bounce_domain": "bounces.example.test", "render_workers": 1},
        "http": {"public_url": PUBLIC},
        "delivery": {
            "pools": [{"name": "bulk", "source_addresses": ["127.0.0.2"],
                       "helo_name": "bulk.example.test"}],
            "transports": [{"domain": "readers.test", "nexthop": f"127.0.0.1:{port}",
                            "tls": "none"}]}}
    srv = MailyardServer(tmp_path, overrides=overrides)
    srv.cli("domain", "dkim", "rotate", "example.test")
    spec = CampaignSpec(from_address="news@example.test", from_name="Example News",
                        subject="Spring news for {{ name }}", html=HTML, lists=["news"],
                        pool="bulk", rate_per_minute=0)
    with FakeMx("127.0.0.1", port) as mx:
        campaign_id = fill(srv, count, domain="readers.test", spec=spec)
        contacts = open_contacts(load_config(srv.config_path))
        contacts.store.suppress("r7@readers.test", SuppressionReason.HARD_BOUNCE, "", 1.0)
        lst = contacts.store.get_list("news")
        r8 = contacts.store.get_contact("r8@readers.test")
        contacts.store.set_membership(lst.id, r8.id, MembershipStatus.UNSUBSCRIBED, now=1.0)
        srv.start(timeout=90)  # the HTTP worker's imports are slow on a busy machine
        try:
            got = mx.wait_messages(count - 2, timeout=120)
            store = open_campaign_store(open_contacts(load_config(srv.config_path)))
            deadline = time.monotonic() + 30
            while store.get_campaign(campaign_id).state is not CampaignState.FINISHED:
                assert time.monotonic() < deadline, srv.output()
                time.sleep(0.2)
            time.sleep(1.0)  # nothing more arrives
            got = list(mx.messages)
            sessions = mx.wait_sessions(1)
        finally:
            srv.stop()
    assert "dkim signature made before ingest not used" not in srv.output()
    records = {k.record_name: k.record for k in KeyStore(srv.data_dir).signing_keys(
        "example.test")}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode().rstrip("."), "").encode()
    recipients = sorted(m.recipients[0] for m in got)
    assert len(recipients) == len(set(recipients)) == count - 2
    assert "r7@readers.test" not in recipients and "r8@readers.test" not in recipients
    assert {s.peer for s in sessions} == {"127.0.0.2"}
    key = verp_key(load_server_secret(srv.data_dir))
    contacts = open_contacts(load_config(srv.config_path))
    ids = set()
    for m in got:
        contact = contacts.store.get_contact(m.recipients[0])
        assert parse_verp_address(m.mail_from, key) == CampaignRecipient(campaign_id,
                                                                         contact.id)
        assert m.mail_from.endswith("@bounces.example.test")
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        token = m.mail_from.split("+", 1)[1].split("@")[0]
        assert msg["DKIM-Signature"] and "d=example.test" in msg["DKIM-Signature"]
        assert dkim.verify(m.data, dnsfunc=dnsfunc), m.data[:2000]
        assert msg["List-Unsubscribe"] == (
            f"<{PUBLIC}/u/" + msg["List-Unsubscribe"].split("/u/")[1].split(">")[0]
            + f">, <mailto:unsubscribe+{token}@bounces.example.test>")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Id"] == "<news.bounces.example.test>"
        assert msg["Feedback-ID"] == f"{campaign_id}:news:campaign:mx.example.test"
        assert msg["Subject"] == f"Spring news for {contact.name}"
        html = msg.get_body(("html",)).get_content()
        assert f"{PUBLIC}/t/c/" in html and f"{PUBLIC}/t/o/" in html
        assert "shop.example/offer" not in html  # tracked
        assert msg.get_body(("plain",)) is not None
        ids.add(msg["Message-ID"])
    assert len(ids) == count - 2
    store = open_campaign_store(contacts)
    assert store.links(campaign_id)[:2] == ["https://shop.example/offer",
                                            "https://shop.example/faq"]
    queued = [e for e in store.events(campaign_id) if e.kind == "queued"]
    assert len(queued) == count - 2 and {e.domain for e in queued} == {"readers.test"}

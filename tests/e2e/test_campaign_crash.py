"""Crash safety of campaign sending: SIGKILL the whole server (supervisor, SMTP
workers, campaign worker) at random points while a campaign of a few thousand
recipients is being generated and delivered, restart it, and check the mailbox:
every recipient got exactly one message.

The recipients are sub-addresses of one local user (``sink+<n>@crash.test``), so
everything lands in one Maildir.  Local delivery names its file after the queue id,
so a delivery repeated after a kill is recognised and not stored twice: a second
file for one recipient can only come from a second message, that is from the
campaign engine queueing a recipient twice."""

from __future__ import annotations

import io
import random
import re
import sqlite3
import time

import pytest

from mailyard.bulk.campaigns.model import CampaignSpec, CampaignState
from mailyard.bulk.importer import ImportFormat
from mailyard.config import load_config
from mailyard.services.setup import open_campaign_store, open_contacts
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

COUNT = 2500
SINK = "sink@crash.test"
HTML = ("<html><body><p>Hello {{ name }}</p>"
        '<a href="https://example.com/{{ attributes.n }}">your page</a></body></html>')


def progress(srv: MailyardServer) -> dict[str, int]:
    with sqlite3.connect(srv.data_dir / "bulk.db", timeout=30) as conn:
        return dict(conn.execute(
            "SELECT state, count(*) FROM campaign_recipients GROUP BY state").fetchall())


def test_sigkill_while_sending_a_campaign_sends_each_recipient_one_message(tmp_path):
    rng = random.Random(20261201)
    srv = MailyardServer(tmp_path, domains=("crash.test",), workers=1,
                         overrides={"http": {"public_url": "https://news.crash.test"}})
    srv.add_user(SINK, "pw")
    contacts = open_contacts(load_config(srv.config_path))
    contacts.create_list("news")
    rows = "address,name,n\n" + "".join(f"sink+{i}@crash.test,Reader {i},{i}\n"
                                        for i in range(COUNT))
    contacts.import_contacts(io.BytesIO(rows.encode()), ImportFormat.CSV, "news")
    store = open_campaign_store(contacts)
    spec = CampaignSpec(from_address="news@crash.test", subject="Crash {{ name }}", html=HTML,
                        lists=["news"])
    campaign = store.add_campaign("crash", spec, time.time())
    store.move(campaign.id, CampaignState.DRAFT, CampaignState.SCHEDULED, time.time(),
               send_at=time.time())
    srv.start(timeout=90)
    kills = 0
    try:
        while kills < 6:
            time.sleep(0.5 + rng.random() * 2.0)
            if progress(srv).get("pending", 0) == 0 and kills >= 2:
                break  # everything is queued already
            srv.kill()
            kills += 1
            time.sleep(rng.random() * 0.3)
            srv.start(timeout=90)
        deadline = time.monotonic() + 300
        while store.get_campaign(campaign.id).state is not CampaignState.FINISHED:
            assert time.monotonic() < deadline, (progress(srv), srv.output())
            time.sleep(0.5)
        assert srv.wait_queue_empty(240), "the queue did not drain"
        files = srv.message_files(SINK)
    finally:
        srv.stop()
    per_recipient: dict[str, int] = {}
    for path in files:
        head = path.read_bytes().split(b"\n\n", 1)[0]
        found = re.search(rb"^To: .*<?(sink\+\d+@crash\.test)>?", head, re.M | re.I)
        assert found, head
        key = found.group(1).decode()
        per_recipient[key] = per_recipient.get(key, 0) + 1
    twice = {k: n for k, n in per_recipient.items() if n > 1}
    missing = [i for i in range(COUNT) if f"sink+{i}@crash.test" not in per_recipient]
    print(f"kills={kills} files={len(files)} progress={progress(srv)}")
    assert kills >= 2, "the campaign finished before the test could kill the server"
    assert not twice, f"recipients with more than one message: {list(twice.items())[:10]}"
    assert not missing, f"recipients without a message: {missing[:10]}"
    assert progress(srv) == {"queued": COUNT}
    queued = [e.contact_id for e in store.events(campaign.id) if e.kind == "queued"]
    assert len(queued) == len(set(queued)) == COUNT

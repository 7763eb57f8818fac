"""Tracking and unsubscribing end to end: the real ``mailyard serve`` with its HTTP
worker, hit over a socket with httpx; what the worker records is read back from the
campaign store on disk.

Open pixel (the GIF whatever the token), click redirect (302 to the stored link; 404
for a tampered or out-of-range token, never a redirect elsewhere), HEAD classified as
a machine, tracking switched off records nothing, the unsubscribe page changes
nothing while RFC 8058 one-click does at once, and hits answered just before a
shutdown are still written."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from mailyard.bulk.model import MembershipStatus
from mailyard.bulk.report import EventKind
from mailyard.bulk.tracking import TRANSPARENT_GIF, TokenKind, TrackingToken
from tests.support.campaign_seed import LINKS, SeededCampaign, seed_campaign
from tests.support.mailyard_server import MailyardServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailyardServer]:
    srv = MailyardServer(tmp_path_factory.mktemp("tracking"), http=True)
    srv.start(timeout=90)  # an HTTP worker imports FastAPI: slow on a busy machine
    try:
        yield srv
    finally:
        srv.__exit__()


@pytest.fixture(scope="module")
def seeded(server: MailyardServer) -> SeededCampaign:
    return seed_campaign(server.config_path)


@pytest.fixture
def client(server: MailyardServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30, follow_redirects=False,
                      headers={"User-Agent": BROWSER}) as c:
        yield c


def _data(seeded: SeededCampaign, campaign: int) -> list[dict[str, str]]:
    rows = seeded.store.db.conn().execute(
        "SELECT data FROM campaign_events WHERE campaign_id = ? ORDER BY id", (campaign,))
    return [json.loads(r[0]) for r in rows]


def test_pixel_and_click(seeded: SeededCampaign, client: httpx.Client) -> None:
    tracker = seeded.tracker()
    ann = seeded.contact_ids[0]
    resp = client.get(tracker.open_url(ann))
    assert resp.status_code == 200 and resp.content == TRANSPARENT_GIF
    assert resp.headers["content-type"] == "image/gif"
    assert "no-store" in resp.headers["cache-control"]
    resp = client.get(tracker.click_url(ann, LINKS[1]))
    assert resp.status_code == 302 and resp.headers["location"] == LINKS[1]
    events = seeded.wait_events(2)
    assert [(e.kind, e.contact_id, e.link, e.domain, e.machine) for e in events] == [
        (EventKind.OPENED, ann, None, "example.org", False),
        (EventKind.CLICKED, ann, 1, "example.org", False)]
    assert _data(seeded, seeded.tracked)[0] == {"ua": BROWSER, "ip": "127.0.0.1"}


def test_tampered_and_out_of_range_tokens(seeded: SeededCampaign,
                                          client: httpx.Client) -> None:
    before = len(seeded.events())
    good = seeded.tracker().click_url(seeded.contact_ids[1], LINKS[0]).rsplit("/", 1)[1]
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    past = seeded.signer.encode(TrackingToken(TokenKind.CLICK, seeded.tracked,
                                              seeded.contact_ids[1], len(LINKS)))
    for token in (tampered, past, "aHR0cHM6Ly9ldmlsLmV4YW1wbGU"):
        resp = client.get(f"/t/c/{token}")
        assert resp.status_code == 404 and "location" not in resp.headers
    resp = client.get(f"/t/o/{tampered}.gif")
    assert resp.status_code == 200 and resp.content == TRANSPARENT_GIF
    # A genuine hit afterwards marks where the worker has got to.
    client.get(seeded.tracker().open_url(seeded.contact_ids[1]))
    events = seeded.wait_events(before + 1)
    assert len(events) == before + 1 and events[-1].kind == EventKind.OPENED


def test_head_is_a_machine(seeded: SeededCampaign, client: httpx.Client) -> None:
    before = len(seeded.events())
    resp = client.head(seeded.tracker().click_url(seeded.contact_ids[2], LINKS[2]))
    assert resp.status_code == 302 and resp.headers["location"] == LINKS[2]
    [event] = seeded.wait_events(before + 1)[before:]
    assert event.kind == EventKind.CLICKED and event.machine
    assert _data(seeded, seeded.tracked)[-1]["why"] == "head-request"


def test_tracking_off_records_nothing(seeded: SeededCampaign, client: httpx.Client) -> None:
    quiet = seeded.tracker(seeded.untracked)
    ann = seeded.contact_ids[0]
    assert client.get(quiet.open_url(ann)).content == TRANSPARENT_GIF
    resp = client.get(quiet.click_url(ann, LINKS[0]))
    assert resp.status_code == 302 and resp.headers["location"] == LINKS[0]
    before = len(seeded.events())
    client.get(seeded.tracker().open_url(ann))  # the marker, after the quiet hits
    seeded.wait_events(before + 1)
    assert seeded.events(seeded.untracked) == []


def test_unsubscribe_get_changes_nothing_post_does(seeded: SeededCampaign,
                                                   client: httpx.Client) -> None:
    person = seeded.contact_ids[1]
    url = seeded.tracker().unsubscribe_url(person)

    def status() -> MembershipStatus:
        members = dict(seeded.contacts.members("news"))
        return members[person].status

    page = client.get(url)
    assert page.status_code == 200 and "<button" in page.text
    assert status() == MembershipStatus.CONFIRMED
    resp = client.post(url, content=b"List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200 and resp.json()["lists"] == ["news"]
    assert status() == MembershipStatus.UNSUBSCRIBED  # at once, no wait
    unsub = [e for e in seeded.events() if e.kind == EventKind.UNSUBSCRIBED]
    assert [(e.contact_id, e.domain) for e in unsub] == [(person, "example.net")]
    forged = url[:-1] + ("A" if url[-1] != "A" else "B")
    resp = client.post(forged, content=b"List-Unsubscribe=One-Click",
                       headers={"Accept": "application/json"})
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


def test_hits_before_shutdown_are_written(server: MailyardServer, seeded: SeededCampaign,
                                          client: httpx.Client) -> None:
    before = len(seeded.events())
    for _ in range(30):
        assert client.get(seeded.tracker().open_url(seeded.contact_ids[2])).status_code == 200
    server.stop()
    assert len(seeded.events()) == before + 30

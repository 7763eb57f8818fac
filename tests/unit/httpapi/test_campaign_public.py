"""The public campaign endpoints in-process (httpx's ASGI transport): the open pixel,
the click redirect (no open redirect), machine classification of what they record,
tracking switched off, the unsubscribe page and RFC 8058 one-click, the report page
and its signed link.  The hit recorder is flushed by hand, so nothing here waits."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailyard.apikeys.sqlite import SqliteKeyStore
from mailyard.bulk.campaigns.compose import SendSettings
from mailyard.bulk.campaigns.model import CampaignSpec
from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
from mailyard.bulk.model import Consent, MembershipStatus
from mailyard.bulk.report import CampaignEvent, EventKind
from mailyard.bulk.sqlite import SqliteContactStore
from mailyard.bulk.tracking import (
    TRANSPARENT_GIF,
    CampaignLinks,
    CampaignTracker,
    TokenKind,
    TokenSigner,
    TrackingToken,
)
from mailyard.http.app import create_app
from mailyard.http.context import HttpContext
from mailyard.http.ratelimit import RateLimiter
from mailyard.services.apikeys import ApiKeys
from mailyard.services.campaigns import Campaigns
from mailyard.services.contacts import ConfirmationMail, Contacts, Settings
from mailyard.services.report_pages import CampaignReports
from mailyard.services.tracking import CampaignCache, CampaignPublic, HitRecorder
from mailyard.services.unsubscribe import Unsubscribes

LINKS = ["https://shop.example/a", "https://shop.example/b", "https://shop.example/c"]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
NOW = 1_800_000_000.0


class World:
    def __init__(self, tmp: Path) -> None:
        self.now = NOW
        settings = Settings("n@example.org", "http://t", b"k" * 32, 3600, "mx.example.org")
        store = SqliteContactStore(tmp / "bulk.db", lambda a: a)
        self.contacts = Contacts(store, settings, clock=lambda: self.now)
        self.store = SqliteCampaignStore(store.db)
        self.keys = ApiKeys(SqliteKeyStore(tmp / "apikeys.db"))
        self.contacts.create_list("news")
        consent = Consent(NOW - 86400, "192.0.2.50", "form")
        self.contacts.set_member("news", "ann@Example.ORG", MembershipStatus.CONFIRMED, consent)
        self.contacts.set_member("news", "bob@example.net", MembershipStatus.CONFIRMED, consent)
        self.ann = self.contacts.get("ann@example.org").id
        self.bob = self.contacts.get("bob@example.net").id
        self.campaign = self.store.add_campaign("spring", CampaignSpec(
            subject="Spring", lists=["news"]), NOW - 7200).id
        self.store.add_links(self.campaign, 0, LINKS)
        self.quiet = self.store.add_campaign("quiet", CampaignSpec(
            subject="No tracking", lists=["news"], tracking=False), NOW - 7200).id
        self.store.add_links(self.quiet, 0, LINKS)
        self.signer = TokenSigner(b"t" * 32)
        self.recorder = HitRecorder(self.store, store)
        self.pub = CampaignPublic(
            self.signer, CampaignCache(self.store), self.recorder,
            Unsubscribes(self.store, store, self.signer, clock=lambda: self.now),
            CampaignReports(self.store, b"r" * 32, "http://t", clock=lambda: self.now))

        async def mailer(mail: ConfirmationMail) -> str:
            return "QID"

        campaigns = Campaigns(self.store, self.contacts, SendSettings(
            "http://t", "example.org", "mx.example.org", b"v" * 32, b"t" * 32, b"s" * 32))
        self.app = create_app(HttpContext(self.contacts, self.keys, mailer, RateLimiter(5, 60),
                                          clock=lambda: self.now, campaign_public=self.pub,
                                          campaigns=campaigns))

    def tracker(self, campaign: int) -> CampaignTracker:
        return CampaignTracker("http://t", campaign, self.signer,
                               CampaignLinks(self.store.links(campaign)))

    def call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("192.0.2.9", 1234),
                                            raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, url, **kw)
        return asyncio.run(run())

    def events(self, campaign: int, kind: EventKind | None = None) -> list[CampaignEvent]:
        self.recorder.flush()
        return [e for e in self.store.events(campaign) if kind is None or e.kind == kind]

    def data(self, campaign: int) -> list[str]:
        rows = self.store.db.conn().execute(
            "SELECT data FROM campaign_events WHERE campaign_id = ? ORDER BY id", (campaign,))
        return [r[0] for r in rows]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_open_pixel_records_an_open(world: World) -> None:
    resp = world.call("GET", world.tracker(world.campaign).open_url(world.ann),
                      headers={"User-Agent": BROWSER})
    assert resp.status_code == 200 and resp.content == TRANSPARENT_GIF
    assert resp.headers["content-type"] == "image/gif"
    assert "no-store" in resp.headers["cache-control"]
    [event] = world.events(world.campaign)
    assert (event.kind, event.contact_id, event.domain, event.machine) == (
        EventKind.OPENED, world.ann, "example.org", False)
    assert event.at == NOW
    assert '"ip":"192.0.2.9"' in world.data(world.campaign)[0].replace(" ", "")


@pytest.mark.parametrize("path", ["/t/o/AAAA.gif", "/t/o/nonsense", "/t/o/%00.gif"])
def test_bad_pixel_token_still_gets_the_gif_and_records_nothing(world: World,
                                                                  path: str) -> None:
    resp = world.call("GET", path)
    assert resp.status_code == 200 and resp.content == TRANSPARENT_GIF
    assert world.events(world.campaign) == []


def test_tampered_pixel_token_records_nothing(world: World) -> None:
    url = world.tracker(world.campaign).open_url(world.ann)
    token = url.rsplit("/", 1)[1][:-4]
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert world.call("GET", f"/t/o/{flipped}.gif").content == TRANSPARENT_GIF
    click = world.signer.encode(TrackingToken(TokenKind.CLICK, world.campaign, world.ann, 0))
    assert world.call("GET", f"/t/o/{click}.gif").status_code == 200  # another kind
    assert world.events(world.campaign) == []


def test_click_redirects_to_the_stored_link(world: World) -> None:
    url = world.tracker(world.campaign).click_url(world.ann, LINKS[1])
    resp = world.call("GET", url, headers={"User-Agent": BROWSER})
    assert resp.status_code == 302 and resp.headers["location"] == LINKS[1]
    [event] = world.events(world.campaign)
    assert (event.kind, event.link, event.machine) == (EventKind.CLICKED, 1, False)


def test_no_open_redirect(world: World) -> None:
    """A forged, altered or out-of-range token is 404, never a redirect."""
    good = world.tracker(world.campaign).click_url(world.ann, LINKS[0]).rsplit("/", 1)[1]
    past = world.signer.encode(TrackingToken(TokenKind.CLICK, world.campaign, world.ann, 3))
    other_key = TokenSigner(b"x" * 32).encode(
        TrackingToken(TokenKind.CLICK, world.campaign, world.ann, 0))
    unknown = world.signer.encode(TrackingToken(TokenKind.CLICK, 999, world.ann, 0))
    opener = world.signer.encode(TrackingToken(TokenKind.OPEN, world.campaign, world.ann))
    for token in (good[:-1] + ("A" if good[-1] != "A" else "B"), past, other_key, unknown,
                  opener, "https:%2F%2Fevil.example", good + "A"):
        resp = world.call("GET", f"/t/c/{token}")
        assert resp.status_code == 404, token
        assert "location" not in resp.headers
    resp = world.call("GET", f"/t/c/{past}", headers={"Accept": "application/json"})
    assert resp.headers["content-type"] == "application/problem+json"
    assert world.events(world.campaign) == []


def test_link_added_after_the_cache_was_filled(world: World) -> None:
    tracker = world.tracker(world.campaign)
    assert world.call("GET", tracker.click_url(world.ann, LINKS[0])).status_code == 302
    new = tracker.click_url(world.ann, "https://shop.example/new")
    world.store.add_links(world.campaign, 3, ["https://shop.example/new"])
    resp = world.call("GET", new)
    assert resp.status_code == 302 and resp.headers["location"] == "https://shop.example/new"


def test_head_and_scanner_and_early_clicks_are_machine(world: World) -> None:
    world.store.record_events(world.campaign, [CampaignEvent(
        EventKind.DELIVERED, NOW - 3, world.bob, "example.net")])
    tracker = world.tracker(world.campaign)
    assert world.call("HEAD", tracker.click_url(world.ann, LINKS[0]),
                      headers={"User-Agent": BROWSER}).status_code == 302
    world.call("GET", tracker.open_url(world.ann), headers={"User-Agent": "Mozilla/5.0"})
    world.call("GET", tracker.click_url(world.bob, LINKS[0]), headers={"User-Agent": BROWSER})
    world.call("GET", tracker.open_url(world.bob),
               headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"})
    events = world.events(world.campaign)
    machine = [(e.kind, e.contact_id, e.machine) for e in events
               if e.kind != EventKind.DELIVERED]
    assert machine == [(EventKind.CLICKED, world.ann, True), (EventKind.OPENED, world.ann, True),
                       (EventKind.CLICKED, world.bob, True), (EventKind.OPENED, world.bob, False)]
    data = world.data(world.campaign)
    assert "head-request" in data[1] and "apple-privacy" in data[2]
    assert "too-soon-after-delivery" in data[3] and "image-proxy" in data[4]


def test_many_links_at_once_is_machine(world: World) -> None:
    tracker = world.tracker(world.campaign)
    for i, link in enumerate(LINKS):
        world.now = NOW + i * 0.2
        world.call("GET", tracker.click_url(world.ann, link), headers={"User-Agent": BROWSER})
    world.now = NOW + 60
    world.call("GET", tracker.click_url(world.ann, LINKS[0]), headers={"User-Agent": BROWSER})
    assert [e.machine for e in world.events(world.campaign)] == [False, False, True, False]


def test_tracking_off_records_nothing(world: World) -> None:
    tracker = world.tracker(world.quiet)
    assert world.call("GET", tracker.open_url(world.ann)).content == TRANSPARENT_GIF
    resp = world.call("GET", tracker.click_url(world.ann, LINKS[2]))
    assert resp.status_code == 302 and resp.headers["location"] == LINKS[2]
    assert world.events(world.quiet) == []


def test_erased_contact_records_nothing(world: World) -> None:
    url = world.tracker(world.campaign).open_url(world.ann)
    world.contacts.erase("ann@example.org")
    assert world.call("GET", url).status_code == 200
    assert world.events(world.campaign) == []


def test_recorder_buffer_is_bounded(world: World) -> None:
    recorder = HitRecorder(world.store, world.contacts.store, max_pending=2)
    from mailyard.bulk.engagement import Hit
    hit = Hit(TrackingToken(TokenKind.OPEN, world.campaign, world.ann), NOW)
    assert recorder.add(hit) and recorder.add(hit) and not recorder.add(hit)
    assert recorder.flush() == 2 and recorder.add(hit)
    recorder.close()
    assert len(world.events(world.campaign)) == 3


def test_unsubscribe_page_changes_nothing(world: World) -> None:
    url = world.tracker(world.campaign).unsubscribe_url(world.ann)
    resp = world.call("GET", url)
    assert resp.status_code == 200 and "<form method=post" in resp.text
    assert "ann@example.org" in resp.text and "Unsubscribe</button>" in resp.text
    member = world.contacts.members("news")[0][1]
    assert member.status == MembershipStatus.CONFIRMED
    assert world.events(world.campaign) == []


def test_one_click_unsubscribe(world: World) -> None:
    """RFC 8058 3.2: a POST with the body List-Unsubscribe=One-Click."""
    url = world.tracker(world.campaign).unsubscribe_url(world.ann)
    resp = world.call("POST", url, content=b"List-Unsubscribe=One-Click",
                      headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert resp.status_code == 200 and resp.json()["lists"] == ["news"]
    statuses = {m.address: m.status for _, m in world.contacts.members("news")}
    assert statuses == {"ann@example.org": MembershipStatus.UNSUBSCRIBED,
                        "bob@example.net": MembershipStatus.CONFIRMED}
    [event] = world.events(world.campaign)
    assert (event.kind, event.contact_id, event.domain) == (
        EventKind.UNSUBSCRIBED, world.ann, "example.org")
    record = world.contacts.personal_data("ann@example.org")["events"]
    assert record == [{"kind": "unsubscribed", "at": NOW, "data": {
        "lists": ["news"], "at": NOW, "ip": "192.0.2.9",
        "source": f"unsubscribe:one-click:campaign {world.campaign}"}}]
    again = world.call("POST", url, content=b"List-Unsubscribe=One-Click")
    assert again.status_code == 200 and again.json()["lists"] == []
    assert len(world.events(world.campaign)) == 1
    assert "no more mail" in world.call("GET", url).text


def test_page_button_unsubscribes(world: World) -> None:
    url = world.tracker(world.campaign).unsubscribe_url(world.bob)
    resp = world.call("POST", url, data={"confirm": "yes"})
    assert resp.status_code == 200 and "is unsubscribed" in resp.text
    record = world.contacts.personal_data("bob@example.net")["events"]
    assert record[0]["data"]["source"].startswith("unsubscribe:page:")


def test_forged_unsubscribe_token(world: World) -> None:
    url = world.tracker(world.campaign).unsubscribe_url(world.ann)
    forged = url[:-1] + ("A" if url[-1] != "A" else "B")
    assert world.call("GET", forged).status_code == 404
    resp = world.call("POST", forged, content=b"List-Unsubscribe=One-Click",
                      headers={"Accept": "application/json"})
    assert resp.status_code == 404 and resp.json()["code"] == "no_such_token"
    click = world.tracker(world.campaign).click_url(world.ann, LINKS[0]).replace("/t/c/", "/u/")
    assert world.call("POST", click).status_code == 404  # a token of another kind
    assert world.contacts.members("news")[0][1].status == MembershipStatus.CONFIRMED


def _report_world(world: World) -> None:
    store = world.store
    store.record_events(world.campaign, [
        CampaignEvent(EventKind.DELIVERED, NOW - 3600, world.ann, "example.org"),
        CampaignEvent(EventKind.DELIVERED, NOW - 3600, world.bob, "example.net"),
        CampaignEvent(EventKind.OPENED, NOW - 1800, world.ann, "example.org"),
        CampaignEvent(EventKind.CLICKED, NOW - 1700, world.ann, "example.org", 1)])


def test_report_page_needs_a_link_or_a_key(world: World) -> None:
    _report_world(world)
    page = f"/reports/campaigns/{world.campaign}"
    assert world.call("GET", page).status_code == 401
    assert world.call("GET", page + "?token=1.2.xyz").status_code == 401
    contacts_key = world.keys.create("c", "contacts").secret
    assert world.call("GET", page, headers={"Authorization": f"Bearer {contacts_key}"}
                      ).status_code == 401
    key = world.keys.create("k", "campaigns").secret
    resp = world.call("GET", page, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200 and "<svg" in resp.text
    assert "no-store" in resp.headers["cache-control"]
    link = world.call("GET", f"/api/v1/campaigns/{world.campaign}/report-link?ttl=600",
                      headers={"Authorization": f"Bearer {key}"}).json()
    assert link["expires"] == NOW + 600
    path = link["url"].removeprefix("http://t")
    resp = world.call("GET", path)
    assert resp.status_code == 200
    figures = dict(re.findall(r'data-metric="([^"]+)" data-value="([^"]+)"', resp.text))
    assert figures["delivered"] == "2" and figures["opens.unique_human"] == "1"
    assert figures["clicks.total_human"] == "1" and figures["rates.open_human"] == "0.5"
    other = path.replace(f"/campaigns/{world.campaign}?", f"/campaigns/{world.quiet}?")
    assert world.call("GET", other).status_code == 401  # a link opens one campaign only
    world.now = NOW + 601
    assert world.call("GET", path).status_code == 401  # expired
    data = world.call("GET", f"/api/v1/campaigns/{world.campaign}/report",
                      headers={"Authorization": f"Bearer {key}"}).json()
    assert data["delivered"] == 2 and data["links"][0]["url"] == LINKS[1]
    assert data["opens"]["unique_human"] == 1 and data["clicks"]["total_human"] == 1
    assert world.call("GET", f"/api/v1/campaigns/{world.campaign}/report-page-data",
                      headers={"Authorization": f"Bearer {key}"}).status_code == 404
    assert world.call("GET", "/api/v1/campaigns/999/report-link",
                      headers={"Authorization": f"Bearer {key}"}).status_code == 404


def test_report_ids_outside_the_store_range(world: World) -> None:
    """A campaign id SQLite cannot hold (or not positive) is a 422 problem, as on the
    other campaign paths, not an OverflowError answered 500."""
    key = world.keys.create("k", "campaigns").secret
    auth = {"Authorization": f"Bearer {key}"}
    for bad in ("99999999999999999999999999", str(1 << 63), "0", "-1"):
        for path in (f"/reports/campaigns/{bad}", f"/api/v1/campaigns/{bad}/report-link"):
            resp = world.call("GET", path, headers=auth)
            assert resp.status_code == 422, (path, resp.text)
            assert resp.headers["content-type"] == "application/problem+json"
    assert world.call("GET", f"/reports/campaigns/{(1 << 63) - 1}", headers=auth
                      ).status_code == 404


def test_hostile_tracking_paths(world: World) -> None:
    for path in ("/t/c/" + "A" * 60_000, "/t/c/%C3%A9%00", "/t/c/..%2F..%2Fetc",
                 "/t/c/a/b", "/t/c/"):
        resp = world.call("GET", path)
        assert resp.status_code == 404 and "location" not in resp.headers, path
    for path in ("/t/o/" + "A" * 60_000 + ".gif", "/t/o/%C3%A9.gif", "/t/o/.gif"):
        resp = world.call("GET", path)
        assert resp.status_code == 200 and resp.content == TRANSPARENT_GIF, path
    assert world.call("POST", world.tracker(world.campaign).open_url(world.ann)
                      ).status_code in (404, 405)
    assert world.events(world.campaign) == []


def test_link_with_odd_characters_is_sent_escaped(world: World) -> None:
    odd = "https://shop.example/ä?q=a b&x=\r\nSet-Cookie: y"
    world.store.add_links(world.campaign, 3, [odd])
    url = world.tracker(world.campaign).click_url(world.ann, odd)
    resp = world.call("GET", url)
    assert resp.status_code == 302 and "set-cookie" not in resp.headers
    assert resp.headers["location"] == (
        "https://shop.example/%C3%A4?q=a%20b&x=%0D%0ASet-Cookie:%20y")


def test_store_failure_keeps_the_pixel_and_refuses_the_click(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    def broken(campaign_id: int) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(world.pub.cache, "load", broken)
    tracker = world.tracker(world.campaign)
    assert world.call("GET", tracker.open_url(world.ann)).content == TRANSPARENT_GIF
    resp = world.call("GET", tracker.click_url(world.ann, LINKS[0]),
                      headers={"Accept": "application/json"})
    assert resp.status_code == 503 and "location" not in resp.headers
    assert resp.json()["code"] == "storage_unavailable"
    assert world.events(world.campaign) == []

"""From a tracking hit to its campaign event (kind, link, domain, machine verdict and
details), the per-process campaign cache, and the report page's HTML."""

from __future__ import annotations

import re

import pytest

from mailyard.bulk.campaigns.model import Campaign, CampaignSpec, CampaignState
from mailyard.bulk.engagement import MAX_AGENT, Hit, hit_event, recipient_domain
from mailyard.bulk.machine import Action, Interaction
from mailyard.bulk.report import CampaignEvent, EventKind, build_report
from mailyard.bulk.report_page import render_report_page
from mailyard.bulk.tracking import TokenKind, TrackingToken
from mailyard.services.tracking import CampaignCache

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0"
OPEN = TrackingToken(TokenKind.OPEN, 7, 42)
CLICK = TrackingToken(TokenKind.CLICK, 7, 42, 3)


def test_open_by_a_person() -> None:
    event, data = hit_event(Hit(OPEN, 100.0, "198.51.100.7", BROWSER), "example.org", 50.0)
    assert event == CampaignEvent(EventKind.OPENED, 100.0, 42, "example.org", None, False)
    assert data == {"ua": BROWSER, "ip": "198.51.100.7"}


def test_click_carries_its_link() -> None:
    event, data = hit_event(Hit(CLICK, 100.0, "198.51.100.7", BROWSER), "example.org", 50.0)
    assert (event.kind, event.link, event.machine) == (EventKind.CLICKED, 3, False)


def test_head_is_machine_and_says_why() -> None:
    event, data = hit_event(Hit(CLICK, 100.0, "198.51.100.7", BROWSER, "HEAD"), "x", None)
    assert event.machine and data["why"] == "head-request" and data["method"] == "HEAD"


def test_apple_proxy_open_is_machine() -> None:
    event, data = hit_event(Hit(OPEN, 100.0, "17.58.1.1", "Mozilla/5.0"), "icloud.com", 99.0)
    assert event.machine and data["why"] == "apple-privacy-protection"


def test_image_proxy_open_counts_as_human() -> None:
    agent = ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
             "(via ggpht.com GoogleImageProxy)")
    event, data = hit_event(Hit(OPEN, 100.0, "66.249.84.1", agent), "gmail.com", 50.0)
    assert not event.machine and data["why"] == "image-proxy"


def test_click_seconds_after_delivery_is_machine() -> None:
    event, data = hit_event(Hit(CLICK, 103.0, "192.0.2.1", BROWSER), "example.org", 100.0)
    assert event.machine and data["why"] == "too-soon-after-delivery"
    event, _ = hit_event(Hit(CLICK, 160.0, "192.0.2.1", BROWSER), "example.org", 100.0)
    assert not event.machine


def test_third_link_in_a_second_is_machine() -> None:
    recent = [Interaction(Action.CLICK, 100.0, link=0), Interaction(Action.CLICK, 100.3, link=1)]
    event, data = hit_event(Hit(CLICK, 100.5, "192.0.2.1", BROWSER), "example.org", 0.0,
                            recent)
    assert event.machine and data["why"] == "many-links-at-once"


def test_long_agent_is_cut() -> None:
    _, data = hit_event(Hit(OPEN, 1.0, "", "A" * 5000), "", None)
    assert len(data["ua"]) == MAX_AGENT


def test_unsubscribe_token_is_not_a_hit() -> None:
    with pytest.raises(ValueError):
        hit_event(Hit(TrackingToken(TokenKind.UNSUBSCRIBE, 1, 2), 1.0), "", None)


@pytest.mark.parametrize(("address", "domain"), [
    ("ann@Example.ORG", "example.org"), ("\"a@b\"@x.example", "x.example"), ("nobody", "")])
def test_recipient_domain(address: str, domain: str) -> None:
    assert recipient_domain(address) == domain


class FakeStore:
    def __init__(self) -> None:
        self.reads = 0
        self.campaign: Campaign | None = Campaign(1, "c", CampaignState.SENDING,
                                                  CampaignSpec(tracking=True), 0.0, 0.0)
        self.link_list = ["https://a.example/"]

    def get_campaign(self, campaign_id: int) -> Campaign | None:
        self.reads += 1
        return self.campaign if campaign_id == 1 else None

    def links(self, campaign_id: int) -> list[str]:
        return list(self.link_list)


def test_campaign_cache_refreshes_after_ttl_and_for_new_links() -> None:
    now = [0.0]
    store = FakeStore()
    cache = CampaignCache(store, ttl=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert cache.peek(1) is None
    view = cache.load(1)
    assert view.exists and view.tracking and view.links == ("https://a.example/",)
    assert cache.peek(1) == view and cache.peek(1, 0) == view
    assert cache.peek(1, 1) is None  # a link past the cached list: load again
    store.link_list.append("https://b.example/")
    assert cache.load(1).links[1] == "https://b.example/"
    missing = cache.load(2)
    assert not missing.exists and cache.peek(2) == missing  # unknown ones cached too
    now[0] = 6.0
    assert cache.peek(1) is None and cache.peek(2) is None


def test_report_page_figures_and_escaping() -> None:
    campaign = Campaign(3, "<b>spring</b>", CampaignState.FINISHED,
                        CampaignSpec(subject="Hi & <welcome>"), 0.0, 0.0, started=1e9,
                        finished=1e9 + 60)
    report = build_report(3, [
        CampaignEvent(EventKind.DELIVERED, 1e9, 1, "example.org"),
        CampaignEvent(EventKind.DELIVERED, 1e9, 2, "<script>.example"),
        CampaignEvent(EventKind.OPENED, 1e9 + 600, 1, "example.org"),
        CampaignEvent(EventKind.CLICKED, 1e9 + 700, 1, "example.org", 0),
        CampaignEvent(EventKind.CLICKED, 1e9 + 701, 2, "<script>.example", 0, True),
    ], ["https://x.example/?a=1&b=<2>"])
    page = render_report_page(campaign, report, now=1e9 + 3600)
    assert "<script>" not in page and "<b>spring" not in page
    assert "&lt;b&gt;spring&lt;/b&gt;" in page and "Hi &amp; &lt;welcome&gt;" in page
    assert "https://x.example/?a=1&amp;b=&lt;2&gt;" in page
    figures = dict(re.findall(r'data-metric="([^"]+)" data-value="([^"]+)"', page))
    assert figures["delivered"] == "2" and figures["opens.unique_human"] == "1"
    assert figures["clicks.total_all"] == "2" and figures["clicks.total_human"] == "1"
    assert figures["rates.open_human"] == "0.5"
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2


@pytest.mark.parametrize(("body", "expected"), [
    (b"List-Unsubscribe=One-Click", True),  # RFC 8058 3.2, form-urlencoded
    (b"List-Unsubscribe=One-Click\r\n", True),
    (b"a=1&List-Unsubscribe=One-Click", True),
    # the multipart/form-data form of RFC 8058's examples (section 8)
    (b"--xyz\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
     b"One-Click\r\n--xyz--\r\n", True),
    (b"confirm=yes", False),
    (b"List-Unsubscribe=One-Clickety", False),
    (b"", False),
])
def test_one_click_body(body: bytes, expected: bool) -> None:
    from mailyard.services.unsubscribe import is_one_click
    assert is_one_click(body) is expected

"""The campaign report on a synthetic set of events whose figures are worked out by
hand, the CLI tables, and hostile input (no events, absurd times, markup in names)."""

from __future__ import annotations

import io
import json

import pytest

from mailyard.bulk.report import (
    BounceType,
    CampaignEvent,
    CampaignReport,
    EventKind,
    build_report,
    plain_table,
    render_table,
)

T0 = 1_699_999_200.0  # a multiple of 3600
K = EventKind
LINKS = ["https://shop.example/", "https://blog.example/post", "https://example.org/x"]


def ev(kind: EventKind, after: float, contact: int, *, link: int | None = None,
       machine: bool = False, bounce: BounceType | None = None) -> CampaignEvent:
    domain = "a.example" if contact <= 5 else "b.example" if contact <= 8 else "c.example"
    if contact == 1 and kind == K.OPENED:
        domain = "A.Example"  # domains are compared without case
    return CampaignEvent(kind, T0 + after, contact, domain, link, machine, bounce)


def synthetic() -> list[CampaignEvent]:
    events = [ev(K.QUEUED, 0, c) for c in range(1, 11)]
    events += [ev(K.DELIVERED, 60, c) for c in range(1, 8)]
    events += [
        ev(K.DEFERRED, 30, 7),  # deferred, then delivered
        ev(K.BOUNCED, 60, 8, bounce=BounceType.HARD),
        ev(K.DEFERRED, 60, 9), ev(K.BOUNCED, 7200, 9, bounce=BounceType.SOFT),
        ev(K.DEFERRED, 60, 10), ev(K.DEFERRED, 3600, 10),  # still deferred
        # opens: human 1 (twice), 2, 4, 6 (image proxy, human); machine 3 and 4
        ev(K.OPENED, 600, 1), ev(K.OPENED, 4000, 1), ev(K.OPENED, 700, 2),
        ev(K.OPENED, 65, 3, machine=True), ev(K.OPENED, 65, 4, machine=True),
        ev(K.OPENED, 5000, 4), ev(K.OPENED, 800, 6),
        # clicks: human 1 (links 0, 1), 2 (link 0 twice); a scanner for 3 (links 0-2)
        ev(K.CLICKED, 650, 1, link=0), ev(K.CLICKED, 660, 1, link=1),
        ev(K.CLICKED, 750, 2, link=0), ev(K.CLICKED, 760, 2, link=0),
        ev(K.CLICKED, 61, 3, link=0, machine=True), ev(K.CLICKED, 61, 3, link=1, machine=True),
        ev(K.CLICKED, 61, 3, link=2, machine=True),
        ev(K.UNSUBSCRIBED, 800, 2), ev(K.COMPLAINED, 900, 5),
    ]
    return events


@pytest.fixture(scope="module")
def report() -> CampaignReport:
    return build_report(12, reversed(synthetic()), LINKS)  # order does not matter


def test_outcomes(report: CampaignReport) -> None:
    assert report.campaign_id == 12
    assert report.recipients == 10
    assert report.delivered == 7
    assert (report.bounced, report.bounced_hard, report.bounced_soft) == (2, 1, 1)
    assert (report.deferred, report.deferrals) == (1, 4)
    assert report.queued == 0
    assert (report.unsubscribed, report.complained) == (1, 1)


def test_opens_and_clicks(report: CampaignReport) -> None:
    o, c = report.opens, report.clicks
    assert (o.unique_human, o.unique_all, o.total_human, o.total_all) == (4, 5, 5, 7)
    assert (c.unique_human, c.unique_all, c.total_human, c.total_all) == (2, 3, 4, 7)
    r = report.rates
    assert r.open_human == pytest.approx(4 / 7, abs=1e-6)
    assert r.open_all == pytest.approx(5 / 7, abs=1e-6)
    assert r.click_human == pytest.approx(2 / 7, abs=1e-6)
    assert r.click_all == pytest.approx(3 / 7, abs=1e-6)
    assert (r.click_to_open_human, r.click_to_open_all) == (0.5, 0.6)


def test_per_link(report: CampaignReport) -> None:
    got = [(lc.link, lc.url, lc.clicks.unique_human, lc.clicks.unique_all,
            lc.clicks.total_human, lc.clicks.total_all) for lc in report.links]
    assert got == [(0, LINKS[0], 2, 3, 3, 4), (1, LINKS[1], 1, 2, 1, 2),
                   (2, LINKS[2], 0, 1, 0, 1)]


def test_by_domain(report: CampaignReport) -> None:
    got = {d.domain: (d.recipients, d.delivered, d.bounced, d.opened_human,
                      d.clicked_human, d.unsubscribed, d.complained) for d in report.domains}
    assert got == {"a.example": (5, 5, 0, 3, 2, 1, 1), "b.example": (3, 2, 1, 1, 0, 0, 0),
                   "c.example": (2, 0, 1, 0, 0, 0, 0)}
    assert [d.domain for d in report.domains] == ["a.example", "b.example", "c.example"]


def test_over_time(report: CampaignReport) -> None:
    assert report.bucket_seconds == 300
    assert len(report.buckets) == 17  # T0 .. T0+5000
    assert report.buckets[0].start == T0
    nonzero = {int(b.start - T0): (b.delivered, b.opens_human, b.opens_machine,
                                   b.clicks_human, b.clicks_machine)
               for b in report.buckets
               if (b.delivered, b.opens_human, b.opens_machine, b.clicks_human,
                   b.clicks_machine) != (0, 0, 0, 0, 0)}
    assert nonzero == {0: (7, 0, 2, 0, 3), 600: (0, 3, 0, 4, 0), 3900: (0, 1, 0, 0, 0),
                       4800: (0, 1, 0, 0, 0)}
    assert sum(b.opens_human for b in report.buckets) == report.opens.total_human


def test_forced_bucket_width() -> None:
    hourly = build_report(1, synthetic(), bucket_seconds=3600)
    assert hourly.bucket_seconds == 3600
    assert [b.start - T0 for b in hourly.buckets] == [0, 3600]


def test_json(report: CampaignReport) -> None:
    data = json.loads(report.to_json())
    assert data["opens"]["unique_human"] == 4
    assert data["links"][0]["url"] == LINKS[0]
    assert data["domains"][0]["domain"] == "a.example"
    assert len(data["buckets"]) == 17
    assert report.to_json() == build_report(12, synthetic(), LINKS).to_json()


def test_funnel(report: CampaignReport) -> None:
    assert report.funnel() == [("Recipients", 10), ("Delivered", 7), ("Opened", 4),
                               ("Clicked", 2)]


def test_no_events() -> None:
    empty = build_report(3, [])
    assert (empty.recipients, empty.delivered, empty.rates.open_human) == (0, 0, 0.0)
    assert empty.buckets == [] and empty.links == [] and empty.domains == []
    assert json.loads(empty.to_json())["recipients"] == 0


def test_queued_only_and_unknown_bounce_type() -> None:
    r = build_report(1, [CampaignEvent(K.QUEUED, T0, 1), CampaignEvent(K.QUEUED, T0, 2),
                         CampaignEvent(K.BOUNCED, T0, 2)])
    assert (r.queued, r.bounced_hard, r.delivered) == (1, 1, 0)
    assert r.rates.open_all == 0.0


def test_absurd_times_and_ids() -> None:
    events = [
        CampaignEvent(K.DELIVERED, float("nan"), 1), CampaignEvent(K.DELIVERED, float("inf"), 2),
        CampaignEvent(K.DELIVERED, -1e300, 3), CampaignEvent(K.DELIVERED, 1e300, 4),
        CampaignEvent(K.DELIVERED, T0, 2**63 - 1),
        CampaignEvent(K.OPENED, T0 + 86400 * 365 * 50, 2**63 - 1),
        CampaignEvent(K.CLICKED, T0 + 1, 5, link=-7),
        CampaignEvent(K.CLICKED, T0 + 1, 5, link=10**30),
    ]
    r = build_report(1, events, LINKS)
    assert r.delivered == 5 and r.opens.total_all == 1
    assert len(r.buckets) <= 48
    assert sum(b.delivered for b in r.buckets) == 1  # only the sane time is drawn
    assert [(lc.link, lc.url) for lc in r.links] == [(-1, ""), (10**30, "")]
    json.loads(r.to_json())


def test_plain_table(report: CampaignReport) -> None:
    out = io.StringIO()
    render_table(report, out, use_rich=False)
    text = out.getvalue()
    assert "Recipients      10" in text
    assert "Opens (human)   4 unique, 5 total, 57.1%" in text
    assert LINKS[1] in text
    assert "empty ones left out" in text and "2023-11-14 22:00  7" in text


def test_rich_table(report: CampaignReport) -> None:
    pytest.importorskip("rich")
    out = io.StringIO()
    render_table(report, out, use_rich=True)
    text = out.getvalue()
    assert "Recipients" in text and "a.example" in text and LINKS[0] in text


def test_markup_and_control_characters_in_names_are_shown_as_text() -> None:
    hostile = "[bold red]x[/bold red]<script>\x1b[2J"
    r = build_report(1, [CampaignEvent(K.DELIVERED, T0, 1, hostile),
                         CampaignEvent(K.CLICKED, T0 + 60, 1, hostile, link=0)], [hostile])
    plain = io.StringIO()
    render_table(r, plain, use_rich=False)
    assert "\x1b" not in plain.getvalue() and "\\x1b[2J" in plain.getvalue()
    pytest.importorskip("rich")
    fancy = io.StringIO()
    render_table(r, fancy, use_rich=True, width=200)
    assert "\x1b" not in fancy.getvalue()
    assert "[bold red]x[/bold red]<script>\\x1b[2J" in fancy.getvalue()


def test_plain_table_alignment() -> None:
    text = plain_table("T", ["a", "bb"], [["xxx", "1"], ["y", "22"]])
    assert text.splitlines() == ["T", "a    bb", "---  --", "xxx  1", "y    22", ""]

"""The campaign report page in a real browser: Debian's headless Chromium, driven by
Playwright (no browser download: ``executable_path``), loads the page of the real
``mailyard serve`` through a report link from the API, and the test checks that the
charts are drawn (SVG elements with a size on screen, a point per time bucket, a bar
per funnel stage) and that every number on the page and in the charts is the one the
API's JSON gives.  Opens and clicks are real hits on the pixel and click endpoints;
the deliveries are written into the campaign store as the delivery side would."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mailyard.bulk.report import CampaignEvent, EventKind
from tests.support.campaign_seed import LINKS, SeededCampaign, seed_campaign
from tests.support.mailyard_server import MailyardServer

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240),
              pytest.mark.skipif(shutil.which("chromium") is None,
                                 reason="chromium not installed (Debian package chromium)")]

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailyardServer]:
    srv = MailyardServer(tmp_path_factory.mktemp("report"), http=True)
    srv.start(timeout=90)  # an HTTP worker imports FastAPI: slow on a busy machine
    try:
        yield srv
    finally:
        srv.__exit__()


def _activity(server: MailyardServer, seeded: SeededCampaign) -> int:
    """Deliveries for every contact an hour ago, then real opens and clicks; returns
    how many events the HTTP worker is to record."""
    now = time.time()
    domains = {cid: seeded.contacts.store.get_contact_by_id(cid) for cid in seeded.contact_ids}
    seeded.store.record_events(seeded.tracked, [
        CampaignEvent(EventKind.DELIVERED, now - 3600, cid,
                      contact.address.rpartition("@")[2] if contact else "")
        for cid, contact in domains.items()])
    tracker = seeded.tracker()
    hits = 0
    with httpx.Client(base_url=server.http_url, headers={"User-Agent": BROWSER}) as client:
        for i, cid in enumerate(seeded.contact_ids):
            if i % 4 == 3:
                continue  # never opened
            client.get(tracker.open_url(cid))
            hits += 1
            if i % 2 == 0:
                client.get(tracker.click_url(cid, LINKS[i % len(LINKS)]))
                hits += 1
        client.head(tracker.click_url(seeded.contact_ids[1], LINKS[0]))  # a machine
        hits += 1
    return len(seeded.contact_ids) + hits


def _figure(report: dict[str, Any], name: str) -> float:
    value: Any = report
    for part in name.split("."):
        value = value[part]
    return float(value)


def test_report_page_in_chromium(server: MailyardServer) -> None:
    seeded = seed_campaign(server.config_path, contacts=12)
    expected = _activity(server, seeded)
    assert len(seeded.wait_events(expected)) == expected
    key = server.cli("apikey", "create", "--name", "reports", "--scope",
                     "campaigns").stdout.decode().splitlines()[0].strip()
    auth = {"Authorization": f"Bearer {key}"}
    base = f"{server.http_url}/api/v1/campaigns/{seeded.tracked}"
    report = httpx.get(f"{base}/report-page-data", headers=auth).json()
    link = httpx.get(f"{base}/report-link", headers=auth).json()["url"]
    assert report["delivered"] == 12 and report["opens"]["unique_human"] == 9

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            resp = page.goto(link)
            assert resp is not None and resp.status == 200
            assert page.title().startswith("Campaign report")
            for chart in ("#activity", "#funnel"):
                box = page.locator(f"svg{chart}").bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 100
            # The activity chart: one point per bucket and series, summing to the totals.
            for series, total in (("opens", report["opens"]["total_human"]),
                                  ("clicks", report["clicks"]["total_human"])):
                points = page.locator(f"#activity circle.point[data-series={series}]")
                assert points.count() == len(report["buckets"])
                values = [int(v) for v in points.evaluate_all(
                    "els => els.map(e => e.getAttribute('data-value'))")]
                assert sum(values) == total
                line = page.locator(f"#activity g.series[data-series={series}] polyline")
                if len(report["buckets"]) > 1:
                    assert line.count() == 1
            # The funnel: a drawn bar per stage, with the report's numbers.
            bars = page.locator("#funnel rect.bar")
            stages = dict(zip(bars.evaluate_all("els => els.map(e => e.dataset.stage)"),
                              bars.evaluate_all("els => els.map(e => +e.dataset.value)"),
                              strict=True))
            assert stages == {"recipients": report["recipients"],
                              "delivered": report["delivered"],
                              "opened": report["opens"]["unique_human"],
                              "clicked": report["clicks"]["unique_human"]}
            widths = bars.evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
            assert all(w > 0 for w in widths)
            # Every figure on the page is the API's.
            figures = page.locator("[data-metric]").evaluate_all(
                "els => els.map(e => [e.dataset.metric, e.dataset.value, e.textContent])")
            assert len(figures) >= 20
            for name, value, text in figures:
                assert float(value) == pytest.approx(_figure(report, name)), name
                if not name.startswith("rates."):
                    assert text == str(value)
            assert report["clicks"]["total_all"] == report["clicks"]["total_human"] + 1
            assert errors == []
            # Without the token the page is refused.
            resp = page.goto(link.split("?")[0])
            assert resp is not None and resp.status == 401
        finally:
            browser.close()

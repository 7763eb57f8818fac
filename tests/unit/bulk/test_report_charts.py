"""The report's SVG charts: well-formed XML, one point per bucket and series and one
bar per funnel stage whose data-value is the report's number, accessible names, text
escaped, the same bytes for the same report; no data and absurd numbers."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mailyard.bulk.charts import (
    Series,
    activity_chart,
    bar_chart,
    funnel_chart,
    line_chart,
    nice_ticks,
)
from mailyard.bulk.report import CampaignEvent, CampaignReport, EventKind, build_report

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_699_999_200.0


def _report() -> CampaignReport:
    events = [CampaignEvent(EventKind.DELIVERED, T0, c, "a.example") for c in range(20)]
    events += [CampaignEvent(EventKind.OPENED, T0 + 3600 * h + c, c, "a.example")
               for h in range(5) for c in range(h * 3)]
    events += [CampaignEvent(EventKind.OPENED, T0 + 5, 0, machine=True)]
    events += [CampaignEvent(EventKind.CLICKED, T0 + 3600 * h + 60, h, link=0)
               for h in range(5)]
    return build_report(1, events, bucket_seconds=3600)


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    ids = {e.get("id") for e in root.iter()}
    labelled = (root.get("aria-labelledby") or "").split()
    assert len(labelled) == 2 and all(i in ids for i in labelled)
    assert root.find(f"{SVG}title") is not None and root.find(f"{SVG}desc") is not None
    return root


def _points(root: ET.Element, series: str) -> list[int]:
    return [int(e.get("data-value", "")) for e in root.iter(f"{SVG}circle")
            if e.get("data-series") == series]


def test_activity_chart_points_match_the_report() -> None:
    report = _report()
    root = _parse(activity_chart(report))
    assert len(report.buckets) == 5
    assert _points(root, "opens") == [b.opens_human for b in report.buckets] == [0, 3, 6, 9, 12]
    assert _points(root, "clicks") == [b.clicks_human for b in report.buckets] == [1] * 5
    assert len(list(root.iter(f"{SVG}polyline"))) == 2
    xs = [e.get("data-x") for e in root.iter(f"{SVG}circle") if e.get("data-series") == "opens"]
    assert xs == [str(int(b.start)) for b in report.buckets]
    ticks = [e.get("data-tick") for e in root.iter(f"{SVG}text") if e.get("data-tick")]
    assert ticks[0] == "0" and int(ticks[-1]) >= 12
    legend = [e.text for g in root.iter(f"{SVG}g") if g.get("class") == "legend"
              for e in g.iter(f"{SVG}text")]
    assert legend == ["Opens", "Clicks"]
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "Opens and clicks per hour"


def test_points_are_higher_for_higher_values() -> None:
    root = _parse(activity_chart(_report()))
    ys = [float(e.get("cy", "")) for e in root.iter(f"{SVG}circle")
          if e.get("data-series") == "opens"]
    assert ys == sorted(ys, reverse=True) and ys[0] > ys[-1]


def test_funnel_bars_match_the_report() -> None:
    report = _report()
    root = _parse(funnel_chart(report))
    bars = [(e.get("data-stage"), int(e.get("data-value", ""))) for e in root.iter(f"{SVG}rect")
            if e.get("class") == "bar"]
    assert bars == [("recipients", 20), ("delivered", 20), ("opened", 12), ("clicked", 5)]
    widths = [float(e.get("width", "")) for e in root.iter(f"{SVG}rect")
              if e.get("class") == "bar"]
    assert widths[0] == widths[1] > widths[2] > widths[3] > 0
    assert widths[3] == pytest.approx(widths[0] * 5 / 20, abs=0.1)


def test_output_is_deterministic() -> None:
    assert activity_chart(_report()) == activity_chart(_report())
    assert funnel_chart(_report()) == funnel_chart(_report())


def test_no_data() -> None:
    empty = build_report(1, [])
    root = _parse(activity_chart(empty))
    assert not list(root.iter(f"{SVG}circle"))
    assert any(e.get("class") == "no-data" for e in root.iter(f"{SVG}text"))
    bars = _parse(funnel_chart(empty))
    assert [e.get("data-value") for e in bars.iter(f"{SVG}rect")
            if e.get("class") == "bar"] == ["0"] * 4
    assert all(float(e.get("width", "")) == 0 for e in bars.iter(f"{SVG}rect")
               if e.get("class") == "bar")


def test_one_bucket() -> None:
    report = build_report(1, [CampaignEvent(EventKind.OPENED, T0, 1)])
    root = _parse(activity_chart(report))
    assert _points(root, "opens") == [1] and _points(root, "clicks") == [0]
    assert not list(root.iter(f"{SVG}polyline"))


def test_huge_numbers() -> None:
    huge = 10**400
    report = CampaignReport(1, recipients=huge, delivered=huge // 2, bucket_seconds=3600)
    report.opens.unique_human = 3
    root = _parse(funnel_chart(report))
    values = [e.get("data-value") for e in root.iter(f"{SVG}rect") if e.get("class") == "bar"]
    assert values == [str(huge), str(huge // 2), "3", "0"]
    series = (Series("opens", "Opens", "#000", (0, huge, 5)),)
    chart = _parse(line_chart("big", "Big", "big numbers", series, ["a", "b", "c"], [1, 2, 3]))
    assert _points(chart, "opens") == [0, huge, 5]
    for e in chart.iter(f"{SVG}circle"):
        assert 0 <= float(e.get("cy", "")) <= 300


def test_hostile_names_are_escaped() -> None:
    script = '<script>alert("x")</script>&'
    series = (Series('a"b', script, "#000", (1, 2)),)
    svg = line_chart("c1", script, script, series, [script, "ok"], [1, 2])
    assert "<script>" not in svg
    root = _parse(svg)
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == script
    assert {e.get("data-series") for e in root.iter(f"{SVG}circle")} == {'a"b'}
    bars = bar_chart("c2", script, script, [(script, 1), ("<b>", 2)])
    assert "<script>" not in bars and "<b>" not in bars
    names = [e.text for e in _parse(bars).iter(f"{SVG}text")]
    assert script in names and "<b>" in names


@pytest.mark.parametrize("chart_id", ["", "1x", 'a" onload="x', "a b", "x" * 65])
def test_chart_ids_are_checked(chart_id: str) -> None:
    with pytest.raises(ValueError):
        activity_chart(build_report(1, []), chart_id=chart_id)


@pytest.mark.parametrize(("top", "ticks"), [
    (0, [0, 1]), (1, [0, 1]), (3, [0, 1, 2, 3]), (12, [0, 5, 10, 15]),
    (100, [0, 20, 40, 60, 80, 100]), (7, [0, 2, 4, 6, 8]),
])
def test_nice_ticks(top: float, ticks: list[float]) -> None:
    assert nice_ticks(top) == ticks


def test_nice_ticks_of_absurd_values() -> None:
    for top in (1e300, float("inf"), float("nan"), -5.0):
        ticks = nice_ticks(top)
        assert 2 <= len(ticks) <= 12 and ticks[0] == 0

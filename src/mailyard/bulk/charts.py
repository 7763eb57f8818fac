"""The charts of the campaign report page as server-side SVG: no script, so the page
works with JavaScript off and in any mail-safe viewer.

- :func:`activity_chart`: human opens and clicks per time bucket, a line chart with
  axes, ticks, labels and a legend;
- :func:`funnel_chart`: recipients, delivered, opened, clicked as horizontal bars.

Each chart is an ``<svg role="img">`` named by its ``<title>`` and ``<desc>``
(``aria-labelledby``), all text escaped, coordinates written with one decimal so the
same report always gives the same bytes.  Every data point and bar carries its number
in ``data-value`` (and its series or stage in ``data-series`` / ``data-stage``), which
is how a browser test compares the drawing with the API's JSON.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailyard.bulk.report import Bucket, CampaignReport, bucket_label

WIDTH = 640
HEIGHT = 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 40, 40, 56
_MAX_X_LABELS = 6
_Y_TICKS = 5
_CAP = 1e300  # numbers past this are drawn at this height (the label keeps the value)
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Series:
    key: str  # data-series
    name: str  # legend text
    colour: str
    values: tuple[int, ...]


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _n(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _f(value: int) -> float:
    """A count as a float for drawing: negative as 0, past ``_CAP`` as ``_CAP``."""
    return float(value) if 0 < value < _CAP else (_CAP if value > 0 else 0.0)


def _check_id(chart_id: str) -> str:
    if not _ID.fullmatch(chart_id):
        raise ValueError(f"chart id must be a letter then letters, digits, - or _: {chart_id!r}")
    return chart_id


def _open(chart_id: str, title: str, desc: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{chart_id}" class="chart" '
        f'role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="12">',
        f'<title id="{chart_id}-title">{_e(title)}</title>',
        f'<desc id="{chart_id}-desc">{_e(desc)}</desc>',
    ]


def nice_ticks(top: float, count: int = _Y_TICKS) -> list[float]:
    """Tick values from 0 to at least ``top``, at a whole step of 1, 2 or 5 times a
    power of ten (0 to 1 for no data)."""
    if not top > 0 or not math.isfinite(top):
        top = 1.0
    raw = top / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)
    step = max(1.0, float(round(step)) if step < 1e15 else step)  # counts: whole steps
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _tick_text(value: float) -> str:
    if value < 1e15 and value == int(value):
        return f"{int(value):,}"
    return f"{value:.3g}"


def activity_chart(report: CampaignReport, *, chart_id: str = "activity") -> str:
    buckets = report.buckets
    series = (
        Series("opens", "Opens", "#1f77b4", tuple(b.opens_human for b in buckets)),
        Series("clicks", "Clicks", "#d62728", tuple(b.clicks_human for b in buckets)),
    )
    label = _bucket_name(report.bucket_seconds)
    title = f"Opens and clicks per {label}"
    desc = _activity_desc(series, buckets, label, report.bucket_seconds)
    return line_chart(_check_id(chart_id), title, desc,
                      series, [axis_label(b.start, report.bucket_seconds) for b in buckets],
                      [b.start for b in buckets])


def axis_label(start: float, size: int) -> str:
    """A bucket's start, short enough for six under the axis: ``MM-DD HH:MM`` for
    buckets under a day, else the date."""
    label = bucket_label(start, size)
    return label[5:] if size < 86400 and len(label) == 16 else label


def _bucket_name(seconds: int) -> str:
    names = {60: "minute", 300: "5 minutes", 900: "15 minutes", 3600: "hour",
             3 * 3600: "3 hours", 6 * 3600: "6 hours", 86400: "day", 7 * 86400: "week",
             30 * 86400: "30 days"}
    return names.get(seconds, f"{seconds} seconds")


def _activity_desc(series: Sequence[Series], buckets: Sequence[Bucket], label: str,
                   size: int) -> str:
    if not buckets:
        return "No opens or clicks yet."
    parts = [f"{s.name}: {sum(s.values)} in total, at most {max(s.values)} per {label}"
             for s in series]
    first = bucket_label(buckets[0].start, size)
    return f"{len(buckets)} periods from {first} (UTC). " + "; ".join(parts) + "."


def line_chart(chart_id: str, title: str, desc: str, series: Sequence[Series],
               x_labels: Sequence[str], x_keys: Sequence[float]) -> str:
    """A line chart of ``series`` (equal lengths) over the points named ``x_labels``."""
    _check_id(chart_id)
    out = _open(chart_id, title, desc, WIDTH, HEIGHT)
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    bottom = _TOP + plot_h
    top_value = max((_f(v) for s in series for v in s.values), default=0.0)
    ticks = nice_ticks(top_value)
    scale = ticks[-1]
    points = len(x_labels)

    def x_at(i: int) -> float:
        return _LEFT + (plot_w / 2 if points == 1 else plot_w * i / (points - 1))

    def y_at(value: int) -> float:
        return bottom - plot_h * min(_f(value) / scale, 1.0)

    out.append(f'<text x="{_n(WIDTH / 2)}" y="20" text-anchor="middle" font-size="14" '
               f'font-weight="bold" aria-hidden="true">{_e(title)}</text>')
    out.append('<g class="axis y-axis" aria-hidden="true">')
    for tick in ticks:
        y = bottom - plot_h * tick / scale
        out.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{_n(y)}" y2="{_n(y)}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{_LEFT - 6}" y="{_n(y + 4)}" text-anchor="end" '
                   f'data-tick="{_e(_tick_text(tick))}">{_e(_tick_text(tick))}</text>')
    out.append(f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}" stroke="#333"/>')
    out.append('</g>')
    out.append('<g class="axis x-axis" aria-hidden="true">')
    out.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{bottom}" y2="{bottom}" '
               'stroke="#333"/>')
    every = max(1, math.ceil(points / _MAX_X_LABELS))
    for i in range(0, points, every):
        x = x_at(i)
        out.append(f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{bottom}" y2="{bottom + 5}" '
                   'stroke="#333"/>')
        out.append(f'<text x="{_n(x)}" y="{bottom + 18}" text-anchor="middle">'
                   f'{_e(x_labels[i])}</text>')
    out.append('</g>')
    if points == 0:
        out.append(f'<text x="{_n(_LEFT + plot_w / 2)}" y="{_n(_TOP + plot_h / 2)}" '
                   'text-anchor="middle" fill="#666" class="no-data">No data yet</text>')
    for s in series:
        out.append(f'<g class="series" data-series="{_e(s.key)}">')
        coords = [(x_at(i), y_at(v)) for i, v in enumerate(s.values)]
        if len(coords) > 1:
            path = " ".join(f"{_n(x)},{_n(y)}" for x, y in coords)
            out.append(f'<polyline points="{path}" fill="none" stroke="{s.colour}" '
                       'stroke-width="2"/>')
        for i, ((x, y), value) in enumerate(zip(coords, s.values, strict=True)):
            out.append(
                f'<circle cx="{_n(x)}" cy="{_n(y)}" r="3" fill="{s.colour}" '
                f'class="point" data-series="{_e(s.key)}" data-index="{i}" '
                f'data-x="{_e(_key(x_keys, i))}" data-value="{value}">'
                f'<title>{_e(f"{s.name}, {x_labels[i]}: {value}")}</title></circle>')
        out.append('</g>')
    out.append(_legend(series, bottom + 36))
    out.append('</svg>')
    return "\n".join(out) + "\n"


def _key(keys: Sequence[float], i: int) -> str:
    if i >= len(keys):
        return str(i)
    value = keys[i]
    return str(int(value)) if value == int(value) else repr(value)


def _legend(series: Sequence[Series], y: int) -> str:
    parts = ['<g class="legend">']
    x = _LEFT
    for s in series:
        parts.append(f'<rect x="{x}" y="{y - 9}" width="12" height="12" fill="{s.colour}" '
                     'aria-hidden="true"/>')
        parts.append(f'<text x="{x + 18}" y="{y + 1}">{_e(s.name)}</text>')
        x += 18 + 8 * len(s.name) + 24
    parts.append('</g>')
    return "\n".join(parts)


def funnel_chart(report: CampaignReport, *, chart_id: str = "funnel") -> str:
    stages = report.funnel()
    return bar_chart(_check_id(chart_id), "Delivery funnel", _funnel_desc(stages), stages)


def _funnel_desc(stages: Sequence[tuple[str, int]]) -> str:
    first = stages[0][1] if stages else 0
    parts = [f"{name}: {value}" + (f" ({_share(value, first)} of {stages[0][0].lower()})"
                                   if i and first else "")
             for i, (name, value) in enumerate(stages)]
    return "; ".join(parts) + "."


def _share(value: int, whole: int) -> str:
    if whole <= 0:
        return "0%"
    return f"{min(_f(value) / _f(whole), 1e6) * 100:.1f}%"


def bar_chart(chart_id: str, title: str, desc: str, stages: Sequence[tuple[str, int]]) -> str:
    """Horizontal bars, one per ``(name, value)``, scaled to the largest value."""
    _check_id(chart_id)
    bar_h, gap, label_w, value_w = 28, 12, 110, 150
    height = _TOP + len(stages) * (bar_h + gap) + 8
    out = _open(chart_id, title, desc, WIDTH, height)
    out.append(f'<text x="{_n(WIDTH / 2)}" y="20" text-anchor="middle" font-size="14" '
               f'font-weight="bold" aria-hidden="true">{_e(title)}</text>')
    span = WIDTH - label_w - value_w - _RIGHT
    top = max((_f(v) for _, v in stages), default=0.0)
    first = stages[0][1] if stages else 0
    for i, (name, value) in enumerate(stages):
        y = _TOP + i * (bar_h + gap)
        width = span * _f(value) / top if top > 0 else 0.0
        key = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        share = f" ({_share(value, first)})" if i and first else ""
        out.append(f'<g class="stage" data-stage="{_e(key)}">')
        out.append(f'<text x="{label_w - 8}" y="{_n(y + bar_h / 2 + 4)}" '
                   f'text-anchor="end">{_e(name)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{_n(max(width, 0.0))}" '
                   f'height="{bar_h}" fill="#1f77b4" class="bar" data-stage="{_e(key)}" '
                   f'data-value="{value}"><title>{_e(f"{name}: {value}{share}")}</title></rect>')
        out.append(f'<text x="{_n(label_w + max(width, 0.0) + 6)}" '
                   f'y="{_n(y + bar_h / 2 + 4)}">{_e(f"{value:,}{share}")}</text>')
        out.append('</g>')
    out.append('</svg>')
    return "\n".join(out) + "\n"

"""The campaign report as one HTML page: the figures of :func:`build_report`, the two
SVG charts of :mod:`mailyard.bulk.charts` inline, the per-link and per-domain tables.

No script and no outside resource (the page's Content-Security-Policy forbids both),
so it works with JavaScript off and can be saved as a file.  Every figure sits in an
element with ``data-metric="<name>"`` whose text is the number, the same name as the
key in the report's JSON (dots for nesting: ``opens.unique_human``), so a browser
test compares the page with the API.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from mailyard.bulk.campaigns.model import Campaign
from mailyard.bulk.charts import activity_chart, funnel_chart
from mailyard.bulk.report import CampaignReport

_STYLE = """
body{font-family:sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts svg{max-width:100%;height:auto;display:block;margin:1em 0}
.url{word-break:break-all}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _figure(name: str, value: int | float, text: str | None = None) -> str:
    shown = text if text is not None else f"{value}"
    return f'<span data-metric="{_e(name)}" data-value="{_e(value)}">{_e(shown)}</span>'


def _percent(name: str, rate: float) -> str:
    return _figure(name, rate, f"{rate * 100:.1f}%")


def _summary(report: CampaignReport) -> str:
    o, c, r = report.opens, report.clicks, report.rates
    rows = [
        ("Recipients", _figure("recipients", report.recipients)),
        ("Delivered", _figure("delivered", report.delivered)),
        ("Deferred", f'{_figure("deferred", report.deferred)} '
                     f'({_figure("deferrals", report.deferrals)} deferrals)'),
        ("Bounced", f'{_figure("bounced", report.bounced)} (hard '
                    f'{_figure("bounced_hard", report.bounced_hard)}, soft '
                    f'{_figure("bounced_soft", report.bounced_soft)})'),
        ("Still queued", _figure("queued", report.queued)),
        ("Opens", f'{_figure("opens.unique_human", o.unique_human)} people, '
                  f'{_figure("opens.total_human", o.total_human)} opens, '
                  f'{_percent("rates.open_human", r.open_human)}'),
        ("Opens incl. machines", f'{_figure("opens.unique_all", o.unique_all)} people, '
                                 f'{_figure("opens.total_all", o.total_all)} opens, '
                                 f'{_percent("rates.open_all", r.open_all)}'),
        ("Clicks", f'{_figure("clicks.unique_human", c.unique_human)} people, '
                   f'{_figure("clicks.total_human", c.total_human)} clicks, '
                   f'{_percent("rates.click_human", r.click_human)}; click-to-open '
                   f'{_percent("rates.click_to_open_human", r.click_to_open_human)}'),
        ("Clicks incl. machines", f'{_figure("clicks.unique_all", c.unique_all)} people, '
                                  f'{_figure("clicks.total_all", c.total_all)} clicks, '
                                  f'{_percent("rates.click_all", r.click_all)}'),
        ("Unsubscribed", _figure("unsubscribed", report.unsubscribed)),
        ("Complaints", _figure("complained", report.complained)),
    ]
    body = "".join(f"<tr><th scope=row>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="summary"><caption>Summary</caption>{body}</table>'


def _table(caption: str, css: str, header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return f"<p>{_e(caption)}: none yet.</p>"
    head = "".join(f"<th scope=col>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return (f'<table class="{css}"><caption>{_e(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _n(value: int) -> str:
    return f'<td class="n">{value}</td>'


def _links(report: CampaignReport) -> str:
    rows = [[_n(link.link), f'<td class="url">{_e(link.url) or "-"}</td>',
             _n(link.clicks.unique_human), _n(link.clicks.total_human),
             _n(link.clicks.total_all)] for link in report.links]
    return _table("Clicks per link", "links",
                  ["#", "URL", "people", "clicks", "incl. machines"], rows)


def _domains(report: CampaignReport) -> str:
    rows = [[f"<td>{_e(d.domain or '-')}</td>", _n(d.recipients), _n(d.delivered),
             _n(d.bounced), _n(d.opened_human), _n(d.clicked_human), _n(d.unsubscribed),
             _n(d.complained)] for d in report.domains]
    return _table("By recipient domain", "domains",
                  ["domain", "recipients", "delivered", "bounced", "opened", "clicked",
                   "unsubscribed", "complaints"], rows)


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    try:
        return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return "-"


def render_report_page(campaign: Campaign, report: CampaignReport, *, now: float) -> str:
    title = f"Campaign report: {campaign.name}"
    facts = (f"<p>Campaign {_e(campaign.id)}, {_e(campaign.state.value)}; subject "
             f"“{_e(campaign.spec.subject)}”; started {_e(_when(campaign.started))}, "
             f"finished {_e(_when(campaign.finished))}. Figures as of "
             f"{_e(_when(now))}; opens and clicks made by programs (privacy proxies, "
             "link scanners) are counted apart.</p>")
    charts = (f'<section class="charts"><h2>Over time</h2>{activity_chart(report)}'
              f"<h2>Delivery funnel</h2>{funnel_chart(report)}</section>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width'>"
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body><main>"
            f"<h1>{_e(title)}</h1>{facts}{_summary(report)}{charts}"
            f"<h2>Links</h2>{_links(report)}<h2>Domains</h2>{_domains(report)}"
            "</main></body></html>")

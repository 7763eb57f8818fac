"""The report of one campaign, built from its events in one pass: what happened to
the messages (delivered, deferred, bounced), what people did with them (opens, clicks
per link, unsubscribes, complaints), by recipient domain and over time.

Counts named ``unique_*`` are of contacts, ``total_*`` of events.  Each open and click
figure is given twice: ``human`` (machine events left out; opens seen through a
webmail image proxy are human) and ``all``.  Rates are fractions of the contacts
delivered (``click_to_open`` of the contacts that opened), 0 when nothing was
delivered.  A contact is counted once for its final outcome: bounced (hard over soft)
if any bounce was recorded, else delivered, else deferred when the last thing that
happened was a deferral, else still queued.

The same object feeds the CLI table, the JSON of the API (:meth:`CampaignReport.to_json`)
and the charts of the HTML page, so the three always agree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO


class EventKind(StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"


class BounceType(StrEnum):
    HARD = "hard"
    SOFT = "soft"


@dataclass(frozen=True)
class CampaignEvent:
    kind: EventKind
    at: float  # seconds since the epoch
    contact_id: int
    domain: str = ""  # the recipient's domain
    link: int | None = None  # clicks: the index in the campaign's link list
    machine: bool = False  # opens and clicks: see mailyard.bulk.machine
    bounce: BounceType | None = None


#: Bucket widths tried for the time series, the first giving at most MAX_BUCKETS.
BUCKET_SIZES = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
MAX_BUCKETS = 48
#: Events dated after this (the year 5138) or before 1970 are left out of the series.
MAX_TIME = 1e11


@dataclass
class Counts:
    """Opens or clicks: unique contacts and events, human only and all."""

    unique_human: int = 0
    unique_all: int = 0
    total_human: int = 0
    total_all: int = 0


@dataclass
class Rates:
    open_human: float = 0.0
    open_all: float = 0.0
    click_human: float = 0.0
    click_all: float = 0.0
    click_to_open_human: float = 0.0
    click_to_open_all: float = 0.0


@dataclass
class LinkClicks:
    link: int
    url: str
    clicks: Counts


@dataclass
class DomainRow:
    domain: str
    recipients: int = 0
    delivered: int = 0
    bounced: int = 0
    opened_human: int = 0
    clicked_human: int = 0
    unsubscribed: int = 0
    complained: int = 0


@dataclass
class Bucket:
    start: float  # seconds since the epoch, a multiple of the bucket width
    delivered: int = 0
    opens_human: int = 0
    opens_machine: int = 0
    clicks_human: int = 0
    clicks_machine: int = 0


@dataclass
class CampaignReport:
    campaign_id: int
    recipients: int = 0
    queued: int = 0  # contacts with no outcome yet
    delivered: int = 0
    deferred: int = 0  # contacts whose last outcome so far is a deferral
    deferrals: int = 0  # deferral events
    bounced: int = 0
    bounced_hard: int = 0
    bounced_soft: int = 0
    opens: Counts = field(default_factory=Counts)
    clicks: Counts = field(default_factory=Counts)
    rates: Rates = field(default_factory=Rates)
    unsubscribed: int = 0
    complained: int = 0
    links: list[LinkClicks] = field(default_factory=list)
    domains: list[DomainRow] = field(default_factory=list)
    bucket_seconds: int = BUCKET_SIZES[0]
    buckets: list[Bucket] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    def funnel(self) -> list[tuple[str, int]]:
        """Recipients, delivered, opened, clicked (unique contacts, human)."""
        return [("Recipients", self.recipients), ("Delivered", self.delivered),
                ("Opened", self.opens.unique_human), ("Clicked", self.clicks.unique_human)]


@dataclass
class _Contact:
    domain: str = ""
    delivered: bool = False
    hard: bool = False
    soft: bool = False
    last_deferred: bool = False
    opened_human: bool = False
    clicked_human: bool = False
    unsubscribed: bool = False
    complained: bool = False


def build_report(campaign_id: int, events: Iterable[CampaignEvent],
                 links: Sequence[str] = (), *,
                 bucket_seconds: int | None = None) -> CampaignReport:
    """The report of ``events`` (in any order); ``links`` is the campaign's link list
    (URLs for the per-link table); ``bucket_seconds`` forces the time bucket width."""
    report = CampaignReport(campaign_id)
    contacts: dict[int, _Contact] = {}
    openers: tuple[set[int], set[int]] = (set(), set())  # human, all
    clickers: tuple[set[int], set[int]] = (set(), set())
    per_link: dict[int, tuple[Counts, set[int], set[int]]] = {}
    timed: list[CampaignEvent] = []
    last_outcome: dict[int, float] = {}
    for event in events:
        contact = contacts.setdefault(event.contact_id, _Contact())
        if event.domain:
            contact.domain = event.domain.lower()
        if 0 <= event.at <= MAX_TIME:  # NaN fails too
            timed.append(event)
        _apply(event, contact, last_outcome)
        if event.kind == EventKind.DEFERRED:
            report.deferrals += 1
        elif event.kind == EventKind.OPENED:
            _count(report.opens, openers, event)
        elif event.kind == EventKind.CLICKED:
            _count(report.clicks, clickers, event)
            link = event.link if event.link is not None and event.link >= 0 else -1
            entry = per_link.setdefault(link, (Counts(), set(), set()))
            _count(entry[0], (entry[1], entry[2]), event)
    _outcomes(report, contacts)
    report.rates = _rates(report)
    report.links = [LinkClicks(i, links[i] if 0 <= i < len(links) else "", entry[0])
                    for i, entry in sorted(per_link.items())]
    report.domains = _domains(contacts)
    report.bucket_seconds, report.buckets = _buckets(timed, bucket_seconds)
    return report


def _apply(event: CampaignEvent, contact: _Contact, last_outcome: dict[int, float]) -> None:
    kind = event.kind
    if kind in (EventKind.DELIVERED, EventKind.DEFERRED, EventKind.BOUNCED):
        previous = last_outcome.get(event.contact_id)
        if previous is None or event.at >= previous:
            last_outcome[event.contact_id] = event.at
            contact.last_deferred = kind == EventKind.DEFERRED
    if kind == EventKind.DELIVERED:
        contact.delivered = True
    elif kind == EventKind.BOUNCED:
        if event.bounce == BounceType.SOFT:
            contact.soft = True
        else:
            contact.hard = True  # a bounce of unknown type is taken as permanent
    elif kind == EventKind.OPENED and not event.machine:
        contact.opened_human = True
    elif kind == EventKind.CLICKED and not event.machine:
        contact.clicked_human = True
    elif kind == EventKind.UNSUBSCRIBED:
        contact.unsubscribed = True
    elif kind == EventKind.COMPLAINED:
        contact.complained = True


def _count(counts: Counts, seen: tuple[set[int], set[int]], event: CampaignEvent) -> None:
    counts.total_all += 1
    seen[1].add(event.contact_id)
    if not event.machine:
        counts.total_human += 1
        seen[0].add(event.contact_id)
    counts.unique_human = len(seen[0])
    counts.unique_all = len(seen[1])


def _outcomes(report: CampaignReport, contacts: dict[int, _Contact]) -> None:
    for contact in contacts.values():
        report.recipients += 1
        if contact.hard:
            report.bounced_hard += 1
        elif contact.soft:
            report.bounced_soft += 1
        elif contact.delivered:
            report.delivered += 1
        elif contact.last_deferred:
            report.deferred += 1
        else:
            report.queued += 1
        report.unsubscribed += contact.unsubscribed
        report.complained += contact.complained
    report.bounced = report.bounced_hard + report.bounced_soft


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole > 0 else 0.0


def _rates(report: CampaignReport) -> Rates:
    opens, clicks, delivered = report.opens, report.clicks, report.delivered
    return Rates(
        open_human=_ratio(opens.unique_human, delivered),
        open_all=_ratio(opens.unique_all, delivered),
        click_human=_ratio(clicks.unique_human, delivered),
        click_all=_ratio(clicks.unique_all, delivered),
        click_to_open_human=_ratio(clicks.unique_human, opens.unique_human),
        click_to_open_all=_ratio(clicks.unique_all, opens.unique_all))


def _domains(contacts: dict[int, _Contact]) -> list[DomainRow]:
    rows: dict[str, DomainRow] = {}
    for contact in contacts.values():
        row = rows.setdefault(contact.domain, DomainRow(contact.domain))
        row.recipients += 1
        bounced = contact.hard or contact.soft
        row.bounced += bounced
        row.delivered += contact.delivered and not bounced
        row.opened_human += contact.opened_human
        row.clicked_human += contact.clicked_human
        row.unsubscribed += contact.unsubscribed
        row.complained += contact.complained
    return sorted(rows.values(), key=lambda r: (-r.recipients, r.domain))


def _buckets(events: list[CampaignEvent], forced: int | None) -> tuple[int, list[Bucket]]:
    counted = [e for e in events
               if e.kind in (EventKind.DELIVERED, EventKind.OPENED, EventKind.CLICKED)]
    if not counted:
        return forced or BUCKET_SIZES[0], []
    first = min(e.at for e in counted)
    last = max(e.at for e in counted)
    size = _bucket_size(first, last, forced)
    origin = math.floor(first / size) * size
    count = int((last - origin) // size) + 1
    buckets = [Bucket(origin + i * size) for i in range(count)]
    for event in counted:
        bucket = buckets[min(int((event.at - origin) // size), count - 1)]
        if event.kind == EventKind.DELIVERED:
            bucket.delivered += 1
        elif event.kind == EventKind.OPENED:
            if event.machine:
                bucket.opens_machine += 1
            else:
                bucket.opens_human += 1
        elif event.machine:
            bucket.clicks_machine += 1
        else:
            bucket.clicks_human += 1
    return size, buckets


def _bucket_size(first: float, last: float, forced: int | None) -> int:
    span = last - first
    candidates = ((forced,) if forced is not None and forced > 0 else ()) + BUCKET_SIZES
    for size in candidates:
        if span / size < MAX_BUCKETS - 1:
            return size
    # A span beyond every width (clock garbage): widen until it fits.
    return max(1, math.ceil(span / (MAX_BUCKETS - 2)))


def bucket_label(start: float, size: int) -> str:
    """A bucket's start for an axis or a table: the time of day when buckets are under
    a day wide, else the date (UTC)."""
    try:
        moment = datetime.fromtimestamp(start, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{start:.0f}"
    if size < 86400:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def summary_rows(report: CampaignReport) -> list[tuple[str, str]]:
    o, c, r = report.opens, report.clicks, report.rates
    return [
        ("Recipients", str(report.recipients)),
        ("Delivered", str(report.delivered)),
        ("Deferred", f"{report.deferred} ({report.deferrals} deferrals)"),
        ("Bounced", f"{report.bounced} (hard {report.bounced_hard}, soft {report.bounced_soft})"),
        ("Queued", str(report.queued)),
        ("Opens (human)", f"{o.unique_human} unique, {o.total_human} total, "
                          f"{_percent(r.open_human)}"),
        ("Opens (all)", f"{o.unique_all} unique, {o.total_all} total, {_percent(r.open_all)}"),
        ("Clicks (human)", f"{c.unique_human} unique, {c.total_human} total, "
                           f"{_percent(r.click_human)}, click-to-open "
                           f"{_percent(r.click_to_open_human)}"),
        ("Clicks (all)", f"{c.unique_all} unique, {c.total_all} total, "
                         f"{_percent(r.click_all)}"),
        ("Unsubscribed", str(report.unsubscribed)),
        ("Complaints", str(report.complained)),
    ]


def _tables(report: CampaignReport) -> list[tuple[str, list[str], list[list[str]]]]:
    links = [[str(link.link), link.url, str(link.clicks.unique_human),
              str(link.clicks.total_human), str(link.clicks.total_all)]
             for link in report.links]
    domains = [[d.domain or "-", str(d.recipients), str(d.delivered), str(d.bounced),
                str(d.opened_human), str(d.clicked_human), str(d.unsubscribed),
                str(d.complained)] for d in report.domains]
    times = [[bucket_label(b.start, report.bucket_seconds), str(b.delivered),
              str(b.opens_human), str(b.opens_machine), str(b.clicks_human),
              str(b.clicks_machine)] for b in report.buckets
             if b.delivered or b.opens_human or b.opens_machine or b.clicks_human
             or b.clicks_machine]
    return [
        (f"Campaign {report.campaign_id}", ["", ""],
         [list(row) for row in summary_rows(report)]),
        ("Links", ["#", "URL", "unique", "human", "all"], links),
        ("Domains", ["domain", "recipients", "delivered", "bounced", "opened", "clicked",
                     "unsubscribed", "complaints"], domains),
        (f"Over time ({report.bucket_seconds} s buckets, UTC, empty ones left out)",
         ["from", "delivered", "opens", "machine opens", "clicks", "machine clicks"], times),
    ]


def render_table(report: CampaignReport, out: TextIO, *, use_rich: bool | None = None,
                 width: int | None = None) -> None:
    """Print the report as tables: with rich when it is installed (and ``use_rich``
    is not False), else as aligned plain text."""
    if use_rich is not False:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            if use_rich:
                raise
        else:
            console = Console(file=out, highlight=False, markup=False, emoji=False,
                              width=width or (None if out.isatty() else 120))
            for title, header, rows in _tables(report):
                if not rows:
                    continue
                table = Table(title=title, show_header=any(header))
                for name in header:
                    table.add_column(name, overflow="fold")
                for row in rows:
                    table.add_row(*(_printable(cell) for cell in row))
                console.print(table)
            return
    for title, header, rows in _tables(report):
        if rows:
            out.write(plain_table(title, header, rows))


def plain_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [header, *rows] if any(header) else rows
    widths = [max(len(_printable(line[i])) for line in lines) for i in range(len(lines[0]))]
    out = [title]
    for n, line in enumerate(lines):
        out.append("  ".join(_printable(cell).ljust(w) for cell, w in zip(line, widths,
                                                                          strict=True)).rstrip())
        if n == 0 and any(header):
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n\n"


def _printable(text: str) -> str:
    """Control characters (an escape sequence in a domain or URL) shown, not sent."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)

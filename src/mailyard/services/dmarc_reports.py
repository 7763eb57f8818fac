"""DMARC aggregate reports received: importing them into the store and listing what
they say per domain and sending address (``mailyard report dmarc``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mailyard.dmarc.evalstore import DB_NAME as SENT_DB
from mailyard.dmarc.evalstore import EvaluationStore, SentReport
from mailyard.dmarc.reports import AggregateReport, ReportError, reports_from_message, unpack_report
from mailyard.dmarc.reportstore import DB_NAME, DmarcReportStore, SourceSummary

__all__ = ["ImportOutcome", "dmarc_reports_sent", "dmarc_sources", "import_dmarc_reports",
           "looks_like_report"]

_REPORT_STARTS = (b"\x1f\x8b", b"PK\x03\x04", b"<", b"\xef\xbb\xbf<")


@dataclass
class ImportOutcome:
    """What one input (a file, a message) gave: new reports, repeats, errors."""

    source: str
    stored: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "stored": self.stored, "duplicates": self.duplicates,
                "errors": list(self.errors)}


def looks_like_report(data: bytes) -> bool:
    """A bare report (XML, gzip, zip) rather than a whole mail carrying one."""
    return data.lstrip(b" \t\r\n").startswith(_REPORT_STARTS)


def import_dmarc_reports(data_dir: Path, inputs: list[tuple[str, bytes]],
                         now: float) -> list[ImportOutcome]:
    """Store the reports in each ``(name, content)``: a report mail, or a report file."""
    store = DmarcReportStore.in_data_dir(data_dir)
    try:
        outcomes = []
        for name, data in inputs:
            outcome = ImportOutcome(name)
            found: list[AggregateReport | ReportError] = (
                [unpack_report(data.lstrip())] if looks_like_report(data)
                else reports_from_message(data))
            for report in found:
                if isinstance(report, ReportError):
                    outcome.errors.append(report.reason)
                elif store.add(report, now):
                    outcome.stored += 1
                else:
                    outcome.duplicates += 1
            outcomes.append(outcome)
        return outcomes
    finally:
        store.close()


def dmarc_sources(data_dir: Path, domain: str = "") -> list[SourceSummary]:
    if not (data_dir / DB_NAME).exists():
        return []
    store = DmarcReportStore.in_data_dir(data_dir)
    try:
        return store.sources(domain)
    finally:
        store.close()


def dmarc_reports_sent(data_dir: Path, domain: str = "") -> list[SentReport]:
    """The aggregate reports we sent (``[dmarc] reports``), newest first."""
    if not (data_dir / SENT_DB).exists():
        return []
    store = EvaluationStore.in_data_dir(data_dir)
    try:
        return store.sent(domain)
    finally:
        store.close()

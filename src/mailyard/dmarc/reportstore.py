"""The aggregate reports received, kept in ``data_dir/dmarc-reports.db``.

A small SQLite database (mode 0600, made with
:func:`mailyard.fs.create_private_database`): one row per report, keyed by the
reporter and its report id (RFC 7489 7.2.1.1: a resent report is the same report, so
it is stored once), and one row per ``<record>``.  :meth:`DmarcReportStore.sources`
sums the records per published domain and source address, which is what an operator
asks: who sends mail in my name, and does it pass?

The store is synchronous: the CLI calls it directly, the server from a thread.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from mailyard.dmarc.reports import AggregateReport
from mailyard.fs import create_private_database

__all__ = ["DB_NAME", "DmarcReportStore", "SourceSummary"]

DB_NAME = "dmarc-reports.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    org_name TEXT NOT NULL,
    report_id TEXT NOT NULL,
    email TEXT NOT NULL,
    domain TEXT NOT NULL,
    begin_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    policy TEXT NOT NULL,
    subdomain_policy TEXT NOT NULL,
    pct INTEGER NOT NULL,
    received REAL NOT NULL,
    UNIQUE (org_name, report_id)
);
CREATE TABLE IF NOT EXISTS records (
    report INTEGER NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
    source_ip TEXT NOT NULL,
    count INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    dkim TEXT NOT NULL,
    spf TEXT NOT NULL,
    header_from TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    checks TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_report ON records(report);
"""

_SOURCES = """
SELECT r.domain, c.source_ip, SUM(c.count),
       SUM(CASE WHEN c.dkim = 'pass' OR c.spf = 'pass' THEN c.count ELSE 0 END),
       SUM(CASE WHEN c.dkim = 'pass' THEN c.count ELSE 0 END),
       SUM(CASE WHEN c.spf = 'pass' THEN c.count ELSE 0 END),
       SUM(CASE WHEN c.disposition = 'quarantine' THEN c.count ELSE 0 END),
       SUM(CASE WHEN c.disposition = 'reject' THEN c.count ELSE 0 END),
       MIN(r.begin_ts), MAX(r.end_ts)
FROM records c JOIN reports r ON r.id = c.report
WHERE ? = '' OR r.domain = ?
GROUP BY r.domain, c.source_ip
ORDER BY r.domain, SUM(c.count) DESC, c.source_ip
"""

_REPORTERS = """
SELECT DISTINCT r.domain, c.source_ip, r.org_name
FROM records c JOIN reports r ON r.id = c.report
WHERE ? = '' OR r.domain = ?
"""


@dataclass(frozen=True)
class SourceSummary:
    """What the reports say about one sending address for one domain."""

    domain: str
    source_ip: str
    messages: int
    dmarc_pass: int  # aligned DKIM or SPF passed (policy_evaluated)
    dkim_pass: int
    spf_pass: int
    quarantined: int
    rejected: int
    reporters: tuple[str, ...]
    first: int  # begin of the earliest report, seconds since the epoch
    last: int  # end of the latest report

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["reporters"] = list(self.reporters)
        return data


class DmarcReportStore:
    def __init__(self, path: Path) -> None:
        create_private_database(path)
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> DmarcReportStore:
        return cls(data_dir / DB_NAME)

    def close(self) -> None:
        self._db.close()

    def add(self, report: AggregateReport, received: float) -> bool:
        """Store a report; False if this reporter's report id was stored before."""
        with self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO reports (org_name, report_id, email, domain, begin_ts,"
                " end_ts, policy, subdomain_policy, pct, received)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (report.org_name, report.report_id, report.email, report.domain, report.begin,
                 report.end, report.policy, report.subdomain_policy, report.pct, received))
            if cursor.rowcount == 0:
                return False
            report_key = cursor.lastrowid
            self._db.executemany(
                "INSERT INTO records (report, source_ip, count, disposition, dkim, spf,"
                " header_from, envelope_from, checks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(report_key, row.source_ip, row.count, row.disposition, row.dkim, row.spf,
                  row.header_from, row.envelope_from,
                  json.dumps([asdict(check) for check in row.checks]))
                 for row in report.rows])
        return True

    def report_count(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM reports").fetchone()
        return int(count)

    def sources(self, domain: str = "") -> list[SourceSummary]:
        """Per published domain and source address, biggest senders first."""
        domain = domain.lower().rstrip(".")
        reporters: dict[tuple[str, str], list[str]] = {}
        for dom, source, org in self._db.execute(_REPORTERS, (domain, domain)):
            reporters.setdefault((dom, source), []).append(org)
        out = []
        for row in self._db.execute(_SOURCES, (domain, domain)):
            dom, source, messages, dmarc, dkim, spf, quarantined, rejected, first, last = row
            out.append(SourceSummary(dom, source, messages, dmarc, dkim, spf, quarantined,
                                     rejected, tuple(sorted(reporters.get((dom, source), []))),
                                     first, last))
        return out

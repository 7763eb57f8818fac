"""TLS-RPT reports (RFC 8460): the ``_smtp._tls`` record, the daily JSON report
(section 4), and the report as a mail message (section 5.3), all pure.

A report covers one UTC day and one policy domain; its ``policies`` list has one
entry per policy the sessions ran under (``sts``, ``tlsa`` or ``no-policy-found``).
"""

from __future__ import annotations

import datetime
import gzip
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from mailyard.tlsrpt.store import OutcomeRow

__all__ = ["ReportAddresses", "build_report", "parse_rua_record", "report_filename",
           "report_message"]

_FIELD = re.compile(r"[A-Za-z0-9_]+\Z")


@dataclass(frozen=True)
class ReportAddresses:
    mailto: tuple[str, ...]  # addresses to mail the report to
    https: tuple[str, ...]  # https:// endpoints (not used: Mailyard reports by mail)


def parse_rua_record(texts: Iterable[str]) -> ReportAddresses | None:
    """RFC 8460 3: the ``v=TLSRPTv1`` TXT record at ``_smtp._tls.<domain>``; None when
    there is none, more than one, or it is malformed (RFC 8460 3: then no report)."""
    candidates = [t for t in texts if t.startswith("v=TLSRPTv1")]
    if len(candidates) != 1:
        return None
    fields: dict[str, str] = {}
    for part in candidates[0].split(";"):
        part = part.strip(" \t")
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not _FIELD.match(key.strip()):
            return None
        fields.setdefault(key.strip(), value.strip())
    if fields.get("v") != "TLSRPTv1" or not fields.get("rua"):
        return None
    mailto, https = [], []
    for uri in fields["rua"].split(","):
        uri = uri.strip()
        if uri.lower().startswith("mailto:"):
            address = uri[7:].split("?", 1)[0]
            if "@" in address:
                mailto.append(address)
        elif uri.lower().startswith("https://"):
            https.append(uri)
        else:
            return None
    return ReportAddresses(tuple(mailto), tuple(https))


def _day_range(day: str) -> tuple[datetime.datetime, datetime.datetime]:
    start = datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.UTC)
    return start, start + datetime.timedelta(days=1) - datetime.timedelta(seconds=1)


def _stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_report(rows: Sequence[OutcomeRow], *, organization: str, contact: str,
                 report_id: str, sending_ip: str = "") -> dict[str, Any]:
    """The RFC 8460 4.4 report for ``rows`` (one day, one policy domain)."""
    if not rows:
        raise ValueError("a report needs at least one row")
    start, end = _day_range(rows[0].day)
    groups: dict[tuple[str, str], list[OutcomeRow]] = {}
    for row in rows:
        groups.setdefault((row.policy_domain, row.policy_type), []).append(row)
    policies = [_policy_entry(domain, kind, group, sending_ip)
                for (domain, kind), group in sorted(groups.items())]
    return {
        "organization-name": organization,
        "date-range": {"start-datetime": _stamp(start), "end-datetime": _stamp(end)},
        "contact-info": contact,
        "report-id": report_id,
        "policies": policies,
    }


def _policy_entry(domain: str, kind: str, rows: list[OutcomeRow],
                  sending_ip: str) -> dict[str, Any]:
    policy: dict[str, Any] = {"policy-type": kind, "policy-domain": domain}
    strings = next((r.policy_strings for r in reversed(rows) if r.policy_strings), ())
    if strings:
        policy["policy-string"] = list(strings)
    if kind == "sts":
        mx = [s.split(":", 1)[1].strip() for s in strings if s.startswith("mx:")]
        if mx:
            policy["mx-host"] = mx
    details = []
    for row in rows:
        if row.success:
            continue
        detail: dict[str, Any] = {"result-type": row.result}
        if sending_ip:
            detail["sending-mta-ip"] = sending_ip
        if row.receiving_ip:
            detail["receiving-ip"] = row.receiving_ip
        if row.mx_host:
            detail["receiving-mx-hostname"] = row.mx_host
        detail["failed-session-count"] = row.count
        if row.detail:
            detail["failure-reason-code"] = row.detail
        details.append(detail)
    entry: dict[str, Any] = {
        "policy": policy,
        "summary": {
            "total-successful-session-count": sum(r.count for r in rows if r.success),
            "total-failure-session-count": sum(r.count for r in rows if not r.success),
        },
    }
    if details:
        entry["failure-details"] = details
    return entry


def report_filename(submitter: str, domain: str, report: dict[str, Any]) -> str:
    """RFC 8460 5.1: ``submitter!policy-domain!begin!end!id.json.gz`` (times as Unix
    seconds)."""
    begin = datetime.datetime.strptime(report["date-range"]["start-datetime"],
                                       "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    end = datetime.datetime.strptime(report["date-range"]["end-datetime"],
                                     "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    unique = re.sub(r"[^A-Za-z0-9._-]", "", report["report-id"])[:64]
    return f"{submitter}!{domain}!{int(begin.timestamp())}!{int(end.timestamp())}!{unique}.json.gz"


def report_message(report: dict[str, Any], *, domain: str, submitter: str, sender: str,
                   recipients: Sequence[str], now: datetime.datetime) -> bytes:
    """RFC 8460 5.3: a ``multipart/report; report-type=tlsrpt`` message with the
    gzipped JSON as ``application/tlsrpt+gzip``."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = (f"Report Domain: {domain} Submitter: {submitter} "
                      f"Report-ID: <{report['report-id']}>")
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=submitter)
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = submitter
    msg.set_content(f"This is an aggregate TLS report from {submitter} for {domain} "
                    f"({report['date-range']['start-datetime']} to "
                    f"{report['date-range']['end-datetime']}).\n")
    data = gzip.compress(json.dumps(report, indent=1).encode("utf-8"), mtime=0)
    msg.add_attachment(data, maintype="application", subtype="tlsrpt+gzip",
                       filename=report_filename(submitter, domain, report))
    msg.set_type("multipart/report")
    msg.set_param("report-type", "tlsrpt")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n", max_line_length=998))

"""``mailyard report``: what other receivers report about mail sent in our domains'
names (DMARC aggregate reports, RFC 7489 7.2)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time

from mailyard.cli import transport_security
from mailyard.cli.common import json_flag
from mailyard.cli.terminal import printable
from mailyard.config import Config
from mailyard.dmarc.reports import MAX_ATTACHMENT
from mailyard.services.dmarc_reports import dmarc_reports_sent, dmarc_sources, import_dmarc_reports

# A report mail: the attachment, base64-encoded, plus the rest of the message.
MAX_INPUT = MAX_ATTACHMENT * 2


def _fail(message: str) -> int:
    print(f"mailyard: {message}", file=sys.stderr)
    return 1


def _read(path: str) -> bytes:
    if path == "-":
        data = sys.stdin.buffer.read(MAX_INPUT + 1)
    else:
        with open(path, "rb") as source:
            data = source.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise ValueError(f"{path}: larger than {MAX_INPUT} octets")
    return data


def _import(args: argparse.Namespace, config: Config) -> int:
    try:
        inputs = [(path, _read(path)) for path in args.import_files]
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    outcomes = import_dmarc_reports(config.data_path, inputs, time.time())
    if args.json:
        print(json.dumps([o.to_dict() for o in outcomes], indent=2))
    else:
        for o in outcomes:
            print(f"{printable(o.source)}: {o.stored} stored, {o.duplicates} already known")
            for error in o.errors:
                print(f"  error: {printable(error)}")
    return 1 if any(o.errors for o in outcomes) else 0


def _day(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts)) if ts else "-"


def _list(args: argparse.Namespace, config: Config) -> int:
    sources = dmarc_sources(config.data_path, args.domain or "")
    if args.json:
        print(json.dumps([s.to_dict() for s in sources], indent=2))
        return 0
    if not sources:
        print("No DMARC aggregate reports.")
        return 0
    print(f"{'DOMAIN':<28} {'SOURCE':<39} {'MSGS':>7} {'PASS':>7} {'DKIM':>7} {'SPF':>7} "
          f"{'QUAR':>6} {'REJ':>6}  PERIOD (UTC), REPORTERS")
    for s in sources:
        print(f"{printable(s.domain):<28} {s.source_ip:<39} {s.messages:>7} {s.dmarc_pass:>7} "
              f"{s.dkim_pass:>7} {s.spf_pass:>7} {s.quarantined:>6} {s.rejected:>6}  "
              f"{_day(s.first)}..{_day(s.last)} {printable(', '.join(s.reporters))}")
    return 0


def _sent(args: argparse.Namespace, config: Config) -> int:
    sent = dmarc_reports_sent(config.data_path, args.domain or "")
    if args.json:
        print(json.dumps([s.to_dict() for s in sent], indent=2))
        return 0
    if not sent:
        print("No DMARC aggregate reports sent.")
        return 0
    print(f"{'SENT (UTC)':<19} {'DOMAIN':<28} {'MSGS':>7}  TO / NOTE")
    for s in sent:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.at))
        to = ", ".join(s.recipients) or s.note
        print(f"{when:<19} {printable(s.policy_domain):<28} {s.messages:>7}  {printable(to)}")
    return 0


def cmd_dmarc(args: argparse.Namespace, config: Config) -> int:
    try:
        if args.import_files:
            return _import(args, config)
        return _sent(args, config) if args.sent else _list(args, config)
    except sqlite3.Error as exc:
        return _fail(f"DMARC report store: {exc}")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser("report", help="reports on our mail: DMARC, TLS-RPT",
                       description="Reports on mail in our domains' names: what other "
                                   "receivers report (DMARC) and how our outbound TLS "
                                   "sessions went (TLS-RPT).")
    rs = r.add_subparsers(dest="report_command", metavar="KIND", required=True)
    transport_security.register_report(rs)
    p = rs.add_parser(
        "dmarc", help="DMARC aggregate reports per domain and sending address",
        description="List what DMARC aggregate reports (RFC 7489) say per domain and "
                    "sending address: messages, how many passed DMARC, DKIM and SPF, how "
                    "many were quarantined or rejected, and who reported them. With "
                    "--import, store reports first: report mails, or .xml, .xml.gz or "
                    ".zip report files. With --sent, list the reports this server sent to "
                    "other domains instead.")
    p.add_argument("--domain", metavar="DOMAIN", help="only this published domain")
    p.add_argument("--import", dest="import_files", metavar="FILE", nargs="+",
                   help="store the reports in these files ('-': standard input) instead "
                        "of listing")
    p.add_argument("--sent", action="store_true",
                   help="list the aggregate reports this server sent ([dmarc] reports)")
    json_flag(p)
    p.set_defaults(func=cmd_dmarc)

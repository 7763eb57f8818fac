"""``mailyard domain mta-sts`` (what a receiving domain publishes for MTA-STS) and
``mailyard report tls`` (the TLS-RPT counts of outbound sessions).

Adapters: the policy text comes from :mod:`mailyard.mtasts.policy`, the counts from
:class:`mailyard.tlsrpt.store.TlsOutcomes`; nothing here decides anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from mailyard.cli.common import json_flag
from mailyard.config import Config
from mailyard.dns.api import DnsNameError, ascii_domain
from mailyard.mtasts.fetch import policy_url
from mailyard.mtasts.policy import MAX_AGE_CAP, Mode, policy_text, record_text, valid_mx_pattern
from mailyard.tlsrpt.store import OutcomeRow, TlsOutcomes

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_MAX_AGE = 604_800  # a week


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"mailyard: {message}", file=sys.stderr)
    return code


def cmd_domain_mta_sts(args: argparse.Namespace, config: Config) -> int:
    """Print the MTA-STS policy file and the TXT record to publish for DOMAIN."""
    try:
        domain = ascii_domain(args.domain)
    except DnsNameError as exc:
        return _fail(f"{args.domain!r}: {exc.reason}")
    mx = tuple(m.lower().rstrip(".") for m in (args.mx or [config.hostname]))
    bad = [m for m in mx if not valid_mx_pattern(m)]
    if bad:
        return _fail(f"not an MX host name or *.pattern: {bad[0]!r}")
    if not 1 <= args.max_age <= MAX_AGE_CAP:
        return _fail(f"--max-age must be between 1 and {MAX_AGE_CAP} seconds")
    policy_id = args.id or datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    if not policy_id.isalnum() or not policy_id.isascii() or len(policy_id) > 32:
        return _fail("--id must be 1 to 32 letters and digits")
    text = policy_text(Mode(args.mode), mx, args.max_age)
    record = record_text(policy_id)
    if args.json:
        print(json.dumps({"domain": domain, "policy_url": policy_url(domain), "policy": text,
                          "txt_name": f"_mta-sts.{domain}", "txt": record}, indent=2))
        return EXIT_OK
    print(f"# Serve this as {policy_url(domain)}")
    print("# (Content-Type: text/plain, over HTTPS with a certificate valid for "
          f"mta-sts.{domain}):")
    print(text.replace("\r\n", "\n"), end="")
    print("\n# Publish this TXT record (change the id whenever the policy changes):")
    print(f'_mta-sts.{domain}. IN TXT "{record}"')
    return EXIT_OK


def _summary(rows: list[OutcomeRow]) -> list[dict[str, object]]:
    """One entry per day, policy domain and policy type."""
    out: dict[tuple[str, str, str], dict[str, object]] = {}
    for row in rows:
        key = (row.day, row.policy_domain, row.policy_type)
        entry = out.setdefault(key, {"day": row.day, "domain": row.policy_domain,
                                     "policy": row.policy_type, "successful": 0, "failed": 0,
                                     "failures": {}})
        if row.success:
            entry["successful"] = int(str(entry["successful"])) + row.count
            continue
        entry["failed"] = int(str(entry["failed"])) + row.count
        failures = entry["failures"]
        assert isinstance(failures, dict)
        failures[row.result] = failures.get(row.result, 0) + row.count
    return list(out.values())


def cmd_report_tls(args: argparse.Namespace, config: Config) -> int:
    """List the TLS-RPT counts per day, recipient domain and policy."""
    path = config.data_path / "tls-rpt.db"
    if not path.is_file():
        rows: list[OutcomeRow] = []
    else:
        store = TlsOutcomes(path)
        try:
            rows = store.rows(args.day, args.domain.lower().rstrip(".") if args.domain else None)
        finally:
            store.close()
    entries = _summary(rows)
    if args.json:
        print(json.dumps(entries, indent=2))
        return EXIT_OK
    width = max((len(str(e["domain"])) for e in entries), default=6)
    print(f"{'day':<10}  {'domain':<{width}}  {'policy':<15}  {'ok':>7}  {'failed':>7}  failures")
    for e in entries:
        failures = e["failures"]
        assert isinstance(failures, dict)
        detail = ", ".join(f"{k} {v}" for k, v in sorted(failures.items()))
        print(f"{e['day']:<10}  {e['domain']!s:<{width}}  {e['policy']!s:<15}  "
              f"{e['successful']!s:>7}  {e['failed']!s:>7}  {detail}")
    print(f"-- {len(entries)} row(s)")
    return EXIT_OK


def register_domain(ds: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``domain mta-sts``, under the ``domain`` group of :mod:`mailyard.cli.accounts`."""
    p = ds.add_parser("mta-sts", help="print the MTA-STS policy and TXT record to publish",
                      description="Print the MTA-STS (RFC 8461) policy file to serve at "
                                  "https://mta-sts.DOMAIN/.well-known/mta-sts.txt and the "
                                  "_mta-sts TXT record that announces it.")
    p.set_defaults(func=cmd_domain_mta_sts)
    p.add_argument("domain", metavar="DOMAIN", help="the domain that receives the mail")
    p.add_argument("--mode", choices=[m.value for m in Mode], default="testing",
                   help="enforce, testing (default: start with it and read the TLS "
                        "reports) or none (withdraw the policy)")
    p.add_argument("--mx", action="append", metavar="HOST",
                   help="an MX host name or *.pattern, repeatable (default: hostname)")
    p.add_argument("--max-age", type=int, default=DEFAULT_MAX_AGE, metavar="SECONDS",
                   help=f"how long senders cache the policy (default {DEFAULT_MAX_AGE})")
    p.add_argument("--id", metavar="ID", help="the policy id (default: the current UTC time)")
    json_flag(p)


def register_report(rs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``report tls``, under the ``report`` group of :mod:`mailyard.cli.report`."""
    p = rs.add_parser("tls", help="TLS outcomes of outbound sessions (TLS-RPT)",
                      description="Successful and failed TLS sessions to MX hosts per day, "
                                  "recipient domain and policy (sts, tlsa, no-policy-found), "
                                  "with the RFC 8460 failure types.")
    p.set_defaults(func=cmd_report_tls)
    p.add_argument("--day", metavar="YYYY-MM-DD", help="only this UTC day")
    p.add_argument("--domain", metavar="DOMAIN", help="only this recipient domain")
    json_flag(p)

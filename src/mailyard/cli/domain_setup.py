"""``mailyard domain add|records|check``: the DNS records a local domain publishes, and a
live check of them.  Adapters over :class:`mailyard.services.domains.DomainSetup`:
they print its results as a table (or JSON) and turn its verdicts into the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from mailyard.cli.accounts import accounts_for
from mailyard.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, json_flag
from mailyard.cli.common import fail as _fail
from mailyard.cli.dkim import keys_for
from mailyard.config import Config
from mailyard.dns.api import DnsNameError, ascii_domain
from mailyard.dns.dnspython import DnsPythonResolver
from mailyard.dnsrecords import DnsRecord, Status, Verdict
from mailyard.services.domains import DomainCheck, DomainRecords, DomainSetup
from mailyard.services.errors import ServiceError

# Refusals that mean the command was asked the wrong thing (exit status 2).
_USAGE_CODES = frozenset({"domain_not_local", "invalid_domain"})


def setup_for(config: Config) -> DomainSetup:
    return DomainSetup(accounts_for(config), keys_for(config), config)


def _service_failure(exc: ServiceError) -> int:
    return _fail(str(exc), EXIT_USAGE if exc.code in _USAGE_CODES else EXIT_FAILED)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
            for r in rows]


def print_records(shown: DomainRecords) -> None:
    rows: list[tuple[str, ...]] = [("KIND", "TYPE", "NAME", "VALUE"),
            *((r.kind.value, r.rtype, r.name, r.value) for r in shown.records)]
    print("\n".join(_table(rows)))
    print("\n# The same as zone-file lines (long TXT values split into 255-octet strings):")
    for record in shown.records:
        print(record.zone_line())
    policy = shown.mta_sts_policy
    print(f"\n# The MTA-STS policy, to serve at {policy.url}:")
    print(policy.text.replace("\r\n", "\n"), end="")
    if shown.notes:
        print("\n# Notes:")
        for note in shown.notes:
            print(f"- {note}")


def _records(args: argparse.Namespace, shown: DomainRecords) -> int:
    if args.json:
        print(json.dumps(shown.to_dict(), indent=2))
    else:
        print_records(shown)
    return EXIT_OK


def cmd_domain_add(args: argparse.Namespace, config: Config) -> int:
    """Add a local domain, make its DKIM keys, print the records to publish."""
    try:
        shown = setup_for(config).add_domain(args.domain)
    except ServiceError as exc:
        return _service_failure(exc)
    if not args.json:
        print(f"domain {shown.domain} added; publish these DNS records:\n")
    return _records(args, shown)


def cmd_domain_records(args: argparse.Namespace, config: Config) -> int:
    try:
        shown = setup_for(config).records(args.domain)
    except ServiceError as exc:
        return _service_failure(exc)
    return _records(args, shown)


def _verdict_lines(v: Verdict) -> list[str]:
    r: DnsRecord = v.record
    lines = [f"{v.status.value:<8} {r.kind.value:<8} {r.rtype:<4} {r.name}"]
    lines.extend(f"         found: {f}" for f in v.found if v.status is not Status.OK)
    if v.problem:
        lines.append(f"         {v.problem}")
    if v.fix:
        lines.append(f"         fix: {v.fix}")
    lines.extend(f"         note: {n}" for n in v.notes)
    return lines


def print_check(result: DomainCheck) -> None:
    for verdict in result.verdicts:
        print("\n".join(_verdict_lines(verdict)))
    counts = ", ".join(f"{result.count(s)} {s.value}" for s in Status if result.count(s))
    print(f"-- {len(result.verdicts)} record(s): {counts}")


def cmd_domain_check(args: argparse.Namespace, config: Config) -> int:
    """Look the records up live; exit 0 when all are right, 1 otherwise."""
    try:
        domain = ascii_domain(args.domain)
    except DnsNameError as exc:
        return _fail(f"{args.domain!r}: {exc.reason}", EXIT_USAGE)
    servers = [args.dns] if args.dns else list(config.delivery.dns_servers)
    try:
        resolver = DnsPythonResolver(servers, config.delivery.dns_timeout)
    except ValueError as exc:
        return _fail(f"--dns: {exc}", EXIT_USAGE)
    try:
        result = asyncio.run(setup_for(config).check(domain, resolver))
    except ServiceError as exc:
        return _service_failure(exc)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_check(result)
    return EXIT_OK if result.ok else EXIT_FAILED


def register_domain_actions(ds: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``records`` and ``check`` under ``mailyard domain`` (``add`` is registered by
    :mod:`mailyard.cli.accounts` with :func:`cmd_domain_add`)."""
    p = ds.add_parser("records", help="print the DNS records a local domain publishes",
                      description="Print every DNS record to publish for a local domain (MX, "
                                  "SPF, DKIM, DMARC, MTA-STS, TLS-RPT, RFC 6186 SRV), as a "
                                  "table, as zone-file lines, and the MTA-STS policy file.  "
                                  "Makes the domain's DKIM key if it has none.")
    p.set_defaults(func=cmd_domain_records)
    p.add_argument("domain", metavar="DOMAIN", help="a local domain")
    json_flag(p)
    p = ds.add_parser("check", help="look a local domain's DNS records up and say what is "
                                    "wrong",
                      description="Look up every record `domain records` prints, live, and "
                                  "say for each: ok, missing, wrong (with how to fix it) or "
                                  "unknown (the lookup failed).  Exit status 0 when all are "
                                  "ok, 1 otherwise, 2 for a usage error.")
    p.set_defaults(func=cmd_domain_check)
    p.add_argument("domain", metavar="DOMAIN", help="a local domain")
    p.add_argument("--dns", metavar="HOST:PORT",
                   help="send every lookup to this DNS server (an IP address, port 53 by "
                        "default) instead of delivery.dns_servers or the system resolver")
    json_flag(p)

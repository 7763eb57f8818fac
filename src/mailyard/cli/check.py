"""``mailyard check``: diagnostics of sender authentication, against live DNS.

``mailyard check spf --ip IP --mail-from ADDR --helo NAME [--dns HOST:PORT] [--json]``
evaluates SPF (RFC 7208) the way the SMTP server does at MAIL FROM and prints the
result keyword as the first word, then the explanation.  Any evaluated result, even
``fail`` or ``temperror``, exits 0: the command worked.  Bad arguments exit 2 with one
line on standard error.  ``--dns`` sends every lookup to that server only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from mailyard.cli.common import json_flag
from mailyard.cli.terminal import printable
from mailyard.config import Config

EXIT_OK, EXIT_USAGE = 0, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``check spf`` to the ``check`` group of diagnostics, creating the group
    unless a module registered before this one did (other checks join it too)."""
    spf = _check_group(sub).add_parser(
        "spf", help="evaluate SPF for a client address, MAIL FROM and HELO",
        description="Prints the SPF result (pass, fail, softfail, neutral, none, permerror, "
                    "temperror) as the first word, then the explanation. Exit 0 for any "
                    "result.")
    # Not argparse-required: a missing option is reported on one line, like a bad value.
    spf.add_argument("--ip", help="the SMTP client's address (IPv4 or IPv6)")
    spf.add_argument("--mail-from", metavar="ADDR",
                     help="the MAIL FROM address ('' or '<>' for the null sender)")
    spf.add_argument("--helo", metavar="NAME", help="the HELO/EHLO name")
    spf.add_argument("--dns", metavar="HOST:PORT",
                     help="send every DNS query to this server (default: delivery.dns_servers, "
                          "else the system resolver)")
    json_flag(spf, "print the result as JSON")
    spf.set_defaults(func=cmd_check_spf)


def _check_group(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    group = sub.choices.get("check")
    if group is not None:
        for action in group._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
    group = sub.add_parser("check", help="diagnostics: sender authentication against live DNS")
    group.set_defaults(func=lambda args, config: _usage("check: name a check (spf)"))
    return group.add_subparsers(dest="check", metavar="CHECK")


def _usage(message: str) -> int:
    print(f"mailyard: {message}", file=sys.stderr)
    return EXIT_USAGE


def _bad_text(value: str) -> bool:
    return any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)


def cmd_check_spf(args: argparse.Namespace, config: Config) -> int:
    from mailyard.dns import CachingResolver, DnsPythonResolver
    from mailyard.spf import SpfLimits, check_mail_from, client_address

    for option in ("ip", "mail_from", "helo"):
        if getattr(args, option) is None:
            return _usage(f"check spf: --{option.replace('_', '-')} is required")
    try:
        client_address(args.ip)
    except ValueError:
        return _usage(f"check spf: --ip {printable(args.ip)!r} is not an IP address")
    mail_from = args.mail_from.strip()
    mail_from = mail_from[1:-1] if mail_from.startswith("<") and mail_from.endswith(">") \
        else mail_from
    if _bad_text(mail_from) or (mail_from and "@" not in mail_from):
        return _usage(f"check spf: --mail-from {printable(args.mail_from)!r} is not an address")
    helo = args.helo.strip()
    if not helo or _bad_text(helo):
        return _usage(f"check spf: --helo {printable(args.helo)!r} is not a host name")
    servers = [args.dns] if args.dns else list(config.delivery.dns_servers)
    try:
        upstream = DnsPythonResolver(servers, config.delivery.dns_timeout)
    except ValueError as exc:
        return _usage(f"check spf: --dns: {printable(exc)}")
    limits = SpfLimits(time_budget=config.spf.time_budget)
    result = asyncio.run(check_mail_from(CachingResolver(upstream), args.ip, mail_from, helo,
                                         receiver=config.hostname, limits=limits))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return EXIT_OK
    print(f"{result.status} {printable(result.comment)}")
    if result.explanation:
        print(f"explanation: {printable(result.explanation)}")
    print(f"identity: {result.identity} {printable(result.sender)}; "
          f"{result.lookups} DNS-querying terms, {result.void_lookups} void lookups")
    return EXIT_OK

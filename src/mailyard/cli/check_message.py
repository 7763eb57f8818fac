"""``mailyard check message FILE``: what the inbound checks say about a stored message.

It verifies the DKIM signatures and the ARC chain of the message in FILE (a Maildir
file with LF line ends or a message with CRLF ones) and, given the envelope
(``--ip``, ``--mail-from``, ``--helo``), SPF and DMARC as port 25 would, then prints
the Authentication-Results field it would add (``--json``: every result).  DMARC's
``pct`` sampling is not drawn: the published policy is always applied, so the
answer is the same every time.  Exit 0 whatever the results; 1 when FILE cannot be
read; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from typing import Any

from mailyard.cli.common import json_flag
from mailyard.cli.terminal import printable
from mailyard.config import Config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_MESSAGE = 64 * 1024 * 1024


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Joins the ``check`` group of diagnostics (creates it when no module before
    this one did)."""
    add_parser(_check_group(sub))


def _check_group(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    group = sub.choices.get("check")
    if group is not None and group._subparsers is not None:
        for action in group._subparsers._group_actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
    group = sub.add_parser("check", help="diagnostics")
    group.set_defaults(func=lambda args, config: _usage("name a check: message"))
    return group.add_subparsers(dest="check", metavar="CHECK")


def add_parser(checks: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = checks.add_parser(
        "message", help="verify DKIM, ARC (and SPF, DMARC) of a stored message",
        description="Verifies the DKIM signatures and the ARC chain of the message in FILE "
                    "and, with --ip, --mail-from and --helo, SPF and DMARC; prints the "
                    "Authentication-Results field the server would add. Exit 0 for any "
                    "result.")
    p.add_argument("file", metavar="FILE", help="the message (a Maildir file, or CRLF text)")
    p.add_argument("--ip", help="the SMTP client's address (IPv4 or IPv6)")
    p.add_argument("--mail-from", metavar="ADDR",
                   help="the MAIL FROM address ('' or '<>' for the null sender)")
    p.add_argument("--helo", metavar="NAME", help="the HELO/EHLO name")
    p.add_argument("--dns", metavar="HOST:PORT",
                   help="send every DNS query to this server (default: delivery.dns_servers, "
                        "else the system resolver)")
    json_flag(p, "print every result as JSON")
    p.set_defaults(func=cmd_check_message)


def _usage(message: str) -> int:
    print(f"mailyard: check message: {message}", file=sys.stderr)
    return EXIT_USAGE


def crlf(data: bytes) -> bytes:
    """Line ends as on the wire: a Maildir file's LF (or mixed) ends become CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _read(path: str) -> bytes | str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MESSAGE + 1)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if len(data) > MAX_MESSAGE:
        return f"{path} is larger than {MAX_MESSAGE} bytes"
    return crlf(data)


def cmd_check_message(args: argparse.Namespace, config: Config) -> int:
    from mailyard.dkim.hook import verify_policy_for
    from mailyard.dmarc.orgdomain import load_public_suffixes
    from mailyard.dns import CachingResolver, DnsPythonResolver
    from mailyard.senderauth.checks import check_message

    envelope = [o for o in ("ip", "mail_from", "helo") if getattr(args, o) is not None]
    if envelope and len(envelope) != 3:
        return _usage("give all of --ip, --mail-from and --helo, or none")
    message = _read(args.file)
    if isinstance(message, str):
        print(f"mailyard: check message: {printable(message)}", file=sys.stderr)
        return EXIT_FAILED
    servers = [args.dns] if args.dns else list(config.delivery.dns_servers)
    try:
        resolver = CachingResolver(DnsPythonResolver(servers, config.delivery.dns_timeout))
    except ValueError as exc:
        return _usage(f"--dns: {printable(exc)}")
    spf = None
    if envelope:
        found = _spf(args, config, resolver)
        if isinstance(found, int):
            return found
        spf = found
    try:
        suffixes = load_public_suffixes(config.dmarc.public_suffix_list)
    except OSError as exc:
        print(f"mailyard: check message: cannot read the Public Suffix List: {exc}",
              file=sys.stderr)
        return EXIT_FAILED
    # DMARC is evaluated with the envelope whatever [dmarc] enabled says: this is
    # the diagnostic; the action shown follows [dmarc] reject and quarantine.
    dmarc = replace(config.dmarc, enabled=True) if envelope else None
    verdict = asyncio.run(check_message(
        message, resolver, suffixes, spf=spf, dmarc=dmarc,
        policy=verify_policy_for(config.dkim), remote_ip=args.ip or "", sample=lambda: 0))
    authserv_id = config.auth_results.authserv_id
    if args.json:
        print(json.dumps(verdict.to_dict(authserv_id), indent=2))
        return EXIT_OK
    sys.stdout.write(verdict.field(authserv_id).decode("ascii").replace("\r\n", "\n"))
    for result in verdict.dkim:
        if result.reason:
            print(f"# dkim {result.domain or '?'}: {printable(result.reason)}")
    if verdict.arc.reason:
        print(f"# arc: {printable(verdict.arc.reason)}")
    if verdict.dmarc is not None and verdict.dmarc.reason:
        print(f"# dmarc: {printable(verdict.dmarc.reason)}")
    print(f"# action: {verdict.action().kind}")
    return EXIT_OK


def _spf(args: argparse.Namespace, config: Config, resolver: Any) -> Any:
    """The SPF input for the envelope options (an exit code for a bad option): the
    MAIL FROM identity as smtpd checks it (the HELO name's postmaster for ``<>``)."""
    from mailyard.senderauth.hook import spf_input
    from mailyard.spf import SpfLimits, check_mail_from, client_address

    try:
        client_address(args.ip)
    except ValueError:
        return _usage(f"--ip {printable(args.ip)!r} is not an IP address")
    mail_from = args.mail_from.strip()
    if mail_from.startswith("<") and mail_from.endswith(">"):
        mail_from = mail_from[1:-1]
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in mail_from + args.helo) \
            or (mail_from and "@" not in mail_from) or not args.helo.strip():
        return _usage("--mail-from must be an address (or '<>') and --helo a host name")
    limits = SpfLimits(time_budget=config.spf.time_budget)
    result = asyncio.run(check_mail_from(resolver, args.ip, mail_from, args.helo.strip(),
                                         receiver=config.hostname, limits=limits))
    return spf_input(result)

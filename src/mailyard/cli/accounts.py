"""``mailyard user``, ``mailyard alias`` and ``mailyard domain``: manage the directory.

The commands write the same SQLite directory the running server reads
(``<data_dir>/directory.db``); changes take effect on the server's next lookup.  They
are adapters over :class:`mailyard.services.accounts.Accounts`: parse the arguments,
read a password, call the service, print its result.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from mailyard.cli import transport_security
from mailyard.cli.common import EXIT_OK, EXIT_USAGE, Handler, guarded, json_flag
from mailyard.cli.common import fail as _fail
from mailyard.config import Config
from mailyard.services.accounts import Accounts, UserQuota
from mailyard.services.errors import ServiceError
from mailyard.services.setup import open_directory
from mailyard.store.quota import format_size, parse_size

# Refusals the operator fixes by asking differently (exit status 2, like a usage error).
USAGE_CODES = frozenset({"password_empty", "password_too_short", "alias_diverts_user"})

# An option not given (argparse default): None already means "the default limit".
_UNSET: Any = object()


def accounts_for(config: Config) -> Accounts:
    return Accounts.for_config(config, open_directory(config))


def _guarded(handler: Handler) -> Handler:
    """Turn a ServiceError into a message on stderr and exit status 1 (2 for the
    refusals in USAGE_CODES)."""
    return guarded(handler, usage_codes=USAGE_CODES)


class PasswordInputError(Exception):
    """No password could be read (usage problem: exit status 2)."""


def read_password(args: argparse.Namespace) -> str:
    """The password from standard input or the terminal; the service checks its rules."""
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise PasswordInputError("no password on standard input")
        return line.rstrip("\n").rstrip("\r")
    if not sys.stdin.isatty():
        raise PasswordInputError(
            "standard input is not a terminal: pass --password-stdin and write the "
            "password on standard input")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise PasswordInputError("the passwords do not match")
    return password


def _print_json(items: list[dict[str, object]]) -> None:
    print(json.dumps(items, indent=2))


# --- users ---------------------------------------------------------------------------
@_guarded
def cmd_user_add(args: argparse.Namespace, config: Config) -> int:
    try:
        password = read_password(args)
    except PasswordInputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    added = accounts_for(config).add_user(args.email, password)
    if added.mailbox_error is not None:
        print(f"mailyard: warning: mailbox not created yet ({added.mailbox_error}); "
              "the first delivery creates it", file=sys.stderr)
    print(f"user {added.user.address} added")
    if added.scram_refused:
        print("note: this password cannot be used with SCRAM-SHA-256 (RFC 4013 SASLprep "
              "refuses some of its characters); PLAIN and LOGIN work", file=sys.stderr)
    return EXIT_OK


@_guarded
def cmd_user_list(args: argparse.Namespace, config: Config) -> int:
    users = accounts_for(config).list_users(args.domain)
    if args.json:
        _print_json([u.to_dict() for u in users])
        return EXIT_OK
    for u in users:
        print(u.address)
    print(f"-- {len(users)} user(s)")
    return EXIT_OK


@_guarded
def cmd_user_delete(args: argparse.Namespace, config: Config) -> int:
    deleted = accounts_for(config).delete_user(args.email)
    print(f"user {deleted.address} deleted")
    if deleted.kept_mailbox is not None:
        print(f"its mailbox is kept at {deleted.kept_mailbox}; remove it by hand when no "
              "longer needed")
    return EXIT_OK


@_guarded
def cmd_user_passwd(args: argparse.Namespace, config: Config) -> int:
    try:
        password = read_password(args)
    except PasswordInputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    address = accounts_for(config).change_password(args.email, password)
    print(f"password of {address} changed")
    return EXIT_OK


def storage_argument(text: str) -> int | None:
    """``--storage``: a size (2G, 500M, 10240K, octets), 0 or ``unlimited``, or
    ``default`` (None: follow ``[mailbox] quota_storage``)."""
    word = text.strip().lower()
    if word == "default":
        return None
    if word == "unlimited":
        return 0
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def messages_argument(text: str) -> int | None:
    """``--messages``: a count, 0 or ``unlimited``, or ``default``."""
    word = text.strip().lower()
    if word == "default":
        return None
    if word == "unlimited":
        return 0
    if not word.isdigit() or not word.isascii():
        raise argparse.ArgumentTypeError(
            f"not a message count: {text!r} (a number, 0 for unlimited, or 'default')")
    return int(word)


def _quota_rows(q: UserQuota) -> list[tuple[str, str, str, str]]:
    def limit(value: int | None, render: Callable[[int], str]) -> str:
        return "unlimited" if value is None else render(value)

    return [("storage", format_size(q.usage.storage_bytes),
             limit(q.storage_limit, format_size), q.storage_source),
            ("messages", str(q.usage.messages), limit(q.messages_limit, str),
             q.messages_source)]


@_guarded
def cmd_user_quota(args: argparse.Namespace, config: Config) -> int:
    service = accounts_for(config)
    changes: dict[str, int | None] = {}
    if args.storage is not _UNSET:
        changes["storage_bytes"] = args.storage
    if args.messages is not _UNSET:
        changes["messages"] = args.messages
    quota = (service.set_quota(args.email, **changes) if changes
             else service.quota(args.email))
    if args.json:
        print(json.dumps(quota.to_dict(), indent=2))
        return EXIT_OK
    if changes:
        print(f"quota of {quota.address} set")
    rows = [("resource", "used", "limit", "source"), *_quota_rows(quota)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(quota.address)
    for r in rows:
        print(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return EXIT_OK


# --- aliases -------------------------------------------------------------------------
@_guarded
def cmd_alias_add(args: argparse.Namespace, config: Config) -> int:
    try:
        added = accounts_for(config).add_alias(args.address, args.targets, force=args.force)
    except ServiceError as exc:
        if exc.code != "alias_diverts_user":
            raise
        return _fail(f"{exc} (add --force to forward and keep a copy there)", EXIT_USAGE)
    print(f"alias {added.alias.address} -> {', '.join(added.alias.targets)}")
    if added.copy_kept_for is not None:
        print(f"{added.copy_kept_for} is a user: its mail is forwarded and a copy kept in "
              "its mailbox")
    return EXIT_OK


@_guarded
def cmd_alias_list(args: argparse.Namespace, config: Config) -> int:
    aliases = accounts_for(config).list_aliases(args.domain)
    if args.json:
        _print_json([a.to_dict() for a in aliases])
        return EXIT_OK
    for a in aliases:
        print(f"{a.address} -> {', '.join(a.targets)}")
    print(f"-- {len(aliases)} alias(es)")
    return EXIT_OK


@_guarded
def cmd_alias_delete(args: argparse.Namespace, config: Config) -> int:
    address = accounts_for(config).delete_alias(args.address, args.targets)
    what = f"target(s) {', '.join(args.targets)} of alias" if args.targets else "alias"
    print(f"{what} {address} deleted")
    return EXIT_OK


# --- domains -------------------------------------------------------------------------
@_guarded
def cmd_domain_list(args: argparse.Namespace, config: Config) -> int:
    domains = accounts_for(config).list_domains()
    if args.json:
        _print_json([d.to_dict() for d in domains])
        return EXIT_OK
    width = max((len(d.name) for d in domains), default=6)
    for d in domains:
        print(f"{d.name:<{width}}  ({d.source})")
    print(f"-- {len(domains)} domain(s)")
    return EXIT_OK


@_guarded
def cmd_domain_delete(args: argparse.Namespace, config: Config) -> int:
    name = accounts_for(config).delete_domain(args.domain)
    print(f"domain {name} deleted")
    return EXIT_OK


# --- registration --------------------------------------------------------------------
def _parser(sub: argparse._SubParsersAction, name: str, help_text: str,  # type: ignore[type-arg]
            func: Handler, description: str = "") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=description or help_text)
    p.set_defaults(func=func)
    return p


def _password_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input "
                        "(default: prompt on the terminal)")


def _register_user(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    u = sub.add_parser("user", help="manage mail users (mailboxes and logins)",
                       description="Manage mail users: each has a mailbox and a password.")
    us = u.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    p = _parser(us, "add", "add a user and create its mailbox", cmd_user_add,
                "Add a user in a local domain and create its Maildir.  user+tag@domain "
                "reaches the user without further setup.")
    p.add_argument("email", metavar="EMAIL", help="the user's address, e.g. alice@example.org")
    _password_option(p)
    p = _parser(us, "list", "list users", cmd_user_list)
    p.add_argument("--domain", metavar="DOMAIN", help="only users of this domain")
    json_flag(p)
    p = _parser(us, "delete", "delete a user (its mailbox files are kept)", cmd_user_delete)
    p.add_argument("email", metavar="EMAIL", help="the user's address")
    p = _parser(us, "passwd", "change a user's password", cmd_user_passwd)
    p.add_argument("email", metavar="EMAIL", help="the user's address")
    _password_option(p)
    p = _parser(us, "quota", "show or set a user's quota", cmd_user_quota,
                "Without options, show the user's quota: what its mailbox uses over all "
                "folders and the limits (its own, or the [mailbox] defaults).  With "
                "--storage and/or --messages, set the user's own limits.")
    p.add_argument("email", metavar="EMAIL", help="the user's address")
    p.add_argument("--storage", metavar="SIZE", type=storage_argument, default=_UNSET,
                   help="octets of mail the user may keep: 2G, 500M, 10240K (binary "
                        "units), 0 or 'unlimited', or 'default'")
    p.add_argument("--messages", metavar="N", type=messages_argument, default=_UNSET,
                   help="messages the user may keep: a number, 0 or 'unlimited', or "
                        "'default'")
    json_flag(p)
    from mailyard.cli.limits import register_user_limits

    register_user_limits(us)


def _register_alias(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    a = sub.add_parser("alias", help="manage aliases (forwarding addresses)",
                       description="Manage aliases: an address that forwards to one or more "
                                   "local users or external addresses.")
    as_ = a.add_subparsers(dest="alias_command", metavar="ACTION", required=True)
    p = _parser(as_, "add", "create an alias or add targets to it", cmd_alias_add,
                "Create ADDRESS as an alias of the TARGETs, or add TARGETs to an existing "
                "alias.  ADDRESS '@domain' is a catch-all for the domain; a catch-all's "
                "target '@other' rewrites the domain.  An alias that lists its own address "
                "(with a user of that address) keeps a copy and forwards.")
    p.add_argument("address", metavar="ADDRESS", help="alias address, or @domain")
    p.add_argument("targets", metavar="TARGET", nargs="+", help="where the mail goes")
    p.add_argument("--force", action="store_true",
                   help="ADDRESS is a user: make the alias anyway, and keep a copy in "
                        "the user's own mailbox too")
    p = _parser(as_, "list", "list aliases", cmd_alias_list)
    p.add_argument("--domain", metavar="DOMAIN", help="only aliases of this domain")
    json_flag(p)
    p = _parser(as_, "delete", "delete an alias, or some of its targets", cmd_alias_delete)
    p.add_argument("address", metavar="ADDRESS", help="the alias address, or @domain")
    p.add_argument("targets", metavar="TARGET", nargs="*",
                   help="delete only these targets (default: the whole alias)")


def _register_domain(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("domain", help="manage local domains",
                       description="Manage the domains this server receives mail for "
                                   "(in addition to local_domains in the configuration).")
    ds = d.add_subparsers(dest="domain_command", metavar="ACTION", required=True)
    from mailyard.cli import domain_setup

    p = _parser(ds, "add", "add a local domain and print the DNS records to publish",
                domain_setup.cmd_domain_add,
                "Add a local domain, make its DKIM keys, and print every DNS record to "
                "publish for it (the same as `domain records`).")
    p.add_argument("domain", metavar="DOMAIN", help="domain name, e.g. example.org")
    json_flag(p)
    p = _parser(ds, "list", "list local domains (from the configuration and the database)",
                cmd_domain_list)
    json_flag(p)
    p = _parser(ds, "delete", "delete a local domain (it must have no users or aliases)",
                cmd_domain_delete)
    p.add_argument("domain", metavar="DOMAIN", help="a domain added with `domain add`")
    transport_security.register_domain(ds)
    from mailyard.cli.dkim import register_domain_actions

    register_domain_actions(ds)
    domain_setup.register_domain_actions(ds)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _register_user(sub)
    _register_alias(sub)
    _register_domain(sub)

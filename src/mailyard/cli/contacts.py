"""``mailyard contact`` and ``mailyard list``: contacts and mailing lists.

Adapters over :class:`mailyard.services.contacts.Contacts`; they write the same
``data_dir/bulk.db`` the HTTP service reads, with or without the server running.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import IO

from mailyard.bulk.importer import ImportFormat
from mailyard.bulk.model import MembershipStatus, OptIn, SuppressionReason
from mailyard.cli.accounts import _guarded, _parser
from mailyard.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, json_flag
from mailyard.cli.common import fail as _fail
from mailyard.cli.terminal import printable
from mailyard.config import Config
from mailyard.services.contacts import ImportSummary
from mailyard.services.setup import open_contacts


def _format_of(args: argparse.Namespace) -> ImportFormat:
    if args.format:
        return ImportFormat(args.format)
    name = args.file.lower()
    return ImportFormat.JSONL if name.endswith((".jsonl", ".ndjson")) else ImportFormat.CSV


def _progress(total: int) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A rich progress bar over the bytes read, when standard output is a terminal."""
    if not sys.stdout.isatty() or total <= 0:
        return None, lambda: None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    bar = Progress("importing", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    task = bar.add_task("import", total=total)
    bar.start()
    return (lambda done: bar.update(task, completed=done)), bar.stop


def _print_summary(summary: ImportSummary) -> None:
    print(f"list {summary.list_name}: {summary.rows} row(s) in {summary.seconds:.1f} s: "
          f"{summary.new} new, {summary.updated} updated, {summary.unchanged} unchanged, "
          f"{summary.invalid} invalid, {summary.duplicates} duplicate(s); "
          f"{summary.joined} added to the list")
    for e in summary.errors:
        print(f"  line {e.line}: {printable(e.reason)}")
    if summary.invalid > len(summary.errors):
        print(f"  ... and {summary.invalid - len(summary.errors)} more invalid row(s)")
    for line, first in summary.duplicate_lines:
        print(f"  line {line}: duplicate of line {first}")
    if summary.duplicates > len(summary.duplicate_lines):
        print(f"  ... and {summary.duplicates - len(summary.duplicate_lines)} more "
              "duplicate(s)")


@_guarded
def cmd_import(args: argparse.Namespace, config: Config) -> int:
    contacts = open_contacts(config)
    contacts.get_list(args.list)  # a missing list is reported before the file is read
    stream: IO[bytes]
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}", EXIT_USAGE)
    with stream:
        total = 0 if args.file == "-" else _size(stream)
        update, stop = _progress(total)
        try:
            summary = contacts.import_contacts(
                stream, _format_of(args), args.list, encoding=args.encoding,
                source=f"import:{args.file}", ip="", status=MembershipStatus(args.status),
                progress=update)
        finally:
            stop()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        _print_summary(summary)
    if summary.stopped is not None:
        return _fail(f"import stopped at line {summary.stopped.line}: "
                     f"{printable(summary.stopped.message)} (rows before it were imported)")
    return EXIT_OK


def _size(stream: IO[bytes]) -> int:
    try:
        import os

        return os.fstat(stream.fileno()).st_size
    except (OSError, ValueError):
        return 0


@_guarded
def cmd_export(args: argparse.Namespace, config: Config) -> int:
    contacts = open_contacts(config)
    if args.address:  # GDPR art. 15: everything held on one person
        print(json.dumps(contacts.personal_data(args.address), indent=2, ensure_ascii=False))
        return EXIT_OK
    if args.output in (None, "-"):
        count = contacts.export_csv(sys.stdout, args.list)
    else:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            count = contacts.export_csv(out, args.list)
    print(f"-- {count} contact(s) exported", file=sys.stderr)
    return EXIT_OK


@_guarded
def cmd_show(args: argparse.Namespace, config: Config) -> int:
    data = open_contacts(config).personal_data(args.address)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return EXIT_OK
    contact = data["contact"]
    print(f"address: {data['address']}")
    if contact:
        print(f"name: {printable(contact['name'])}\nstatus: {contact['status']}\n"
              f"created: {_when(contact['created'])}")
        for key, value in contact["attributes"].items():
            print(f"attribute {printable(key)}: {printable(json.dumps(value))}")
    for m in data["memberships"]:
        consent = m["consent"] or {}
        print(f"list {m['list']}: {m['status']} (consent {_when(consent.get('at'))} "
              f"from {consent.get('ip') or '-'} via {printable(consent.get('source') or '-')})")
    if data["suppression"]:
        print(f"suppressed: {data['suppression']['reason']}")
    for bounce in data["soft_bounces"]:
        print(f"soft bounce: {printable(bounce['message'])} {_when(bounce['at'])}")
    return EXIT_OK


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@_guarded
def cmd_erase(args: argparse.Namespace, config: Config) -> int:
    result = open_contacts(config).erase(args.address)
    print(f"{result['address']} erased (contact, memberships, consent records, events)")
    if result["suppression_kept_as_digest"]:
        print("its suppression entry is kept as a keyed digest only, so it is never "
              "mailed again")
    return EXIT_OK


@_guarded
def cmd_suppress(args: argparse.Namespace, config: Config) -> int:
    entry = open_contacts(config).suppress(args.address, SuppressionReason(args.reason),
                                           args.note or "")
    print(f"{entry.address} suppressed ({entry.reason.value}): no mail goes to it")
    return EXIT_OK


@_guarded
def cmd_unsuppress(args: argparse.Namespace, config: Config) -> int:
    contacts = open_contacts(config)
    contacts.unsuppress(args.address)
    print(f"{contacts.address(args.address)} removed from the suppression list")
    return EXIT_OK


@_guarded
def cmd_suppressions(args: argparse.Namespace, config: Config) -> int:
    contacts = open_contacts(config)
    entries, after = [], 0
    while True:
        page = contacts.suppressions(after=after, limit=1000)
        entries += page
        if len(page) < 1000:
            break
        after = page[-1].id
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return EXIT_OK
    for e in entries:
        print(f"{printable(e.address or '(erased)'):<40} {e.reason.value:<12} "
              f"{_when(e.created)}  {printable(e.note)}")
    print(f"-- {len(entries)} suppressed address(es)")
    return EXIT_OK


@_guarded
def cmd_list_create(args: argparse.Namespace, config: Config) -> int:
    opt_in = OptIn.DOUBLE if args.double_opt_in else OptIn.SINGLE
    mlist = open_contacts(config).create_list(args.name, args.title or "", opt_in)
    print(f"list {mlist.name} created ({mlist.opt_in.value} opt-in)")
    return EXIT_OK


@_guarded
def cmd_list_list(args: argparse.Namespace, config: Config) -> int:
    lists = open_contacts(config).lists()
    if args.json:
        print(json.dumps([m.to_dict() for m in lists], indent=2))
        return EXIT_OK
    for m in lists:
        counts = m.to_dict()["members"]
        print(f"{m.name:<20} {m.opt_in.value:<6}  {counts['confirmed']} confirmed, "
              f"{counts['unconfirmed']} unconfirmed  {printable(m.title)}")
    print(f"-- {len(lists)} list(s)")
    return EXIT_OK


@_guarded
def cmd_list_show(args: argparse.Namespace, config: Config) -> int:
    m = open_contacts(config).get_list(args.name)
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
        return EXIT_OK
    print(f"list {m.name}: {printable(m.title)}\nopt-in: {m.opt_in.value}\n"
          f"created: {_when(m.created)}")
    for status, n in m.to_dict()["members"].items():
        print(f"{status}: {n}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser("contact", help="manage bulk-mail contacts",
                       description="Import, export, show and erase contacts.")
    cs = c.add_subparsers(dest="contact_command", metavar="ACTION", required=True)
    p = _parser(cs, "import", "import contacts into a list from CSV or JSON lines", cmd_import,
                "Import contacts from FILE ('-': standard input) into LIST.  CSV columns are "
                "mapped by header (email, name; the others become attributes).  Existing "
                "contacts are merged; memberships that exist are left as they are.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--list", required=True, help="the list to add the contacts to")
    p.add_argument("--format", choices=[f.value for f in ImportFormat],
                   help="default: from the file name (.jsonl, .ndjson: jsonl; else csv)")
    p.add_argument("--encoding", default="utf-8", help="the file's text encoding")
    p.add_argument("--status", default="confirmed", choices=["confirmed", "unconfirmed"],
                   help="membership status of new members (default: confirmed: you "
                        "vouch for their consent)")
    json_flag(p, "the summary as JSON")
    p = _parser(cs, "export", "export contacts as CSV (or one person's data as JSON)",
                cmd_export, "Write the contacts as CSV (cells that a spreadsheet would run "
                "as a formula are escaped).  With ADDRESS: everything held on that person "
                "as JSON (GDPR art. 15), like `contact show ADDRESS --json`.")
    p.add_argument("address", metavar="ADDRESS", nargs="?")
    p.add_argument("--list", help="only the members of this list")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    p = _parser(cs, "show", "everything held on one person (GDPR art. 15)", cmd_show)
    p.add_argument("address", metavar="ADDRESS")
    json_flag(p)
    p = _parser(cs, "erase", "remove a person everywhere (GDPR art. 17)", cmd_erase)
    p.add_argument("address", metavar="ADDRESS")

    p = _parser(cs, "suppress", "put an address on the global suppression list", cmd_suppress,
                "Never send bulk mail to ADDRESS again, whatever the lists say.")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--reason", default="manual", choices=[r.value for r in SuppressionReason])
    p.add_argument("--note", help="why (shown in listings)")
    p = _parser(cs, "unsuppress", "take an address off the suppression list", cmd_unsuppress)
    p.add_argument("address", metavar="ADDRESS")
    p = _parser(cs, "suppressions", "list the suppression list", cmd_suppressions)
    json_flag(p)

    ls = sub.add_parser("list", help="manage mailing lists",
                        description="Create and inspect mailing lists.")
    lss = ls.add_subparsers(dest="list_command", metavar="ACTION", required=True)
    p = _parser(lss, "create", "create a list", cmd_list_create)
    p.add_argument("name", metavar="NAME", help="a-z 0-9 - _ . (up to 64)")
    p.add_argument("--title", help="the name subscribers see")
    p.add_argument("--double-opt-in", action="store_true",
                   help="subscribers confirm by a link mailed to them")
    p = _parser(lss, "list", "list the lists", cmd_list_list)
    json_flag(p)
    p = _parser(lss, "show", "show a list and its member counts", cmd_list_show)
    p.add_argument("name", metavar="NAME")
    json_flag(p)


__all__ = ["EXIT_FAILED", "register"]

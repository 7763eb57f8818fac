"""``mailyard send`` and ``mailyard sendmail``: hand mail to the queue from the command
line.  Both write straight into the queue, like Postfix's postdrop, so they work
whether or not the server is running; the server picks the message up within a
second."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time

from mailyard.cli.spool_access import fail, open_spool
from mailyard.config import Config
from mailyard.envelope import Envelope, Recipient
from mailyard.message.submit import (
    compose,
    is_valid_address,
    prepare_local_message,
    recipients_from_headers,
    split_head,
    to_crlf,
)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _enqueue(config: Config, sender: str, recipients: list[str], content: bytes) -> int:
    bad = [r for r in recipients if not is_valid_address(r)]
    if bad:
        return fail(f"not a valid recipient address: {bad[0]}")
    if sender and not is_valid_address(sender):
        return fail(f"not a valid sender address: {sender}")
    if len(content) > config.smtpd.max_message_size:
        return fail(f"message is {len(content)} bytes, over smtpd.max_message_size "
                    f"({config.smtpd.max_message_size})")
    smtputf8 = any(not a.isascii() for a in [sender, *recipients])
    body_type = "8BITMIME" if not content.isascii() else "7BIT"
    envelope = Envelope(sender=sender, recipients=tuple(Recipient(r) for r in recipients),
                        body_type=body_type, smtputf8=smtputf8,
                        client_ip="127.0.0.1", client_helo="localhost",
                        auth_user=_local_user(), received_at=time.time())
    spool = open_spool(config)
    from mailyard.queue.api import StorageError

    try:
        qid = asyncio.run(spool.enqueue(envelope, content))
    except (StorageError, OSError) as exc:
        return fail(f"could not queue the message: {exc}")
    print(f"queued as {qid}", file=sys.stderr)
    return 0


def default_sender(config: Config) -> str:
    """An envelope sender whose bounces reach a mailbox: ``USER@<primary local domain>``
    when that address exists in the directory (a user or an alias), otherwise
    ``postmaster@<primary local domain>``, which always exists.  The primary local
    domain is the first of ``local_domains``, else the first added with ``mailyard
    domain add``, else the host name."""
    from mailyard.directory.api import DirectoryError
    from mailyard.directory.sqlite import SqliteDirectory

    path = config.data_path / "directory.db"
    domain = config.local_domains[0] if config.local_domains else ""
    own = ""
    if path.exists():  # never create the directory from here
        try:
            directory = SqliteDirectory(path, config)
            domain = domain or next((d.name for d in directory.list_domains()), "")
            own = f"{_local_user()}@{domain or config.hostname}"
            if not directory.recipient_exists(own):
                own = ""
        except DirectoryError:
            own = ""
    return own or f"postmaster@{domain or config.hostname}"


def cmd_send(args: argparse.Namespace, config: Config) -> int:
    sender = args.sender or default_sender(config)
    if args.body_file:
        try:
            with open(args.body_file, encoding="utf-8") as f:
                body = f.read()
        except OSError as exc:
            return fail(f"cannot read {args.body_file}: {exc.strerror}")
    else:
        body = sys.stdin.read()
    raw = compose(sender, args.to, args.subject, body, cc=args.cc, hostname=config.hostname)
    content = prepare_local_message(raw, config.hostname, user=_local_user(), strip_bcc=False)
    return _enqueue(config, sender, [*args.to, *args.cc, *args.bcc], content)


def read_sendmail_input(stream, dot_ends: bool) -> bytes:  # type: ignore[no-untyped-def]
    """Read the message; without -i/-oi a line with a single '.' ends it (sendmail)."""
    if not dot_ends:
        return stream.read()
    lines = []
    for line in stream:
        if line.rstrip(b"\r\n") == b".":
            break
        lines.append(line)
    return b"".join(lines)


def cmd_sendmail(args: argparse.Namespace, config: Config) -> int:
    raw = read_sendmail_input(sys.stdin.buffer, dot_ends=not (args.i or args.oi))
    recipients = list(args.recipients)
    if args.t:
        head, _ = split_head(to_crlf(raw))
        recipients += [r for r in recipients_from_headers(head) if r not in recipients]
    if not recipients:
        return fail("no recipients (give addresses, or -t to read them from the headers)")
    sender = args.f if args.f is not None else default_sender(config)
    if sender == "<>":
        sender = ""
    content = prepare_local_message(raw, config.hostname, user=_local_user(), strip_bcc=True,
                                    sender=sender, full_name=args.F or "")
    return _enqueue(config, sender, recipients, content)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("send", help="compose a plain-text message and queue it",
                       description="Compose a plain-text message and queue it for delivery. "
                                   "The body is read from standard input unless --body-file "
                                   "is given.")
    p.add_argument("--from", dest="sender", help="sender address (default: USER@first local domain if that "
                        "address exists, else postmaster@first local domain)")
    p.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    p.add_argument("--cc", action="append", default=[], help="Cc recipient (repeatable)")
    p.add_argument("--bcc", action="append", default=[], help="Bcc recipient (repeatable)")
    p.add_argument("--subject", default="", help="subject line")
    p.add_argument("--body-file", help="read the body from this file")
    p.set_defaults(func=cmd_send)

    s = sub.add_parser("sendmail", help="sendmail-compatible entry point for local programs",
                       description="Read a message on standard input and queue it, like "
                                   "sendmail(1). Unknown sendmail -o options are ignored.")
    s.add_argument("-t", action="store_true", help="take recipients from To/Cc/Bcc (Bcc is removed)")
    s.add_argument("-i", action="store_true", help="a line with a single '.' does not end the message")
    s.add_argument("-oi", action="store_true", help="same as -i")
    s.add_argument("-f", metavar="SENDER", help="envelope sender ('<>' for the null sender)")
    s.add_argument("-F", metavar="NAME", help="full name for a From header that is added")
    s.add_argument("-o", metavar="OPTION", action="append", default=[], help=argparse.SUPPRESS)
    s.add_argument("recipients", nargs="*", help="recipient addresses")
    s.set_defaults(func=cmd_sendmail)

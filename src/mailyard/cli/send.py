"""``mailyard send`` and ``mailyard sendmail``: hand mail to the queue from the command
line.  Both write straight into the queue, like Postfix's postdrop, so they work
whether or not the server is running; the server picks the message up within a
second."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING

from mailyard.cli.spool_access import fail, open_spool
from mailyard.cli.terminal import printable
from mailyard.config import Config

if TYPE_CHECKING:
    from mailyard.sending.limiter import SendLimiter
from mailyard.message.submit import (
    SubmissionError,
    check_text,
    compose,
    is_valid_address,
    local_submission,
    prepare_local_message,
    recipients_from_headers,
    split_head,
    to_crlf,
    user_name,
)


def local_user(uid: int | None = None) -> str:
    """The name of the user running the command, from the password database by the
    real uid: never from ``LOGNAME``/``USER``, which the caller controls."""
    return user_name(os.getuid() if uid is None else uid)


def usage_error(message: str) -> int:
    print(f"mailyard: {message}", file=sys.stderr)
    return 2  # usage error (see mailyard.cli.main)


def _check_addresses(sender: str, recipients: list[str]) -> str | None:
    bad = [r for r in recipients if not is_valid_address(r)]
    if bad:
        return f"not a valid recipient address: {printable(bad[0])}"
    if sender and not is_valid_address(sender):
        return f"not a valid sender address: {printable(sender)}"
    return None


def can_write_queue(config: Config) -> bool:
    """True for the data directory's owner (and root): they write the queue directly.
    Everybody else hands the message to the server through the maildrop."""
    queue = config.data_path / "queue"
    if queue.is_dir():
        dirs = [queue / "msg", queue / "tmp"]
    else:  # not created yet: whoever may create it
        existing = next(p for p in (queue, *queue.parents) if p.exists())
        dirs = [existing]
    try:
        return all(os.access(d, os.W_OK | os.X_OK) for d in dirs) and (
            not (queue / "index.db").exists() or os.access(queue / "index.db", os.W_OK))
    except OSError:
        return False


def _submit(config: Config, sender: str, recipients: list[str], raw: bytes, *,
            strip_bcc: bool, full_name: str = "") -> int:
    """Queue directly when allowed, else drop the message for the server's pickup."""
    if can_write_queue(config):
        content = prepare_local_message(raw, user=local_user(), strip_bcc=strip_bcc,
                                        sender=sender, full_name=full_name)
        return _enqueue(config, sender, recipients, content)
    from mailyard.queue.pickup import MaildropPaths, encode_drop, write_drop_file

    problem = _check_addresses(sender, recipients)
    if problem:
        return fail(problem)
    if len(raw) > config.smtpd.max_message_size:
        return fail(f"message is {len(raw)} bytes, over smtpd.max_message_size "
                    f"({config.smtpd.max_message_size})")
    maildrop = MaildropPaths(config.data_path).maildrop
    data = encode_drop(sender, recipients, raw, full_name=full_name, strip_bcc=strip_bcc)
    try:
        write_drop_file(maildrop, data)
    except OSError as exc:
        return fail(f"cannot write the queue, nor the maildrop {maildrop} "
                    f"({exc.strerror or exc}); is the server set up (mailyard serve)?")
    print("queued for pickup by the server", file=sys.stderr)
    return 0


def _enqueue(config: Config, sender: str, recipients: list[str], content: bytes) -> int:
    """Queue through ingest (the trace field, Date and Message-ID, the limits)."""
    problem = _check_addresses(sender, recipients)
    if problem:
        return fail(problem)
    if len(content) > config.smtpd.max_message_size:
        return fail(f"message is {len(content)} bytes, over smtpd.max_message_size "
                    f"({config.smtpd.max_message_size})")
    from mailyard.ingest.api import IngestRefused
    from mailyard.ingest.pipeline import ingest_for
    from mailyard.message.trace import TraceError
    from mailyard.queue.api import StorageError

    limiter = _send_limiter(config)
    refusal = limiter.check(sender, len(recipients)) if limiter and sender else None
    if refusal is not None:
        return fail(refusal.text)
    ingest = ingest_for(config, open_spool(config))
    submission = local_submission(sender, recipients, content, local_user())
    try:
        qid = asyncio.run(ingest.submit(submission, content))
    except IngestRefused as exc:
        return fail(f"message refused: {exc.reply}")
    except TraceError as exc:
        return fail(str(exc))
    except (StorageError, OSError) as exc:
        return fail(f"could not queue the message: {exc}")
    print(f"queued as {qid}", file=sys.stderr)
    if limiter is not None and sender:
        _count_sent(limiter, sender, len(recipients))
    return 0


def _send_limiter(config: Config) -> SendLimiter | None:
    """The sending limits of ``[sending]`` and ``mailyard user limits``, checked
    against the envelope sender (None when they cannot be read: the message goes)."""
    import sqlite3

    from mailyard.sending.limiter import SendLimiter
    from mailyard.sending.store import SqliteSendCounters, sending_db_path

    limiter = SendLimiter(SqliteSendCounters(sending_db_path(config.data_path)),
                          config.sending)
    try:
        limiter.allowance("probe@invalid")  # opens the store
    except (sqlite3.Error, OSError) as exc:
        print(f"mailyard: warning: sending limits not checked ({exc})", file=sys.stderr)
        return None
    return limiter


def _count_sent(limiter: SendLimiter, sender: str, recipients: int) -> None:
    import sqlite3

    try:
        limiter.record(sender, recipients)
    except (sqlite3.Error, OSError) as exc:
        print(f"mailyard: warning: message not counted ({exc})", file=sys.stderr)


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
            own = f"{local_user()}@{domain or config.hostname}"
            if not directory.recipient_exists(own):
                own = ""
        except DirectoryError:
            own = ""
    return own or f"postmaster@{domain or config.hostname}"


def cmd_send(args: argparse.Namespace, config: Config) -> int:
    sender = args.sender or default_sender(config)
    problem = _check_addresses(sender, [*args.to, *args.cc, *args.bcc])
    if problem:
        return usage_error(problem)
    try:
        check_text("--subject", args.subject)
    except SubmissionError as exc:
        return usage_error(str(exc))
    try:
        if args.body_file:
            with open(args.body_file, encoding="utf-8") as f:
                body = f.read()
        else:
            body = sys.stdin.read()
    except OSError as exc:
        return fail(f"cannot read {args.body_file}: {exc.strerror}")
    except UnicodeDecodeError:
        return fail("the body is not valid UTF-8 text")
    raw = compose(sender, args.to, args.subject, body, cc=args.cc, hostname=config.hostname)
    return _submit(config, sender, [*args.to, *args.cc, *args.bcc], raw, strip_bcc=False)


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
    full_name = args.F or ""
    try:
        check_text("the full name (-F)", full_name)
    except SubmissionError as exc:
        return usage_error(str(exc))
    sender = args.f if args.f is not None else default_sender(config)
    if sender == "<>":
        sender = ""
    problem = _check_addresses(sender, list(args.recipients))
    if problem:
        return usage_error(problem)
    raw = read_sendmail_input(sys.stdin.buffer, dot_ends=not (args.i or args.oi))
    recipients = list(args.recipients)
    if args.t:
        head, _ = split_head(to_crlf(raw))
        try:
            found = recipients_from_headers(head)
        except SubmissionError as exc:
            return fail(f"-t: {printable(str(exc))}")
        recipients += [r for r in found if r not in recipients]
    if not recipients:
        return fail("no recipients (give addresses, or -t to read them from the headers)")
    return _submit(config, sender, recipients, raw, strip_bcc=True, full_name=full_name)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("send", help="compose a plain-text message and queue it",
                       description="Compose a plain-text message and queue it for delivery. "
                                   "The body is read from standard input unless --body-file "
                                   "is given.")
    p.add_argument("--from", dest="sender",
                   help="sender address (default: USER@first local domain if that "
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
    s.add_argument("-t", action="store_true",
                   help="take recipients from To/Cc/Bcc (Bcc is removed)")
    s.add_argument("-i", action="store_true",
                   help="a line with a single '.' does not end the message")
    s.add_argument("-oi", action="store_true", help="same as -i")
    s.add_argument("-f", metavar="SENDER", help="envelope sender ('<>' for the null sender)")
    s.add_argument("-F", metavar="NAME", help="full name for a From header that is added")
    s.add_argument("-o", metavar="OPTION", action="append", default=[], help=argparse.SUPPRESS)
    s.add_argument("recipients", nargs="*", help="recipient addresses")
    s.set_defaults(func=cmd_sendmail)

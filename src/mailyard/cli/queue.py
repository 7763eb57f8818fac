"""``mailyard queue``: inspect and manage queued mail (through :class:`QueueAdmin`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mailyard.cli.common import json_flag
from mailyard.cli.spool_access import fail, open_spool
from mailyard.cli.terminal import printable
from mailyard.config import Config
from mailyard.queue.api import QueueAdmin, QueuedRecipient, QueueEntry
from mailyard.queue.spool import FileSpool
from mailyard.queue.threaded import ThreadedSpool
from mailyard.services.queue import entry_to_json

_T = TypeVar("_T")
HEADER_READ_LIMIT = 256 * 1024


def _with_queue(config: Config, job: Callable[[ThreadedSpool], Awaitable[_T]]) -> _T:
    spool: FileSpool = open_spool(config)
    queue = ThreadedSpool(spool)
    try:
        return asyncio.run(_call(job, queue))
    finally:
        queue.close()


async def _call(job: Callable[[ThreadedSpool], Awaitable[_T]], queue: ThreadedSpool) -> _T:
    return await job(queue)


def _reply_line(r: QueuedRecipient) -> str:
    if r.last_reply is None:
        return ""
    said = f" (from {r.last_reply.remote_host})" if r.last_reply.remote_host else ""
    return printable(str(r.last_reply) + said)


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    entries = _with_queue(config, lambda q: q.list())
    if args.json:
        print(json.dumps([entry_to_json(e) for e in entries], indent=2))
        return 0
    if not entries:
        print("Queue is empty.")
        return 0
    print(f"{'ID':<20} {'SIZE':>9} {'ARRIVED':<19}  SENDER / RECIPIENTS")
    for e in entries:
        print(f"{e.qid:<20} {e.size:>9} {_ts(e.created):<19}  <{printable(e.envelope.sender)}>")
        for r in e.recipients:
            extra = f" next {_ts(r.next_attempt)}" if r.state.value == "deferred" else ""
            print(f"{'':<52}{printable(r.address)} [{r.state.value}, {r.attempts} attempts"
                  f"{extra}]")
            if r.last_reply is not None:
                print(f"{'':<54}{_reply_line(r)}")
    print(f"-- {len(entries)} message(s)")
    return 0


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    async def load(queue: ThreadedSpool) -> tuple[QueueEntry | None, bytes]:
        entry = await queue.get(args.id)
        if entry is None or not args.headers:
            return entry, b""
        return entry, await queue.read_content(entry.qid, HEADER_READ_LIMIT)

    entry, head = _with_queue(config, load)
    if entry is None:
        return fail(f"no queued message with id {args.id}")
    if args.json:
        print(json.dumps(entry_to_json(entry), indent=2))
        return 0
    env = entry.envelope
    print(f"Queue ID:    {entry.qid}")
    print(f"Arrived:     {_ts(entry.created)}")
    print(f"Size:        {entry.size}")
    print(f"Sender:      <{printable(env.sender)}>")
    if env.auth_user:
        print(f"Submitted by: {printable(env.auth_user)}")
    if env.client_ip:
        print(f"Client:      helo={printable(env.client_helo or '-')} "
              f"ip={printable(env.client_ip or '-')}")
    for r in entry.recipients:
        print(f"Recipient:   {printable(r.address)}: {r.state.value}, {r.attempts} attempt(s), "
              f"last {_ts(r.last_attempt)}, next {_ts(r.next_attempt)}")
        if r.last_reply is not None:
            print(f"             last reply: {_reply_line(r)}")
    if args.headers:
        print()
        for line in head.splitlines(keepends=True):
            if line in (b"\r\n", b"\n"):
                break
            print(printable(line.decode("utf-8", "replace").rstrip("\r\n")))
    return 0


_ACTIONS: dict[str, Callable[[QueueAdmin, str], Awaitable[bool]]] = {
    "delete": lambda q, qid: q.delete(qid),
    "hold": lambda q, qid: q.hold(qid),
    "release": lambda q, qid: q.release(qid),
}


def _one(action: str) -> Callable[[argparse.Namespace, Config], int]:
    def handler(args: argparse.Namespace, config: Config) -> int:
        ok = _with_queue(config, lambda q: _ACTIONS[action](q, args.id))
        if not ok:
            return fail(f"no queued message with id {args.id}")
        print(f"{args.id}: {action} done")
        return 0
    return handler


def cmd_flush(args: argparse.Namespace, config: Config) -> int:
    n = _with_queue(config, lambda q: q.flush(args.id))
    print(f"{n} recipient(s) scheduled for immediate delivery")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    q = sub.add_parser("queue", help="inspect and manage the mail queue",
                       description="Inspect and manage queued mail.")
    qs = q.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    id_help = "queue id, as `mailyard queue list` shows it"
    p = qs.add_parser("list", help="list queued messages with per-recipient state",
                      description="List queued messages: sender, size, age and each "
                                  "recipient's state (pending, deferred, held...), attempts, "
                                  "next attempt and last reply.")
    json_flag(p)
    p.set_defaults(func=cmd_list)
    p = qs.add_parser("show", help="show one queued message",
                      description="Show one queued message in detail: envelope, client, "
                                  "submitter, DSN parameters and every recipient's state.")
    p.add_argument("id", metavar="ID", help=id_help)
    json_flag(p)
    p.add_argument("--headers", action="store_true", help="also print the message headers")
    p.set_defaults(func=cmd_show)
    p = qs.add_parser("flush", help="retry deferred mail now (all, or one ID)",
                      description="Make deferred recipients due now, of every message or "
                                  "of one; the running server picks them up at once.")
    p.add_argument("id", metavar="ID", nargs="?", help=id_help + " (default: every message)")
    p.set_defaults(func=cmd_flush)
    for action, text in (("delete", "delete a queued message (no bounce is sent)"),
                         ("hold", "hold a message: it is not delivered until released"),
                         ("release", "release a held message for immediate delivery")):
        p = qs.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("id", metavar="ID", help=id_help)
        p.set_defaults(func=_one(action))

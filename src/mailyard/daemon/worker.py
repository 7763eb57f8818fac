"""A worker process: the SMTP, POP3 and IMAP servers.

The supervisor starts one worker per CPU (``smtpd.workers``).  Each worker inherits the
listening sockets, runs the asyncio SMTP server on the SMTP ones and the POP3 server
(:mod:`mailyard.pop3d`, sharing the SMTP server's AUTH guard) on the POP3 ones, the IMAP
server (:mod:`mailyard.imapd`, the same guard) on the IMAP ones, and tells the
supervisor about every message it queued by writing the queue id to a pipe, so delivery
starts at once.  Run as ``python -m mailyard.daemon.worker``; the configuration comes as
JSON on standard input.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import socket
import sys

from mailyard.config import Config
from mailyard.daemon.fdlimit import (
    RESERVED_DESCRIPTORS,
    AcceptErrorReporter,
    log_budget,
    open_descriptors,
    plan_worker,
    raise_nofile_limit,
)
from mailyard.daemon.process import cannot_start, on_stop_signal, settle, start_process
from mailyard.obs import Metrics, log_event

log = logging.getLogger("mailyard.worker")

METRICS_DUMP_INTERVAL = 5.0
NOTIFY_DELAY = 0.02
POP3_KINDS = ("pop3", "pop3s")
IMAP_KINDS = ("imap", "imaps")


class QueueNotifier:
    """Writes queue ids to the supervisor's pipe, one line each; the ids queued within
    ``delay`` seconds of the first go out in one write, so under load the supervisor
    wakes a few dozen times a second, not once per message.  A full pipe drops the
    note: the supervisor also polls the queue, so nothing is lost, only a little
    latency."""

    def __init__(self, fd: int, delay: float = NOTIFY_DELAY) -> None:
        self.fd = fd
        self.delay = delay
        self._pending: list[str] = []
        os.set_blocking(fd, False)

    def __call__(self, qid: str) -> None:
        self._pending.append(qid)
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_later(self.delay, self.send)

    def send(self) -> None:
        data = "".join(f"{qid}\n" for qid in self._pending).encode("ascii")
        self._pending.clear()
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.fd, data)


async def run_worker(config: Config, listeners: list[tuple[str, socket.socket]],
                     notify_fd: int, cert: str, key: str) -> None:
    from mailyard.daemon.secret import ServerSecretError, derive_key, load_server_secret
    from mailyard.directory.sqlite import SqliteDirectory
    from mailyard.ingest.api import DeliverNow
    from mailyard.ingest.pipeline import ingest_for
    from mailyard.queue.spool import FileSpool
    from mailyard.smtpd.server import SmtpServer
    from mailyard.tls import server_context

    loop = asyncio.get_running_loop()
    reporter = AcceptErrorReporter()
    loop.set_exception_handler(reporter)
    config, nofile = fit_open_file_limit(config)
    data = config.data_path
    try:
        secret = load_server_secret(data)
    except ServerSecretError as exc:
        cannot_start(log, "worker cannot start", exc)
    spool = FileSpool(data / "queue", config.hostname)
    directory = SqliteDirectory(data / "directory.db", config, refresh_each_lookup=False)
    metrics = Metrics()
    deliver_now: DeliverNow | None = None
    if any(t.mode == "end-to-end" for t in config.delivery.transports):
        # Only workers with end-to-end transports load the delivery code.
        from mailyard.delivery.now import EndToEndDelivery
        from mailyard.queue.threaded import ThreadedSpool

        deliver_now = EndToEndDelivery(config, ThreadedSpool(spool))
    direct = None
    if config.delivery.direct_local:
        # Mail for one local mailbox goes into it at once (mailyard.delivery.direct).
        from mailyard.delivery.direct import DirectLocalDelivery

        direct = DirectLocalDelivery(config, directory, metrics)
    tls = server_context(cert, key)
    decoy_key = derive_key(secret, "scram decoy")
    ingest = ingest_for(config, spool, direct=direct)
    ingest.prepare_hooks()  # e.g. the Public Suffix List, before the first message
    server = SmtpServer(config, spool, directory, tls, metrics,
                        QueueNotifier(notify_fd),
                        scram_decoy_key=decoy_key,
                        ingest=ingest, deliver_now=deliver_now)
    pop3 = None
    if any(kind in POP3_KINDS for kind, _ in listeners):
        from mailyard.pop3d.server import Pop3Server
        from mailyard.store.maildir import MaildirStore

        pop3 = Pop3Server(config, directory, MaildirStore(data / "mail", config.hostname),
                          tls, server.auth_gate, scram_decoy_key=decoy_key)
    imap = None
    if any(kind in IMAP_KINDS for kind, _ in listeners):
        from mailyard.imapd.server import ImapServer
        from mailyard.store.maildir import MaildirStore

        imap = ImapServer(config, directory, MaildirStore(data / "mail", config.hostname),
                          tls, server.auth_gate, scram_decoy_key=decoy_key)
    for kind, sock in listeners:
        if pop3 is not None and kind in POP3_KINDS:
            await pop3.serve(kind, sock)
        elif imap is not None and kind in IMAP_KINDS:
            await imap.serve(kind, sock)
        else:
            await server.serve(kind, sock)
    stop = asyncio.Event()
    on_stop_signal(stop.set)
    metrics_dir = data / "run" / "metrics"
    settle()
    log_event(log, "worker started", pid=os.getpid())
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), METRICS_DUMP_INTERVAL)
        try:
            metrics.dump(metrics_dir)
        except OSError as exc:
            log_event(log, "cannot write metrics", level=logging.WARNING, error=str(exc))
        check_descriptors(reporter, nofile)
    if pop3 is not None:
        await pop3.close()
    if imap is not None:
        await imap.close()
    await server.close()
    await ingest.close_hooks()  # e.g. the DMARC evaluations still in memory
    if deliver_now is not None:
        await deliver_now.close()
    if direct is not None:
        await direct.close()
    with contextlib.suppress(OSError):
        metrics.dump(metrics_dir)


def fit_open_file_limit(config: Config) -> tuple[Config, int]:
    """Raise RLIMIT_NOFILE and lower smtpd.max_connections (with a warning) when the
    connections would not fit; the config to use and the open-file limit."""
    nofile = raise_nofile_limit()
    budget = plan_worker(config, nofile)
    log_budget(budget)
    if budget.clamped:
        smtpd = dataclasses.replace(config.smtpd, max_connections=budget.max_connections)
        config = dataclasses.replace(config, smtpd=smtpd)
    return config, nofile


def check_descriptors(reporter: AcceptErrorReporter, nofile: int) -> None:
    """uvloop (libuv) accepts and drops connections silently when descriptors run
    out: say so when this process gets near its limit (rate-limited)."""
    used = open_descriptors()
    if used is not None and used >= nofile - RESERVED_DESCRIPTORS // 2:
        reporter.report(errno.EMFILE, "file descriptors nearly exhausted")


def main(argv: list[str] | None = None) -> int:
    start = start_process("mailyard-worker", argv, listens=True)
    asyncio.run(run_worker(start.config, start.listeners, start.notify_fd, start.cert,
                           start.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())

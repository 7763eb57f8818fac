"""An HTTP worker process: the JSON API and the public pages (:mod:`mailyard.http`).

The supervisor starts ``http.workers`` of them beside the SMTP workers, each
inheriting the ``listen.http``/``listen.https`` sockets (bound as root, before the
privileges were dropped) and the configuration, certificate and key on standard
input, exactly as an SMTP worker.  Mail the service produces (double opt-in
confirmations) goes through ingest into the queue, and the queue id to the
supervisor's pipe so delivery starts at once.  Run as ``python -m
mailyard.daemon.http_worker``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys

from mailyard.config import Config, config_from_dict
from mailyard.obs import log_event, setup_logging

log = logging.getLogger("mailyard.http")


async def run_http_worker(config: Config, listeners: list[tuple[str, socket.socket]],
                          notify_fd: int, cert: str, key: str) -> None:
    from mailyard.daemon.secret import ServerSecretError
    from mailyard.daemon.worker import QueueNotifier
    from mailyard.envelope import made_here
    from mailyard.http.app import create_app
    from mailyard.http.context import HttpContext
    from mailyard.http.ratelimit import RateLimiter
    from mailyard.http.server import HttpServers
    from mailyard.ingest.api import Origin, Submission
    from mailyard.ingest.pipeline import ingest_for
    from mailyard.queue.spool import FileSpool
    from mailyard.services.campaigns import OutgoingMail, submit_mail
    from mailyard.services.contacts import ConfirmationMail
    from mailyard.services.setup import open_apikeys, open_campaigns, open_contacts, open_messages
    from mailyard.services.tracking import open_campaign_public
    from mailyard.tls import server_context

    try:
        contacts = open_contacts(config)
    except ServerSecretError as exc:
        log_event(log, "http worker cannot start", level=logging.ERROR, error=str(exc))
        raise SystemExit(1) from None
    ingest = ingest_for(config, FileSpool(config.data_path / "queue", config.hostname))
    notify = QueueNotifier(notify_fd)

    async def mailer(mail: ConfirmationMail) -> str:
        envelope = made_here(mail.sender, [mail.recipient], mail.content)
        qid = await ingest.submit(Submission(Origin.API, envelope), mail.content)
        notify(qid)
        log_event(log, "confirmation queued", qid=qid)
        return qid

    async def campaign_mailer(mail: OutgoingMail) -> str:
        qid = await submit_mail(ingest, mail)
        notify(qid)
        log_event(log, "campaign test message queued", qid=qid)
        return qid

    ctx = HttpContext(contacts, open_apikeys(config), mailer,
                      RateLimiter(config.http.subscribe_rate, config.http.subscribe_window),
                      max_body_size=config.http.max_body_size,
                      max_import_size=config.http.max_import_size,
                      campaign_public=open_campaign_public(config, contacts),
                      campaigns=open_campaigns(config, contacts),
                      campaign_mailer=campaign_mailer,
                      messages=open_messages(config, contacts, ingest, notify))
    tls = server_context(cert, key) if any(k == "https" for k, _ in listeners) else None
    servers = HttpServers(create_app(ctx), listeners, tls)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, servers.stop)
    log_event(log, "http worker started", pid=os.getpid())
    try:
        await servers.serve()
    finally:
        assert ctx.campaign_public is not None
        await asyncio.to_thread(ctx.campaign_public.recorder.close)


def main(argv: list[str] | None = None) -> int:
    from mailyard.daemon.worker import install_event_loop_policy, pem_files

    parser = argparse.ArgumentParser(prog="mailyard-http-worker")
    parser.add_argument("--listen", action="append", default=[], metavar="KIND:FD")
    parser.add_argument("--notify-fd", type=int, required=True)
    args = parser.parse_args(argv)
    payload = json.loads(sys.stdin.read())
    cert, key = pem_files(payload["cert_pem"], payload["key_pem"])
    config = config_from_dict(payload["config"], payload.get("source", ""))
    setup_logging(config.log.format, config.log.level, config.log.file, buffered=True)
    listeners = []
    for item in args.listen:
        kind, fd = item.split(":")
        sock = socket.socket(fileno=int(fd))
        sock.setblocking(False)
        listeners.append((kind, sock))
    install_event_loop_policy()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    asyncio.run(run_http_worker(config, listeners, args.notify_fd, cert, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

import asyncio
import logging
import os
import socket
import sys

from mailyard.config import Config
from mailyard.daemon.process import cannot_start, on_stop_signal, settle, start_process
from mailyard.obs import log_event

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
        cannot_start(log, "http worker cannot start", exc)
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
    on_stop_signal(servers.stop)
    settle()
    log_event(log, "http worker started", pid=os.getpid())
    try:
        await servers.serve()
    finally:
        assert ctx.campaign_public is not None
        await asyncio.to_thread(ctx.campaign_public.recorder.close)


def main(argv: list[str] | None = None) -> int:
    start = start_process("mailyard-http-worker", argv, listens=True)
    asyncio.run(run_http_worker(start.config, start.listeners, start.notify_fd, start.cert,
                                start.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())

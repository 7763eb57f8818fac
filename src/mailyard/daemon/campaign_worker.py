"""The campaign worker process: the sending engine (:mod:`mailyard.bulk.campaigns.runner`).

The supervisor starts one beside the SMTP and HTTP workers, gives it the configuration
on standard input and the queue-notification pipe, and restarts it if it dies, like
the others.  It is a process of its own, not a task in the supervisor, because
rendering (Jinja2, CSS inlining, the text part) and DKIM signing are CPU work that
would hold up the dispatcher's event loop while a campaign of 100,000 goes out; a
process also uses the second core.  It opens ``bulk.db`` only once it exists (no
contacts yet: nothing to send).  Run as ``python -m mailyard.daemon.campaign_worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from mailyard.config import Config
from mailyard.daemon.process import cannot_start, on_stop_signal, settle, start_process
from mailyard.obs import log_event

log = logging.getLogger("mailyard.campaigns")

WAIT_FOR_DB = 1.0  # seconds between looks for bulk.db
BULK_DB = "bulk.db"  # mailyard.services.setup.BULK_DB, not imported while idle


async def run_campaign_worker(config: Config, notify_fd: int) -> None:
    stop = asyncio.Event()
    on_stop_signal(stop.set)
    # Nothing heavy is imported before there are contacts: a server that sends no
    # campaigns pays for a small idle process only.
    while not (config.data_path / BULK_DB).exists():
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WAIT_FOR_DB)

    from mailyard.bulk.campaigns.compose import send_settings
    from mailyard.bulk.campaigns.recipients import RecipientStore
    from mailyard.bulk.campaigns.renderpool import RenderSigning, render_processes
    from mailyard.bulk.campaigns.runner import CampaignRunner, Queue
    from mailyard.bulk.sqlite import SqliteContactStore
    from mailyard.daemon.secret import ServerSecretError
    from mailyard.daemon.worker import QueueNotifier
    from mailyard.ingest.pipeline import ingest_for
    from mailyard.queue.identity import ProcessIdentity, owner_is_dead
    from mailyard.queue.spool import FileSpool
    from mailyard.services import setup

    assert setup.BULK_DB == BULK_DB
    try:
        contacts = setup.open_contacts(config)
        settings = send_settings(config)
    except ServerSecretError as exc:
        cannot_start(log, "campaign worker cannot start", exc)
    store = contacts.store
    assert isinstance(store, SqliteContactStore)
    spool = FileSpool(config.data_path / "queue", config.hostname, gather_commits=True)
    notify = QueueNotifier(notify_fd)
    runner = CampaignRunner(setup.open_campaign_store(contacts), RecipientStore(store.db),
                            store.digest, ingest_for(config, spool),
                            Queue(spool.submitted, spool.sweep, notify), settings,
                            ProcessIdentity.current().token, owner_is_dead,
                            render_workers=render_processes(config.bulk.render_workers),
                            render_signing=RenderSigning.of(config.dkim, config.data_dir))
    settle()
    log_event(log, "campaign worker started", pid=os.getpid())
    try:
        await runner.run(stop)
    finally:
        spool.close()


def main(argv: list[str] | None = None) -> int:
    start = start_process("mailyard-campaign-worker", argv, listens=False)
    asyncio.run(run_campaign_worker(start.config, start.notify_fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())

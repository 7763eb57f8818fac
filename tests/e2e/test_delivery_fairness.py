"""One destination cannot hold up the others (the dispatcher in-process, on loopback).

* A destination whose next hop refuses connections is suspended after a few attempts
  in a row: its other queued mail waits without attempts being counted, and mail for
  a healthy destination queued behind it is delivered.
* A destination that accepts connections but never answers holds at most its share of
  the active window; mail for a healthy destination still gets claimed and delivered.

Nothing here waits for a fixed time: each test runs until the healthy mail is in, and
is bounded by the test timeout.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from mailyard.config import Config, DeliveryConfig, TransportRoute
from mailyard.delivery.destinations import DEAD_AFTER
from mailyard.delivery.dispatcher import Dispatcher
from mailyard.directory.sqlite import SqliteDirectory
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.pipeline import ingest_for
from mailyard.obs import Metrics
from mailyard.queue.api import RecipientState
from mailyard.queue.spool import FileSpool
from mailyard.queue.threaded import ThreadedSpool
from tests.support.fake_smtp import FakeSmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

CONTENT = b"Subject: fairness\r\n\r\nbody\r\n"


def config(tmp_path: Path, routes: dict[str, int], **delivery: object) -> Config:
    transports = tuple(TransportRoute(domain=d, nexthop=f"127.0.0.1:{port}", tls="none")
                       for d, port in routes.items())
    return Config(hostname="mx.fair.test", data_dir=str(tmp_path / "data"),
                  delivery=DeliveryConfig(transports=transports, connect_timeout=30.0,
                                          command_timeout=30.0, **delivery))


async def queue(spool: FileSpool, domain: str, count: int) -> list[str]:
    envs = [Envelope("sender@origin.test", (Recipient(f"r{i}@{domain}"),))
            for i in range(count)]
    return list(await asyncio.gather(*(spool.enqueue(env, CONTENT) for env in envs)))


async def deliver_until(dispatcher: Dispatcher, spool: FileSpool, qids: list[str]) -> None:
    """Run the dispatcher until every one of ``qids`` has left the queue."""
    task = asyncio.create_task(dispatcher.run())
    try:
        while any(spool.get(q) is not None for q in qids):
            await asyncio.sleep(0.02)
            assert not task.done(), task
    finally:
        await dispatcher.stop()
        task.cancel()


def make_dispatcher(cfg, spool: FileSpool) -> Dispatcher:
    queue = ThreadedSpool(spool)
    directory = SqliteDirectory(cfg.data_path / "directory.db", cfg)
    return Dispatcher(cfg, queue, ingest_for(cfg, queue), directory, Metrics())


@pytest.fixture
def closed_port():
    """A loopback port where connections are refused (bound, never listening)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_unreachable_destination_is_suspended_without_burning_attempts(tmp_path, closed_port):
    async def go():
        async with FakeSmtpServer() as healthy:
            cfg = config(tmp_path, {"down.test": closed_port, "up.test": healthy.port},
                         max_per_destination=2, active_window=40)
            spool = FileSpool(cfg.data_path / "queue", cfg.hostname)
            backlog = await queue(spool, "down.test", 300)
            wanted = await queue(spool, "up.test", 5)
            dispatcher = make_dispatcher(cfg, spool)
            await deliver_until(dispatcher, spool, wanted)
            return spool, backlog, healthy

    started = time.time()
    spool, backlog, healthy = asyncio.run(go())
    assert len(healthy.messages) == 5
    recipients = [spool.get(q).recipients[0] for q in backlog]
    tried = [r for r in recipients if r.attempts]
    # DEAD_AFTER failures in a row suspend it; at most the other concurrent attempts
    # (max_per_destination) were already under way.
    assert DEAD_AFTER <= sum(r.attempts for r in recipients) <= DEAD_AFTER + 2
    assert all(r.state is RecipientState.DEFERRED for r in tried)
    waiting = [r for r in recipients if not r.attempts]
    assert len(waiting) >= 300 - DEAD_AFTER - 2
    # Postponed to the end of the suspension (the first retry interval), not tried.
    assert all(r.state is RecipientState.PENDING and r.next_attempt > started
               for r in waiting)
    # Held back as suspended, or (claimed before it died) as over its share.
    assert all("suspended" in r.last_reply.text or "waiting for a turn" in r.last_reply.text
               for r in waiting)
    spool.close()


def test_silent_destination_holds_only_its_share_of_the_window(tmp_path):
    async def go():
        async with FakeSmtpServer(delays={"GREETING": 3600}) as silent, \
                FakeSmtpServer() as healthy:
            cfg = config(tmp_path, {"slow.test": silent.port, "up.test": healthy.port},
                         max_per_destination=2, active_window=8)
            spool = FileSpool(cfg.data_path / "queue", cfg.hostname)
            backlog = await queue(spool, "slow.test", 100)
            wanted = await queue(spool, "up.test", 5)
            dispatcher = make_dispatcher(cfg, spool)
            share = dispatcher.outbound.destinations.share
            await deliver_until(dispatcher, spool, wanted)
            return spool, backlog, healthy, silent, share

    spool, backlog, healthy, silent, share = asyncio.run(go())
    assert share == 2  # active_window // 4
    assert len(healthy.messages) == 5
    assert silent.connections <= 2  # max_per_destination; nothing was ever delivered
    assert all(spool.get(q).recipients[0].attempts == 0 for q in backlog)
    spool.close()

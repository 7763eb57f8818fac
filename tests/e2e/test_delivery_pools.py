"""Dedicated delivery pools over real SMTP.

* A message is assigned to a pool at ingest (by its login user or sender) and
  leaves from that pool's source address with its HELO name: the next hop (a fake MX
  on loopback) sees 127.0.0.2 for pool "news", 127.0.0.3 for pool "tx", and the
  server's own address and host name for the default pool.
* A flood in one pool does not delay another's mail to the same destination: pool
  A's mail is slow at the next hop and fills A's connection slots; pool B's mail
  queued behind it is delivered while A has delivered only a few of its messages.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from pathlib import Path

import pytest

from mailyard.config import Config, DeliveryConfig, DeliveryPool, TransportRoute
from mailyard.delivery.dispatcher import Dispatcher
from mailyard.directory.sqlite import SqliteDirectory
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.pipeline import ingest_for
from mailyard.obs import Metrics
from mailyard.queue.spool import FileSpool
from mailyard.queue.threaded import ThreadedSpool
from tests.support.certs import unverified_tls
from tests.support.fake_mx import FakeMx
from tests.support.fake_smtp import FakeSmtpServer
from tests.support.mailyard_server import MailyardServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_pools_bind_their_source_address_and_helo(tmp_path):
    port = free_port()
    with FakeMx("127.0.0.1", port) as mx:
        pools = [
            {"name": "news", "source_addresses": ["127.0.0.2"], "helo_name": "news.pool.test",
             "senders": ["alice@example.test"]},
            {"name": "tx", "source_addresses": ["127.0.0.3"], "helo_name": "tx.pool.test",
             "senders": ["example.test"], "rate_limits": {"elsewhere.test": "10/m"}},
        ]
        overrides = {"delivery": {
            "pools": pools,
            "transports": [{"domain": "remote.test", "nexthop": f"127.0.0.1:{port}",
                            "tls": "none"}]}}
        srv = MailyardServer(tmp_path, overrides=overrides)
        for user in ("alice", "bob"):
            srv.add_user(f"{user}@example.test", "secret")
        with srv:
            for user in ("alice", "bob"):
                with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=15) as s:
                    s.starttls(context=unverified_tls())
                    s.login(f"{user}@example.test", "secret")
                    s.sendmail(f"{user}@example.test", [f"{user}-friend@remote.test"],
                               f"Subject: from {user}\r\n\r\nhi\r\n".encode())
            # Port 25 mail from elsewhere, relayed by no pool: the default one.
            srv.cli("send", "--from", "root@other.test", "--to", "carol@remote.test",
                    "--subject", "default pool", input=b"plain\n")
            mx.wait_messages(3, timeout=30)
            sessions = mx.wait_sessions(3, timeout=30)
    seen = {}
    for msg in mx.messages:
        session = next(s for s in sessions if s.number == msg.session)
        helo = session.commands[0].split()[1]
        seen[msg.recipients[0]] = (session.peer, helo)
    assert seen["alice-friend@remote.test"] == ("127.0.0.2", "news.pool.test")
    assert seen["bob-friend@remote.test"] == ("127.0.0.3", "tx.pool.test")
    assert seen["carol@remote.test"] == ("127.0.0.1", "mx.example.test")


CONTENT = b"Subject: pools\r\n\r\nbody\r\n"


def _config(tmp_path: Path, port: int) -> Config:
    route = TransportRoute(domain="dest.test", nexthop=f"127.0.0.1:{port}", tls="none")
    pools = (DeliveryPool(name="a", source_addresses=("127.0.0.2",), max_concurrency=2,
                          max_per_destination=2),
             DeliveryPool(name="b", source_addresses=("127.0.0.3",), max_concurrency=2,
                          max_per_destination=2))
    return Config(hostname="mx.pools.test", data_dir=str(tmp_path / "data"),
                  delivery=DeliveryConfig(transports=(route,), pools=pools,
                                          max_per_destination=2))


async def _enqueue(spool: FileSpool, pool: str, count: int) -> list[str]:
    envs = [Envelope("sender@origin.test", (Recipient(f"{pool}{i}@dest.test"),), pool=pool)
            for i in range(count)]
    return [await spool.enqueue(env, CONTENT) for env in envs]


def test_flood_in_one_pool_does_not_delay_another(tmp_path):
    slow = 1.0  # seconds the next hop takes per message from pool A's address

    async def go():
        async with FakeSmtpServer(peer_delays={"127.0.0.2": slow}) as mx:
            cfg = _config(tmp_path, mx.port)
            spool = FileSpool(cfg.data_path / "queue", cfg.hostname)
            flood = await _enqueue(spool, "a", 60)
            wanted = await _enqueue(spool, "b", 5)
            queue = ThreadedSpool(spool)
            dispatcher = Dispatcher(cfg, queue, ingest_for(cfg, queue),
                                    SqliteDirectory(cfg.data_path / "directory.db", cfg),
                                    Metrics())
            started = time.monotonic()
            task = asyncio.create_task(dispatcher.run())
            try:
                while any(spool.get(q) is not None for q in wanted):
                    await asyncio.sleep(0.02)
                    assert not task.done(), task
                took = time.monotonic() - started
                from_a = [m for m in mx.messages if m.peer == "127.0.0.2"]
                from_b = [m for m in mx.messages if m.peer == "127.0.0.3"]
            finally:
                await dispatcher.stop()
                task.cancel()
            spool.close()
            return took, len(flood), from_a, from_b

    took, flooded, from_a, from_b = asyncio.run(go())
    assert len(from_b) == 5
    # Pool A sends 2 at a time, one per `slow` seconds each: had B waited behind A's
    # 60 messages it would have taken about 30 s.
    assert len(from_a) <= 12 < flooded
    assert took < 10 * slow


def test_destination_rate_postpones_without_an_attempt(tmp_path):
    async def go():
        async with FakeSmtpServer() as mx:
            cfg = _config(tmp_path, mx.port)
            pool = DeliveryPool(name="a", source_addresses=("127.0.0.2",),
                                rate_limits={"dest.test": "1/h"})
            cfg = Config(hostname=cfg.hostname, data_dir=cfg.data_dir,
                         delivery=DeliveryConfig(transports=cfg.delivery.transports,
                                                 pools=(pool,)))
            spool = FileSpool(cfg.data_path / "queue", cfg.hostname)
            qids = await _enqueue(spool, "a", 3)
            queue = ThreadedSpool(spool)
            dispatcher = Dispatcher(cfg, queue, ingest_for(cfg, queue),
                                    SqliteDirectory(cfg.data_path / "directory.db", cfg),
                                    Metrics())
            task = asyncio.create_task(dispatcher.run())
            started = time.time()
            try:
                def waiting() -> list:
                    entries = [spool.get(q) for q in qids]
                    return [e.recipients[0] for e in entries
                            if e is not None and e.recipients[0].last_reply is not None]
                while len(mx.messages) < 1 or len(waiting()) < 2:
                    await asyncio.sleep(0.02)
                    assert not task.done(), task
                held = waiting()
            finally:
                await dispatcher.stop()
                task.cancel()
            spool.close()
            return mx.messages, held, started

    messages, held, started = asyncio.run(go())
    assert len(messages) == 1 and messages[0].peer == "127.0.0.2"
    for r in held:
        assert r.attempts == 0
        assert "Delivery pool a: rate to dest.test is 1/h" in r.last_reply.text
        # Both wait for the next slot, an hour on (no slot is taken while waiting).
        assert r.next_attempt >= started + 3600 - 5

"""Delivery pools, without sockets: the pool a message gets at ingest, source address
round-robin per family, and that a dedicated pool never sweeps the queue."""

from __future__ import annotations

import asyncio

from mailyard.config import DeliveryConfig, parse_config
from mailyard.delivery.destinations import Destinations
from mailyard.delivery.pools import DEFAULT_POOL, SourceAddresses, lanes_for
from mailyard.envelope import Envelope, Recipient
from mailyard.ingest.api import Origin, Submission
from mailyard.ingest.pipeline import ingest_for
from tests.support.memory_queue import MemoryQueue

CONFIG = parse_config("""
[[delivery.pools]]
name = "news"
source_addresses = ["127.0.0.2", "127.0.0.4", "::2"]
helo_name = "news.example.test"
max_concurrency = 3
senders = ["news.example.test", "alice@example.test"]
""")


def _queued_pool(origin: Origin, sender: str, auth_user: str = "", pool: str = "") -> str:
    queue = MemoryQueue()
    env = Envelope(sender, (Recipient("x@remote.test"),), auth_user=auth_user)
    writer = ingest_for(CONFIG, queue).open(Submission(origin, env, pool=pool))
    writer.write(b"Subject: s\r\n\r\nbody\r\n")
    qid = asyncio.run(writer.commit())
    return queue.messages[qid][0].pool


def test_ingest_assigns_the_pool_by_sender_user_or_producer() -> None:
    assert _queued_pool(Origin.SUBMISSION, "a@news.example.test") == "news"
    assert _queued_pool(Origin.SUBMISSION, "bob@other.test", "alice@example.test") == "news"
    assert _queued_pool(Origin.LOCAL, "bob@example.test") == ""
    assert _queued_pool(Origin.CAMPAIGN, "x@y.test", pool="news") == "news"
    # Bounces and forwards stay in the default pool whoever they are from.
    assert _queued_pool(Origin.DSN, "a@news.example.test") == ""
    assert _queued_pool(Origin.FORWARD, "a@news.example.test") == ""


def test_pool_survives_the_envelope_round_trip() -> None:
    env = Envelope("a@b.test", (Recipient("c@d.test"),), pool="news")
    assert Envelope.from_dict(env.to_dict()).pool == "news"
    assert "pool" not in Envelope("a@b.test", ()).to_dict()  # records of the default pool


def test_source_addresses_round_robin_per_family() -> None:
    sources = SourceAddresses(["127.0.0.2", "127.0.0.4", "::2"])
    assert [sources.pick("192.0.2.1") for _ in range(3)] == ["127.0.0.2", "127.0.0.4",
                                                            "127.0.0.2"]
    assert sources.pick("2001:db8::1") == "::2"
    assert sources.pick("mx.example.test") == "127.0.0.4"  # a name: IPv4 first
    assert SourceAddresses(["127.0.0.2"]).pick("2001:db8::1") is None
    assert not SourceAddresses([])


def test_lanes_have_their_own_slots_and_helo() -> None:
    async def build() -> dict:
        return lanes_for(CONFIG)

    lanes = asyncio.run(build())
    assert set(lanes) == {DEFAULT_POOL, "news"}
    assert lanes["news"].connections.helo_name == "news.example.test"
    assert lanes[DEFAULT_POOL].connections.helo_name == CONFIG.hostname
    assert lanes["news"].slots is not lanes[DEFAULT_POOL].slots
    assert lanes["news"].domain_slot("gmail.com") is not lanes[DEFAULT_POOL].domain_slot(
        "gmail.com")


def test_dedicated_pool_over_its_share_does_not_sweep_the_queue() -> None:
    for sweeps in (True, False):
        dest = Destinations(DeliveryConfig(), share=1, sweeps=sweeps)
        assert dest.admit("gmail.com", 0.0) is None
        assert dest.admit("gmail.com", 0.0) is not None  # over the share: waits
        assert bool(dest.take_sweeps()) is sweeps

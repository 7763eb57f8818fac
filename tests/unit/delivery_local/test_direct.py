"""Direct local delivery (mailyard.delivery.direct): which messages it takes, and that
it stores nothing when it says no."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging

import pytest

from mailyard.config import Config
from mailyard.delivery.direct import DirectLocalDelivery
from mailyard.directory.api import DirectoryError
from mailyard.directory.sqlite import SqliteDirectory
from mailyard.envelope import DsnRecipient, Envelope, Recipient
from mailyard.ingest.api import Origin, Submission
from mailyard.obs import Metrics
from tests.unit.delivery_local.test_local_store import MemoryStore

MESSAGE = b"Received: from client.test\r\nSubject: test\r\n\r\nbody\r\n"


@pytest.fixture
def directory(directory: SqliteDirectory) -> SqliteDirectory:
    """alice and bob (conftest), and aliases to one, two and an outside
    address."""
    directory.add_alias("ali@example.test", ["alice@example.test"])
    directory.add_alias("both@example.test", ["alice@example.test", "bob@example.test"])
    directory.add_alias("out@example.test", ["alice@example.test", "someone@remote.test"])
    return directory


def envelope(*recipients: str, sender: str = "s@remote.test",
             notify: tuple[str, ...] = ()) -> Envelope:
    return Envelope(sender=sender, recipients=tuple(
        Recipient(r, DsnRecipient(notify=notify)) for r in recipients))


def run(service: DirectLocalDelivery, env: Envelope, content: bytes = MESSAGE,
        qid: str = "Q1") -> bool:
    async def go() -> bool:
        try:
            return await service.deliver(qid, env, content)
        finally:
            await service.close()

    return asyncio.run(go())


def test_which_messages_are_offered(config: Config, directory: SqliteDirectory) -> None:
    service = DirectLocalDelivery(config, directory, Metrics(), store=MemoryStore())

    def offered(env: Envelope, origin: Origin = Origin.INBOUND) -> bool:
        return service.applies(Submission(origin=origin, envelope=env))

    assert offered(envelope("alice@example.test"))
    assert offered(envelope("alice@example.test"), Origin.SUBMISSION)
    for origin in (Origin.LOCAL, Origin.DSN, Origin.FORWARD, Origin.API, Origin.CAMPAIGN):
        assert not offered(envelope("alice@example.test"), origin)
    assert not offered(envelope("alice@example.test", "bob@example.test"))
    assert not offered(envelope("alice@example.test", notify=("SUCCESS", "FAILURE")))
    assert offered(envelope("alice@example.test", notify=("FAILURE", "DELAY")))
    # The addresses the dispatcher treats specially stay with it.
    assert not offered(envelope("alice@example.test", sender="Bounces+abc@example.test"))
    assert not offered(envelope("dmarc-reports@example.test"))
    assert not offered(envelope("bounces+abc@example.test"))
    assert not offered(envelope(service.feedback.complaint_address))
    # Relayed mail is ruled out here, before any trip to the delivery threads.
    assert not offered(envelope("someone@elsewhere.test"))
    held = dataclasses.replace(config, delivery=dataclasses.replace(config.delivery,
                                                                     defer_all=True))
    assert not DirectLocalDelivery(held, directory, Metrics()).applies(
        Submission(origin=Origin.INBOUND, envelope=envelope("alice@example.test")))


def test_a_failing_directory_means_not_offered(config: Config, directory: SqliteDirectory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(domain: str) -> bool:
        raise DirectoryError("database is locked")

    service = DirectLocalDelivery(config, directory, Metrics(), store=MemoryStore())
    monkeypatch.setattr(directory, "is_local_domain", broken)
    assert not service.applies(Submission(origin=Origin.INBOUND,
                                          envelope=envelope("alice@example.test")))


def test_one_mailbox_is_written_with_the_trace_fields(config: Config,
                                                      directory: SqliteDirectory) -> None:
    store = MemoryStore()
    metrics = Metrics()
    service = DirectLocalDelivery(config, directory, metrics, store=store)
    assert run(service, envelope("ali@example.test"))  # an alias to one mailbox
    copy = store.boxes["alice@example.test"].messages["Q1.alice@example.test"]
    assert copy == (b"Return-Path: <s@remote.test>\r\nDelivered-To: alice@example.test\r\n"
                    + MESSAGE)


@pytest.mark.parametrize("recipient", [
    "both@example.test",  # two mailboxes: all or nothing is not guaranteed, so the queue
    "out@example.test",  # an external target: forwards are the queue's
    "nobody@example.test",  # unknown: the queue bounces it
    "someone@elsewhere.test",  # not a local domain
])
def test_other_destinations_are_left_to_the_queue(config: Config, directory: SqliteDirectory,
                                                  recipient: str) -> None:
    store = MemoryStore()
    assert not run(DirectLocalDelivery(config, directory, Metrics(), store=store),
                   envelope(recipient))
    assert all(not box.messages for box in store.boxes.values())


def test_a_refused_copy_stores_nothing(config: Config, directory: SqliteDirectory) -> None:
    directory.set_quota("alice@example.test", storage_bytes=10)
    store = MemoryStore()
    assert not run(DirectLocalDelivery(config, directory, Metrics(), store=store),
                   envelope("alice@example.test"))
    assert all(not box.messages for box in store.boxes.values())
    looped = b"Delivered-To: bob@example.test\r\n" + MESSAGE
    assert not run(DirectLocalDelivery(config, directory, Metrics(), store=store),
                   envelope("bob@example.test"), looped)
    assert all(not box.messages for box in store.boxes.values())


def test_a_failing_store_means_queued(config: Config, directory: SqliteDirectory,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailyard.delivery")
    store = MemoryStore(fail=OSError(errno.ENOSPC, "No space left on device"))
    assert not run(DirectLocalDelivery(config, directory, Metrics(), store=store),
                   envelope("alice@example.test"))
    assert any(r.getMessage() == "direct delivery declined, queued" for r in caplog.records)


def test_after_close_nothing_is_taken(config: Config, directory: SqliteDirectory) -> None:
    store = MemoryStore()
    service = DirectLocalDelivery(config, directory, Metrics(), store=store)

    async def go() -> bool:
        await service.close()
        return await service.deliver("Q1", envelope("alice@example.test"), MESSAGE)

    assert not asyncio.run(go())
    assert not store.boxes

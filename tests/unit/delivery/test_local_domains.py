"""The dispatcher's local-domain answers: one directory trip per claim round at most,
none for a round whose domains were all answered within DOMAIN_ANSWERS_TTL seconds, and
a domain added to the directory is seen once that time has passed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailyard.config import Config
from mailyard.delivery import dispatcher as dispatcher_module
from mailyard.delivery.dispatcher import DOMAIN_ANSWERS_TTL, Dispatcher
from mailyard.directory.sqlite import SqliteDirectory
from mailyard.ingest.pipeline import ingest_for
from mailyard.obs import Metrics
from mailyard.queue.spool import FileSpool
from mailyard.queue.threaded import ThreadedSpool


class CountingDirectory(SqliteDirectory):
    """The real directory, counting the checks for changes (one per trip)."""

    refreshes = 0

    def refresh(self) -> None:
        self.refreshes += 1
        super().refresh()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(dispatcher_module.time, "monotonic", c)
    return c


def test_answers_are_reused_within_the_ttl_and_renewed_after(tmp_path: Path,
                                                              clock: Clock) -> None:
    cfg = Config(hostname="mx.example.test", data_dir=str(tmp_path / "data"),
                 local_domains=("ours.test",))
    spool = FileSpool(cfg.data_path / "queue", cfg.hostname)
    queue = ThreadedSpool(spool)
    directory = CountingDirectory(cfg.data_path / "directory.db", cfg)
    dispatcher = Dispatcher(cfg, queue, ingest_for(cfg, queue), directory, Metrics())

    async def scenario() -> None:
        ask = dispatcher.local_domains
        assert await ask(["a@ours.test", "b@remote.test"]) == {"ours.test"}
        assert directory.refreshes == 1
        assert await ask(["c@Ours.test".lower(), "d@remote.test"]) == {"ours.test"}
        assert directory.refreshes == 1  # all answered: no trip
        assert await ask(["e@new.test"]) == frozenset()
        assert directory.refreshes == 2  # a domain not asked about yet
        directory.add_domain("new.test")  # another process's change, in effect
        clock.now += DOMAIN_ANSWERS_TTL / 2
        assert await ask(["e@new.test"]) == frozenset()  # the kept answer
        assert directory.refreshes == 2
        clock.now += DOMAIN_ANSWERS_TTL
        assert await ask(["e@new.test", "a@ours.test"]) == {"new.test", "ours.test"}
        assert directory.refreshes == 3
        await dispatcher.stop()

    try:
        asyncio.run(scenario())
    finally:
        queue.close()
        spool.close()

"""The quota check at RCPT (mailyard.smtpd.quota): 552 5.2.2 (RFC 3463 3.3, mailbox
full) for a recipient whose mailboxes are all over quota; the usage is read in a
thread, once per user however many RCPTs ask at the same time, and then cached."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from mailyard.directory.api import Resolution
from mailyard.proto.smtp.replies import REPLY_OVER_QUOTA
from mailyard.smtpd.quota import RcptQuota
from mailyard.store.quota import QuotaLimits, QuotaUsage
from mailyard.store.usage import UsageCache
from tests.support.smtpd_fakes import MemoryDirectory


class Directory(MemoryDirectory):
    """Plus team@ (an alias of two users) and fwd@ (a user and an external address)."""

    def resolve(self, address: str) -> Resolution:
        if address.startswith("team@"):
            return Resolution(mailboxes=("user@mx.test", "other@mx.test"))
        if address.startswith("fwd@"):
            return Resolution(mailboxes=("user@mx.test",), external=("x@far.test",))
        return super().resolve(address)


class Reads:
    def __init__(self, usage: dict[str, QuotaUsage]) -> None:
        self.usage = usage
        self.calls: list[tuple[str, str]] = []  # (mailbox, thread name)
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, mailbox: str) -> QuotaUsage:
        self.calls.append((mailbox, threading.current_thread().name))
        self.gate.wait(5)
        if mailbox not in self.usage:
            raise OSError(5, "Input/output error")
        return self.usage[mailbox]


def setup(usage: dict[str, QuotaUsage]) -> tuple[Directory, Reads, RcptQuota]:
    directory = Directory(("mx.test",), {"user@mx.test": "pw", "other@mx.test": "pw"})
    reads = Reads(usage)
    return directory, reads, RcptQuota(directory, UsageCache(reads))


def settle(verdict: Any) -> Any:
    if asyncio.iscoroutine(verdict):
        return asyncio.run(verdict)
    return verdict


def test_no_limit_means_no_read() -> None:
    _directory, reads, quota = setup({})
    assert quota.check("user@mx.test", None) is None
    assert quota.check("nobody@mx.test", None) is None
    assert reads.calls == []


def test_over_quota_refused_after_a_read_in_a_thread_then_from_the_cache() -> None:
    directory, reads, quota = setup({"user@mx.test": QuotaUsage(100, 5)})
    directory.quotas["user@mx.test"] = QuotaLimits(messages=5)
    verdict = quota.check("user+tag@mx.test", None)
    assert asyncio.iscoroutine(verdict)  # not decided on the event loop
    assert asyncio.run(verdict) == REPLY_OVER_QUOTA
    assert len(reads.calls) == 1 and reads.calls[0][1] != threading.current_thread().name
    assert quota.check("user@mx.test", None) == REPLY_OVER_QUOTA  # cached: at once
    assert len(reads.calls) == 1


def test_declared_size_counts() -> None:
    """RFC 1870: SIZE= at MAIL tells how much the message would add."""
    directory, _reads, quota = setup({"user@mx.test": QuotaUsage(900, 1)})
    directory.quotas["user@mx.test"] = QuotaLimits(storage_bytes=1000)
    assert settle(quota.check("user@mx.test", 100)) is None
    assert quota.check("user@mx.test", 101) == REPLY_OVER_QUOTA
    assert quota.check("user@mx.test", None) is None


def test_a_user_exactly_at_its_storage_limit_is_full() -> None:
    directory, _reads, quota = setup({"user@mx.test": QuotaUsage(1000, 1)})
    directory.quotas["user@mx.test"] = QuotaLimits(storage_bytes=1000)
    assert settle(quota.check("user@mx.test", None)) == REPLY_OVER_QUOTA


def test_alias_refused_only_when_every_mailbox_is_full() -> None:
    full, room = QuotaUsage(0, 1), QuotaUsage(0, 0)
    directory, _reads, quota = setup({"user@mx.test": full, "other@mx.test": room})
    directory.quotas.update({"user@mx.test": QuotaLimits(messages=1),
                             "other@mx.test": QuotaLimits(messages=1)})
    assert settle(quota.check("team@mx.test", None)) is None
    assert settle(quota.check("fwd@mx.test", None)) is None  # the forward is taken
    directory, _reads, quota = setup({"user@mx.test": full, "other@mx.test": full})
    directory.quotas.update({"user@mx.test": QuotaLimits(messages=1),
                             "other@mx.test": QuotaLimits(messages=1)})
    assert settle(quota.check("team@mx.test", None)) == REPLY_OVER_QUOTA
    directory.quotas["other@mx.test"] = QuotaLimits()  # one member without a limit
    assert quota.check("team@mx.test", None) is None


def test_concurrent_rcpts_share_one_read() -> None:
    directory, reads, quota = setup({"user@mx.test": QuotaUsage(0, 3)})
    directory.quotas["user@mx.test"] = QuotaLimits(messages=3)
    reads.gate.clear()

    async def flood() -> list[Any]:
        verdicts = [quota.check("user@mx.test", None) for _ in range(20)]
        tasks = [asyncio.ensure_future(v) for v in verdicts]
        await asyncio.sleep(0.05)
        reads.gate.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(flood()) == [REPLY_OVER_QUOTA] * 20
    assert len(reads.calls) == 1


def test_an_unreadable_usage_accepts() -> None:
    directory, reads, quota = setup({})  # reading raises OSError
    directory.quotas["user@mx.test"] = QuotaLimits(messages=1)
    assert settle(quota.check("user@mx.test", None)) is None
    assert len(reads.calls) == 1


def test_listener_policy_asks_only_for_local_recipients() -> None:
    from mailyard.config import Config
    from mailyard.smtpd.policy import FreeSpaceGauge, ListenerPolicy
    from tests.support.smtpd_fakes import MemorySpool

    directory, reads, quota = setup({"user@mx.test": QuotaUsage(0, 1)})
    directory.quotas["user@mx.test"] = QuotaLimits(messages=1)
    config = Config(hostname="mx.test", local_domains=("mx.test",))
    without = ListenerPolicy("smtp", config, directory, FreeSpaceGauge(MemorySpool()))
    assert without.check_quota("user@mx.test", None) is None  # no quota check configured
    p = ListenerPolicy("submission", config, directory, FreeSpaceGauge(MemorySpool()),
                       quota=quota)
    assert p.check_quota("user@far.test", 10) is None  # not ours: nothing to read
    assert p.check_quota("postmaster", None) is None
    assert reads.calls == []
    assert settle(p.check_quota("user@mx.test", None)) == REPLY_OVER_QUOTA

"""Quota values (mailyard.store.quota), the usage read from the mailbox index
(mailyard.store.usage) and its cache."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailyard.imapd import quota as imap_quota
from mailyard.store.api import INBOX
from mailyard.store.index import MailboxIndex
from mailyard.store.maildir import Maildir, MaildirStore
from mailyard.store.quota import QuotaLimits, QuotaUsage, format_size, over_quota, parse_size
from mailyard.store.usage import UsageCache, mailbox_usage, usage

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nHello\r\n"  # 44 octets


# --- over_quota: RFC 9208 5 ("exceed the limit") ---------------------------------------

def test_reaching_a_limit_is_allowed_exceeding_it_is_not() -> None:
    limits = QuotaLimits(storage_bytes=1000, messages=10)
    assert not over_quota(QuotaUsage(900, 9), limits, adding_bytes=100)  # exactly at both
    assert over_quota(QuotaUsage(900, 9), limits, adding_bytes=101)
    assert over_quota(QuotaUsage(0, 10), limits, adding_bytes=1)  # MESSAGE: the 11th
    assert over_quota(QuotaUsage(1000, 0), limits, adding_bytes=1)


def test_no_limit_on_a_resource_is_never_exceeded() -> None:
    assert not over_quota(QuotaUsage(10**12, 10**9), QuotaLimits(), adding_bytes=10**9)
    assert not over_quota(QuotaUsage(10**12, 5), QuotaLimits(messages=6))
    assert over_quota(QuotaUsage(0, 6), QuotaLimits(storage_bytes=10**12, messages=6))
    assert not over_quota(QuotaUsage(0, 0), QuotaLimits(messages=1), adding_messages=1)


def test_zero_in_settings_means_unlimited() -> None:
    assert QuotaLimits.from_settings(0, 0).unlimited
    assert QuotaLimits.from_settings(5, 0) == QuotaLimits(5, None)


def test_the_imap_module_offers_the_same_names() -> None:
    assert imap_quota.over_quota is over_quota and imap_quota.QuotaUsage is QuotaUsage
    assert imap_quota.usage is usage and imap_quota.QuotaLimits is QuotaLimits
    # RFC 9208 5.1: STORAGE in units of 1024 octets
    assert [imap_quota.storage_kib(n) for n in (0, 1, 1024, 1025)] == [0, 1, 1, 2]


# --- sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "octets"), [
    ("0", 0), ("1000", 1000), ("10240K", 10240 * 1024), ("500M", 500 << 20),
    ("2G", 2 << 30), ("2g", 2 << 30), ("2GiB", 2 << 30), ("2 GB", 2 << 30),
    ("1.5G", 3 << 29), ("1T", 1 << 40), (" 7k ", 7168),
])
def test_parse_size(text: str, octets: int) -> None:
    assert parse_size(text) == octets


@pytest.mark.parametrize("text", ["", "G", "-1", "2X", "1.G", "1e9", "2 G B", "１G",
                                  "99999999999T"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size() -> None:
    assert [format_size(n) for n in (0, 1023, 1024, 1536, 2 << 30)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "2.0 GiB"]


# --- usage from the index -------------------------------------------------------------

@pytest.fixture
def inbox(tmp_path: Path) -> Maildir:
    box = Maildir(tmp_path / "example.test" / "user", "mx.example.test")
    box.create()
    return box


def test_usage_counts_new_mail_and_every_folder(inbox: Maildir) -> None:
    index = MailboxIndex(inbox)
    index.append("Trash", io.BytesIO(MESSAGE))
    inbox.deliver(io.BytesIO(MESSAGE))  # as local delivery does: new/, no index
    inbox.deliver(io.BytesIO(MESSAGE.replace(b"\r\n", b"\n")))
    assert index.usage() == QuotaUsage(len(MESSAGE), 1)  # the index alone
    assert usage(index) == QuotaUsage(3 * len(MESSAGE), 3)  # INBOX synced first
    assert not any((inbox.path / "new").iterdir())
    assert len(index.sync(INBOX).messages) == 2
    index.close()


def test_usage_indexes_mail_of_a_mailbox_never_indexed(inbox: Maildir) -> None:
    name = inbox.deliver(io.BytesIO(MESSAGE))
    (inbox.path / "new" / name).rename(inbox.path / "cur" / f"{name}:2,S")
    assert mailbox_usage(inbox) == QuotaUsage(len(MESSAGE), 1)


def test_usage_of_a_missing_mailbox_is_nothing_and_creates_nothing(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "mail", "mx.example.test")
    assert store.usage("nobody@example.test") == QuotaUsage()
    assert not (tmp_path / "mail").exists()


def test_store_usage_after_delivery_and_expunge(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "mail", "mx.example.test")
    box = store.mailbox("alice@example.test")
    box.deliver(io.BytesIO(MESSAGE), key="q1")
    box.deliver(io.BytesIO(MESSAGE), key="q2")
    assert store.usage("alice@example.test") == QuotaUsage(2 * len(MESSAGE), 2)
    index = MailboxIndex(store.maildir("alice@example.test"))
    uid = index.sync(INBOX).messages[0].uid
    index.store(INBOX, [uid], "+", ["\\Deleted"])
    index.expunge(INBOX)
    index.close()
    assert store.usage("alice@example.test") == QuotaUsage(len(MESSAGE), 1)


# --- the cache ------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cache_keeps_a_read_for_its_ttl_and_counts_deliveries() -> None:
    reads: list[str] = []
    value = QuotaUsage(100, 1)

    def read(address: str) -> QuotaUsage:
        reads.append(address)
        return value

    clock = Clock()
    cache = UsageCache(read, ttl=5.0, clock=clock)
    assert cache.cached("a@x.test") is None
    assert cache.get("a@x.test") == value and reads == ["a@x.test"]
    cache.charge("a@x.test", 50)
    clock.now += 4.9
    assert cache.get("a@x.test") == QuotaUsage(150, 2) and reads == ["a@x.test"]
    clock.now += 0.1
    assert cache.cached("a@x.test") is None
    assert cache.get("a@x.test") == value and len(reads) == 2
    cache.charge("b@x.test", 10)  # nothing cached for b: nothing to charge
    assert cache.cached("b@x.test") is None

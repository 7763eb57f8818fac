"""The local delivery agent writes only through the MailStore interface it is given."""

from __future__ import annotations

import errno
import io
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from mailyard.config import Config
from mailyard.delivery.local import LocalDeliveryAgent
from mailyard.directory.sqlite import SqliteDirectory
from mailyard.envelope import Envelope, Recipient
from mailyard.proto.smtp.replies import REPLY_OVER_QUOTA
from mailyard.queue.api import AttemptStatus, QueuedRecipient, QueueEntry, RecipientState
from mailyard.store.api import (
    INBOX,
    InboxMessage,
    Mailbox,
    MailboxLock,
    MailboxNameError,
    MailStore,
    StoredMessage,
)
from mailyard.store.quota import QuotaUsage

MESSAGE = b"Subject: test\r\n\r\nbody\r\n"


class MemoryMailbox(Mailbox):
    def __init__(self, address: str) -> None:
        self.address = address
        self.messages: dict[str, bytes] = {}
        self.folder_of: dict[str, str] = {}

    def deliver(self, source: BinaryIO | Iterable[bytes], *, prefix: bytes = b"",
                key: str, folder: str = INBOX) -> StoredMessage:
        data = prefix + (source.read() if hasattr(source, "read") else b"".join(source))
        self.messages[key] = data
        self.folder_of[key] = folder
        return StoredMessage(folder, key, len(data), None)

    def find(self, *keys: str, folder: str = INBOX) -> StoredMessage | None:
        for k in keys:
            if k in self.messages and self.folder_of.get(k, INBOX) == folder:
                return StoredMessage(folder, k, len(self.messages[k]), None)
        return None

    def special_folder(self, use: str) -> str | None:
        return "Junk" if use == "\\Junk" else None

    def folders(self) -> list[str]:
        return [INBOX]

    # Retrieval (POP3) is not used by the delivery agent.
    def inbox_messages(self) -> list[InboxMessage]:
        raise NotImplementedError

    def open_message(self, key: str) -> BinaryIO:
        raise NotImplementedError

    def remove_messages(self, keys: Iterable[str]) -> int:
        raise NotImplementedError

    def lock_exclusive(self, purpose: str) -> MailboxLock:
        raise NotImplementedError


class MemoryStore(MailStore):
    def __init__(self, fail: OSError | None = None) -> None:
        self.boxes: dict[str, MemoryMailbox] = {}
        self.fail = fail

    def mailbox(self, address: str, *, create: bool = True) -> MemoryMailbox:
        if address.startswith("bad"):
            raise MailboxNameError(address)
        if self.fail is not None:
            raise self.fail
        return self.boxes.setdefault(address, MemoryMailbox(address))

    def exists(self, address: str) -> bool:
        return address in self.boxes

    def usage(self, address: str) -> QuotaUsage:
        box = self.boxes.get(address)
        if box is None:
            return QuotaUsage()
        return QuotaUsage(sum(len(m) for m in box.messages.values()), len(box.messages))


def entry_for(address: str, *, attempts: int = 0) -> QueueEntry:
    env = Envelope(sender="s@remote.org", recipients=(Recipient(address),))
    return QueueEntry("Q1", env, len(MESSAGE), 1700000000.0,
                      (QueuedRecipient(0, address, RecipientState.PENDING, attempts=attempts),))


def test_delivers_through_the_injected_store(config: Config, directory: SqliteDirectory,
                                             tmp_path: Path) -> None:
    store = MemoryStore()
    agent = LocalDeliveryAgent(config, directory, store=store)
    entry = entry_for("alice@example.test")
    result = agent.deliver(entry, entry.recipients[0], lambda: io.BytesIO(MESSAGE))
    assert result.status is AttemptStatus.DELIVERED
    data = store.boxes["alice@example.test"].messages["Q1.alice@example.test"]
    assert data.startswith(b"Return-Path: <s@remote.org>\r\nDelivered-To: alice@example.test")
    assert data.endswith(MESSAGE)
    assert not (tmp_path / "mail").exists()  # no second path to the disk


def test_junk_instruction_files_the_copy_in_the_junk_folder(
        config: Config, directory: SqliteDirectory) -> None:
    store = MemoryStore()
    agent = LocalDeliveryAgent(config, directory, store=store)
    entry = entry_for("alice@example.test")
    marked = b"X-Mailyard-Folder: Junk\r\n" + MESSAGE
    result = agent.deliver(entry, entry.recipients[0], lambda: io.BytesIO(marked))
    assert result.status is AttemptStatus.DELIVERED
    assert store.boxes["alice@example.test"].folder_of == {"Q1.alice@example.test": "Junk"}
    # A retry finds the copy in Junk and does not deliver a second one.
    again = entry_for("alice@example.test", attempts=1)
    agent.deliver(again, again.recipients[0], lambda: io.BytesIO(marked))
    assert len(store.boxes["alice@example.test"].messages) == 1


def test_retry_finds_the_copy_in_the_store(config: Config,
                                           directory: SqliteDirectory) -> None:
    store = MemoryStore()
    agent = LocalDeliveryAgent(config, directory, store=store)
    store.mailbox("alice@example.test").messages["Q1.alice@example.test"] = b"earlier"
    entry = entry_for("alice@example.test", attempts=1)
    result = agent.deliver(entry, entry.recipients[0], lambda: io.BytesIO(MESSAGE))
    assert result.status is AttemptStatus.DELIVERED
    assert store.boxes["alice@example.test"].messages == {"Q1.alice@example.test": b"earlier"}


def test_store_errors_defer(config: Config, directory: SqliteDirectory) -> None:
    agent = LocalDeliveryAgent(config, directory,
                               store=MemoryStore(OSError(errno.ENOSPC, "No space left")))
    entry = entry_for("alice@example.test")
    result = agent.deliver(entry, entry.recipients[0], lambda: io.BytesIO(MESSAGE))
    assert result.status is AttemptStatus.DEFERRED
    assert (result.reply.reply.code, result.reply.reply.status) == (452, "4.3.1")


def test_queued_message_is_opened_once_per_recipient(config: Config,
                                                     directory: SqliteDirectory) -> None:
    """The loop check and every mailbox copy read the same opened file, each from the
    start (an alias to two mailboxes here)."""
    directory.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
    store = MemoryStore()
    agent = LocalDeliveryAgent(config, directory, store=store)
    opened: list[io.BytesIO] = []

    def open_content() -> BinaryIO:
        opened.append(io.BytesIO(MESSAGE))
        return opened[-1]

    entry = entry_for("team@example.test")
    result = agent.deliver(entry, entry.recipients[0], open_content)
    assert result.status is AttemptStatus.DELIVERED
    assert len(opened) == 1 and opened[0].closed
    for box in ("alice@example.test", "bob@example.test"):
        assert store.boxes[box].messages[f"Q1.{box}"].endswith(MESSAGE)


def test_over_quota_fails_permanently_and_writes_nothing(config: Config,
                                                         directory: SqliteDirectory) -> None:
    """RFC 3463 5.2.2 (mailbox full), permanent: the dispatcher bounces it."""
    store = MemoryStore()
    store.mailbox("alice@example.test").messages["old"] = b"x" * 100
    directory.set_quota("alice@example.test", messages=1)
    agent = LocalDeliveryAgent(config, directory, store=store)
    entry = entry_for("alice@example.test")
    result = agent.deliver(entry, entry.recipients[0], lambda: io.BytesIO(MESSAGE))
    assert result.status is AttemptStatus.FAILED
    assert result.reply.reply == REPLY_OVER_QUOTA.with_text(
        f"<alice@example.test>: {REPLY_OVER_QUOTA.text}")
    assert list(store.boxes["alice@example.test"].messages) == ["old"]


def test_storage_quota_counts_the_new_copy_and_each_delivery(config: Config,
                                                             directory: SqliteDirectory) -> None:
    """The first copy fits; the usage cached after it is charged with it, so the
    second one (which would exceed the limit) is refused without a new read."""
    store = MemoryStore()
    prefix = len(b"Return-Path: <s@remote.org>\r\nDelivered-To: alice@example.test\r\n")
    directory.set_quota("alice@example.test", storage_bytes=len(MESSAGE) + prefix + 10)
    agent = LocalDeliveryAgent(config, directory, store=store)
    first = entry_for("alice@example.test")
    assert agent.deliver(first, first.recipients[0],
                         lambda: io.BytesIO(MESSAGE)).status is AttemptStatus.DELIVERED
    second = QueueEntry("Q2", first.envelope, first.size, first.created, first.recipients)
    result = agent.deliver(second, second.recipients[0], lambda: io.BytesIO(MESSAGE))
    assert result.status is AttemptStatus.FAILED
    assert result.reply.reply.status == "5.2.2"
    assert list(store.boxes["alice@example.test"].messages) == ["Q1.alice@example.test"]


def test_a_copy_from_an_earlier_attempt_counts_whatever_the_quota(
        config: Config, directory: SqliteDirectory) -> None:
    store = MemoryStore()
    store.mailbox("alice@example.test").messages["Q1.alice@example.test"] = b"earlier"
    directory.set_quota("alice@example.test", messages=1)
    agent = LocalDeliveryAgent(config, directory, store=store)
    entry = entry_for("alice@example.test", attempts=1)
    result = agent.deliver(entry, entry.recipients[0], lambda: io.BytesIO(MESSAGE))
    assert result.status is AttemptStatus.DELIVERED


def test_quota_of_one_alias_member_fails_only_its_copy(config: Config,
                                                       directory: SqliteDirectory) -> None:
    directory.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
    directory.set_quota("alice@example.test", messages=0)  # 0: unlimited
    directory.set_quota("bob@example.test", storage_bytes=10)
    store = MemoryStore()
    agent = LocalDeliveryAgent(config, directory, store=store)
    entry = entry_for("team@example.test")
    result = agent.deliver(entry, entry.recipients[0], lambda: io.BytesIO(MESSAGE))
    assert result.status is AttemptStatus.FAILED and result.reply.reply.status == "5.2.2"
    assert result.mailboxes == ("alice@example.test",)
    assert "bob@example.test" not in store.boxes or not store.boxes["bob@example.test"].messages

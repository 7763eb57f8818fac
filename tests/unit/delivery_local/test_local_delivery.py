"""The local delivery agent: queued recipients into Maildir mailboxes."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from mailyard.config import Config
from mailyard.delivery import local as local_module
from mailyard.delivery.local import LocalDeliveryAgent, LocalDeliveryResult, LocalStatus
from mailyard.directory.api import DirectoryError, Resolution
from mailyard.directory.sqlite import SqliteDirectory
from mailyard.envelope import Envelope, Recipient
from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import (
    QueuedRecipient,
    QueueEntry,
    RecipientState,
    ReplyOrigin,
    StorageError,
)
from mailyard.store.maildir import message_sizes, read_message

MESSAGE = b"From: sender@remote.org\r\nSubject: test\r\n\r\nbody line\r\n"


@pytest.fixture
def agent(config: Config, directory: SqliteDirectory) -> LocalDeliveryAgent:
    return LocalDeliveryAgent(config, directory)


def make_entry(*addresses: str, sender: str = "sender@remote.org", qid: str = "Q1abc",
               attempts: int = 0, interrupted: bool = False) -> QueueEntry:
    env = Envelope(sender=sender, recipients=tuple(Recipient(a) for a in addresses))
    rcpts = tuple(QueuedRecipient(i, a, RecipientState.PENDING, attempts=attempts,
                                  interrupted=interrupted) for i, a in enumerate(addresses))
    return QueueEntry(qid, env, len(MESSAGE), 1700000000.0, rcpts)


def content(data: bytes = MESSAGE) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)


def message_files(config: Config, address: str) -> list[Path]:
    local, domain = address.split("@")
    box = config.data_path / "mail" / domain / local
    out = []
    for sub in ("new", "cur"):
        if (box / sub).is_dir():
            out += [box / sub / n for n in sorted(os.listdir(box / sub))]
    return out


def messages(config: Config, address: str) -> list[bytes]:
    """The stored messages with CRLF line ends (as IMAP would give them)."""
    return [read_message(p) for p in message_files(config, address)]


def test_delivers_with_return_path_and_delivered_to(agent: LocalDeliveryAgent,
                                                    config: Config) -> None:
    """RFC 5321 4.4: the final delivery adds Return-Path with the envelope sender;
    Delivered-To (RFC 9228) names the mailbox.  Both come first."""
    entry = make_entry("Alice@Example.TEST")
    result = agent.deliver(entry, entry.recipients[0], content())
    assert result.status is LocalStatus.DELIVERED and result.status is LocalStatus.DELIVERED
    assert str(result.reply).startswith("250 2.0.0")
    assert result.mailboxes == ("alice@example.test",)
    assert messages(config, "alice@example.test") == [
        b"Return-Path: <sender@remote.org>\r\nDelivered-To: alice@example.test\r\n" + MESSAGE]


def test_null_sender(agent: LocalDeliveryAgent, config: Config) -> None:
    entry = make_entry("alice@example.test", sender="")
    agent.deliver(entry, entry.recipients[0], content())
    assert messages(config, "alice@example.test")[0].startswith(b"Return-Path: <>\r\n")


def test_subaddress_goes_to_the_user(agent: LocalDeliveryAgent, config: Config) -> None:
    """RFC 5233 sub-addressing."""
    entry = make_entry("alice+lists@example.test")
    assert agent.deliver(entry, entry.recipients[0], content()).status is LocalStatus.DELIVERED
    assert len(messages(config, "alice@example.test")) == 1


def test_unknown_user_is_a_permanent_failure(agent: LocalDeliveryAgent) -> None:
    entry = make_entry("nobody@example.test")
    result = agent.deliver(entry, entry.recipients[0], content())
    assert result.status is LocalStatus.FAILED
    assert str(result.reply).startswith("550 5.1.1")
    assert "nobody@example.test" in str(result.reply)
    assert result.status.state is RecipientState.FAILED


def test_alias_fans_out_and_returns_external(agent: LocalDeliveryAgent,
                                            directory: SqliteDirectory,
                                            config: Config) -> None:
    directory.add_alias("team@example.test",
                        ["alice@example.test", "bob@example.test", "Carol@remote.org"])
    entry = make_entry("team@example.test")
    result = agent.deliver(entry, entry.recipients[0], content())
    assert result.status is LocalStatus.DELIVERED
    assert result.mailboxes == ("alice@example.test", "bob@example.test")
    assert result.external == ("Carol@remote.org",)
    assert "forwarding to 1" in str(result.reply)
    assert b"Delivered-To: bob@example.test\r\n" in messages(config, "bob@example.test")[0]
    assert len(messages(config, "alice@example.test")) == 1


def test_alias_only_external(agent: LocalDeliveryAgent, directory: SqliteDirectory) -> None:
    directory.add_alias("fwd@example.test", ["x@remote.org"])
    entry = make_entry("fwd@example.test")
    result = agent.deliver(entry, entry.recipients[0], content())
    assert result.status is LocalStatus.DELIVERED
    assert result.mailboxes == () and result.external == ("x@remote.org",)


def test_postmaster_mailbox_exists_without_setup(agent: LocalDeliveryAgent,
                                                 config: Config) -> None:
    """RFC 5321 4.5.1 / RFC 2142: postmaster@ and abuse@ always reach a real mailbox."""
    entry = make_entry("postmaster@example.test", "abuse@example.test")
    for r in entry.recipients:
        assert agent.deliver(entry, r, content()).status is LocalStatus.DELIVERED
    assert len(messages(config, "postmaster@example.test")) == 2


def test_interrupted_delivery_is_not_repeated(agent: LocalDeliveryAgent,
                                              config: Config) -> None:
    first = make_entry("alice@example.test")
    agent.deliver(first, first.recipients[0], content())
    # The process died before the result was recorded: the queue hands it out again.
    again = make_entry("alice@example.test", attempts=0, interrupted=True)
    result = agent.deliver(again, again.recipients[0], content())
    assert result.status is LocalStatus.DELIVERED
    assert len(messages(config, "alice@example.test")) == 1


def test_interrupted_but_never_written_is_delivered(agent: LocalDeliveryAgent,
                                                    config: Config) -> None:
    entry = make_entry("alice@example.test", interrupted=True)
    assert agent.deliver(entry, entry.recipients[0], content()).status is LocalStatus.DELIVERED
    assert len(messages(config, "alice@example.test")) == 1


def test_dedupe_also_finds_copies_already_read(agent: LocalDeliveryAgent,
                                               config: Config) -> None:
    entry = make_entry("alice@example.test")
    agent.deliver(entry, entry.recipients[0], content())
    box = config.data_path / "mail" / "example.test" / "alice"
    (name,) = os.listdir(box / "new")
    os.rename(box / "new" / name, box / "cur" / (name + ":2,S"))
    again = make_entry("alice@example.test", interrupted=True)
    agent.deliver(again, again.recipients[0], content())
    assert len(messages(config, "alice@example.test")) == 1


def test_same_mailbox_via_two_recipients_gets_one_copy(agent: LocalDeliveryAgent,
                                                       config: Config) -> None:
    """One copy per final mailbox per message (as Postfix): alice and alice+x are the
    same mailbox; the second recipient is delivered without a second copy."""
    entry = make_entry("alice@example.test", "alice+x@example.test")
    written: set[str] = set()
    results = [agent.deliver(entry, r, content(), written) for r in entry.recipients]
    assert [r.status for r in results] == [LocalStatus.DELIVERED, LocalStatus.DELIVERED]
    assert results[1].mailboxes == ("alice@example.test",)
    assert "already had this message" in str(str(results[1].reply))
    assert len(messages(config, "alice@example.test")) == 1


def test_alias_overlapping_a_recipient_gives_one_copy_each(
        agent: LocalDeliveryAgent, directory: SqliteDirectory, config: Config) -> None:
    """To: alice plus Bcc: sales (sales -> alice, bob): alice 1 copy, bob 1 copy."""
    directory.add_alias("sales@example.test", ["alice@example.test", "bob@example.test"])
    entry = make_entry("alice@example.test", "sales@example.test")
    written: set[str] = set()
    results = [agent.deliver(entry, r, content(), written) for r in entry.recipients]
    assert all(r.status is LocalStatus.DELIVERED for r in results)
    assert results[1].mailboxes == ("alice@example.test", "bob@example.test")
    assert len(messages(config, "alice@example.test")) == 1
    assert len(messages(config, "bob@example.test")) == 1


def test_retry_of_another_recipient_finds_the_copy_by_mailbox(
        agent: LocalDeliveryAgent, directory: SqliteDirectory, config: Config,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Maildir key is queue id + final mailbox: a retry of a recipient that shares
    a mailbox with one delivered in an earlier round does not write a second copy."""
    directory.add_alias("sales@example.test", ["alice@example.test", "bob@example.test"])
    _fail_writes(monkeypatch, errno.ENOSPC, only="bob")
    entry = make_entry("alice@example.test", "sales@example.test")
    written: set[str] = set()
    first = [agent.deliver(entry, r, content(), written) for r in entry.recipients]
    assert [r.status for r in first] == [LocalStatus.DELIVERED, LocalStatus.DEFERRED]
    monkeypatch.undo()
    retry = make_entry("alice@example.test", "sales@example.test", attempts=1)
    result = agent.deliver(retry, retry.recipients[1], content(), set())
    assert result.status is LocalStatus.DELIVERED
    assert len(messages(config, "alice@example.test")) == 1
    assert len(messages(config, "bob@example.test")) == 1


def test_copy_keyed_by_recipient_index_is_still_found(agent: LocalDeliveryAgent,
                                                      config: Config) -> None:
    """Copies written by earlier versions carry ``<qid>.<index>``; a retry finds them."""
    entry = make_entry("alice@example.test", interrupted=True)
    box = agent.store.mailbox("alice@example.test")
    box.deliver(io.BytesIO(MESSAGE), key=f"{entry.qid}.0")
    assert agent.deliver(entry, entry.recipients[0], content()).status is LocalStatus.DELIVERED
    assert len(messages(config, "alice@example.test")) == 1


def test_delivered_file_has_lf_line_ends_and_true_sizes(agent: LocalDeliveryAgent,
                                                        config: Config) -> None:
    """The file has no CR before LF; S= is its size, W= the size with CRLF line ends
    (the trace header and the message as received)."""
    entry = make_entry("alice@example.test")
    agent.deliver(entry, entry.recipients[0], content())
    (path,) = message_files(config, "alice@example.test")
    data = path.read_bytes()
    assert b"\r\n" not in data
    trace = local_module.trace_headers("sender@remote.org", "alice@example.test")
    assert message_sizes(path.name) == (len(data), len(trace) + len(MESSAGE))


def _fail_writes(monkeypatch: pytest.MonkeyPatch, code: int,
                 only: str | None = None) -> None:
    import mailyard.store.maildir as maildir_module

    real = maildir_module.write_all

    def write_all(fd: int, chunks):  # type: ignore[no-untyped-def]
        target = os.readlink(f"/proc/self/fd/{fd}")
        if only is None or f"/{only}/" in target:
            raise OSError(code, os.strerror(code))
        return real(fd, chunks)

    monkeypatch.setattr(maildir_module, "write_all", write_all)


@pytest.mark.parametrize(("code", "reply"), [
    (errno.ENOSPC, "452 4.3.1"),
    (errno.EDQUOT, "452 4.2.2"),
    (errno.EIO, "451 4.3.0"),
])
def test_disk_errors_defer(agent: LocalDeliveryAgent, config: Config,
                           monkeypatch: pytest.MonkeyPatch, code: int, reply: str) -> None:
    _fail_writes(monkeypatch, code)
    entry = make_entry("alice@example.test")
    result = agent.deliver(entry, entry.recipients[0], content())
    assert result.status is LocalStatus.DEFERRED
    assert str(result.reply).startswith(reply)
    assert result.status.state is RecipientState.DEFERRED
    box = config.data_path / "mail" / "example.test" / "alice"
    assert os.listdir(box / "tmp") == [] and os.listdir(box / "new") == []


def test_partial_failure_retry_does_not_duplicate(agent: LocalDeliveryAgent,
                                                  directory: SqliteDirectory, config: Config,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    directory.add_alias("team@example.test", ["alice@example.test", "bob@example.test",
                                              "x@remote.org"])
    _fail_writes(monkeypatch, errno.ENOSPC, only="bob")
    entry = make_entry("team@example.test")
    result = agent.deliver(entry, entry.recipients[0], content())
    assert result.status is LocalStatus.DEFERRED
    assert result.mailboxes == ("alice@example.test",)
    assert result.external == ()  # forwarding waits until every local copy is in
    monkeypatch.undo()
    retry = make_entry("team@example.test", attempts=1)
    result = agent.deliver(retry, retry.recipients[0], content())
    assert result.status is LocalStatus.DELIVERED
    assert result.external == ("x@remote.org",)
    assert len(messages(config, "alice@example.test")) == 1
    assert len(messages(config, "bob@example.test")) == 1


QUEUE_FILE = "/srv/mailyard/data/queue/active/Q1abc"


def test_unreadable_queue_file_defers(agent: LocalDeliveryAgent,
                                      caplog: pytest.LogCaptureFixture) -> None:
    """The reply goes to the queue and to delay or failure reports (to the sender):
    what failed, not the server's paths; those are logged."""
    def broken() -> BinaryIO:
        raise StorageError(f"cannot open {QUEUE_FILE}: [Errno 5] Input/output error")

    entry = make_entry("alice@example.test")
    with caplog.at_level("WARNING", logger="mailyard.delivery"):
        result = agent.deliver(entry, entry.recipients[0], broken)
    assert result.status is LocalStatus.DEFERRED
    assert str(result.reply) == "451 4.3.0 Local delivery failed: cannot read the queued message"
    assert any(QUEUE_FILE in str(getattr(rec, "fields", "")) for rec in caplog.records)


class BrokenDirectory:
    def resolve(self, address: str) -> Resolution:
        raise DirectoryError("directory database error: database is locked")


def test_directory_failure_defers(config: Config) -> None:
    agent = LocalDeliveryAgent(config, BrokenDirectory())  # type: ignore[arg-type]
    entry = make_entry("alice@example.test")
    result = agent.deliver(entry, entry.recipients[0], content())
    assert result.status is LocalStatus.DEFERRED
    assert str(result.reply) == "451 4.4.3 Temporary lookup failure, try again later"


def test_unknown_user_at_delivery_time(agent: LocalDeliveryAgent,
                                       directory: SqliteDirectory) -> None:
    """The user existed at RCPT time but was deleted before delivery: 550 5.1.1."""
    entry = make_entry("bob@example.test")
    directory.delete_user("bob@example.test")
    result = agent.deliver(entry, entry.recipients[0], content())
    assert result.status is LocalStatus.FAILED and str(result.reply).startswith("550 5.1.1")


def test_header_injection_is_neutralised() -> None:
    headers = local_module.trace_headers("evil@x\r\nBcc: y", "alice@example.test")
    assert headers.count(b"\r\n") == 2


def test_result_outcome_mapping() -> None:
    ok = LocalDeliveryResult.of(LocalStatus.DELIVERED, Reply(250, "2.0.0", "ok"))
    assert ok.status.state is RecipientState.DELIVERED
    assert ok.reply.origin is ReplyOrigin.LOCAL and str(ok.reply) == "250 2.0.0 ok"


def test_forwarding_loop_is_refused(agent: LocalDeliveryAgent, config: Config) -> None:
    """A message carrying Delivered-To for the mailbox came back through a forwarding
    loop (RFC 9228 4): 554 5.4.6, nothing delivered."""
    looped = b"Delivered-To: Alice@example.test\r\n" + MESSAGE
    entry = make_entry("alice@example.test")
    result = agent.deliver(entry, entry.recipients[0], content(looped))
    assert result.status is LocalStatus.FAILED
    assert str(result.reply).startswith("554 5.4.6") and "alice@example.test" in str(result.reply)
    assert messages(config, "alice@example.test") == []


def test_loop_check_reads_headers_only(agent: LocalDeliveryAgent,
                                       directory: SqliteDirectory, config: Config) -> None:
    body_mention = MESSAGE + b"Delivered-To: alice@example.test\r\n"
    entry = make_entry("alice@example.test")
    result = agent.deliver(entry, entry.recipients[0], content(body_mention))
    assert result.status is LocalStatus.DELIVERED
    # Only the looping mailbox of an alias is skipped.
    directory.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
    looped = b"Delivered-To: alice@example.test\r\n" + MESSAGE
    entry = make_entry("team@example.test", qid="Q2")
    result = agent.deliver(entry, entry.recipients[0], content(looped))
    assert result.status is LocalStatus.DELIVERED
    assert result.mailboxes == ("bob@example.test",)
    assert len(messages(config, "alice@example.test")) == 1

"""The maildrop pickup: what a local user drops is queued once, in that user's name;
anything else is moved aside, never followed, never read twice."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pwd
import stat
from pathlib import Path

import pytest

from mailyard.config import Config
from mailyard.queue.pickup import MaildropPickup, encode_drop, write_drop_file
from mailyard.queue.spool import FileSpool

RAW = b"Subject: dropped\n\nhello\n"


@pytest.fixture
def setup(tmp_path: Path):
    config = Config(hostname="mx.example.test", local_domains=("example.test",),
                    data_dir=str(tmp_path / "data"))
    config = dataclasses.replace(config, smtpd=dataclasses.replace(config.smtpd,
                                                                   max_message_size=4096))
    spool = FileSpool(config.data_path / "queue", config.hostname)
    pickup = MaildropPickup(config, spool)
    pickup.paths.prepare()
    yield config, spool, pickup
    spool.close()


def drop(pickup: MaildropPickup, raw: bytes = RAW, **kw) -> str:
    data = encode_drop(kw.pop("sender", "alice@example.test"),
                       kw.pop("recipients", ["bob@example.test"]), raw, **kw)
    return write_drop_file(pickup.paths.maildrop, data)


def contents(spool: FileSpool) -> list[bytes]:
    out = []
    for entry in spool.list():
        with spool.open_content(entry.qid) as f:
            out.append(f.read())
    return out


def test_directories_and_modes(setup) -> None:
    config, _, pickup = setup
    assert stat.S_IMODE(os.stat(pickup.paths.maildrop).st_mode) == 0o1733
    assert stat.S_IMODE(os.stat(pickup.paths.taken).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(config.data_path).st_mode) & 0o011 == 0o011


def test_dropped_message_is_queued_in_the_owners_name(setup) -> None:
    _, spool, pickup = setup
    name = drop(pickup, full_name="Ann")
    os.chown(pickup.paths.maildrop / name, 65534, 65534)
    assert asyncio.run(pickup.scan()) == 1
    [entry] = spool.list()
    nobody = pwd.getpwuid(65534).pw_name
    assert entry.envelope.auth_user == nobody
    assert [r.address for r in entry.recipients] == ["bob@example.test"]
    [content] = contents(spool)
    assert f"(Mailyard, from user {nobody});".encode() in content
    assert b"From: Ann <alice@example.test>\r\n" in content
    assert os.listdir(pickup.paths.maildrop) == [] and os.listdir(pickup.paths.taken) == []
    assert asyncio.run(pickup.scan()) == 0  # nothing twice


def test_bad_files_are_moved_aside_and_good_ones_queued(setup, tmp_path) -> None:
    _, spool, pickup = setup
    md = pickup.paths.maildrop
    good = drop(pickup)
    (md / "junk").write_bytes(b"not a drop file")
    os.mkfifo(md / "fifo")
    secret = tmp_path / "secret"
    secret.write_bytes(encode_drop("a@example.test", ["b@example.test"], b"secret\n"))
    os.symlink(secret, md / "link")
    os.link(secret, md / "hardlink")
    drop_big = drop(pickup, raw=b"Subject: big\n\n" + b"x" * 5000)
    drop_crlf = drop(pickup, full_name="Eve\r\nBcc: x@remote.test")
    drop_badrcpt = drop(pickup, recipients=["not an address"])
    assert asyncio.run(pickup.scan()) == 1
    assert os.listdir(md) == []
    assert sorted(os.listdir(pickup.paths.bad)) == sorted(
        ["junk", "fifo", "link", "hardlink", drop_big, drop_crlf, drop_badrcpt])
    assert len(spool.list()) == 1 and good not in os.listdir(pickup.paths.bad)
    assert secret.read_bytes().startswith(b"MAILYARD-MAILDROP")  # the target untouched


def test_taken_file_already_queued_is_only_removed(setup) -> None:
    """A crash between the queue commit and the unlink leaves taken/<qid>: the queue
    has <qid>, so the message is not queued a second time."""
    _, spool, pickup = setup
    drop(pickup)
    asyncio.run(pickup.scan())
    [entry] = spool.list()
    leftover = pickup.paths.taken / entry.qid
    leftover.write_bytes(encode_drop("alice@example.test", ["bob@example.test"], RAW))
    asyncio.run(pickup.scan())
    assert len(spool.list()) == 1
    assert os.listdir(pickup.paths.taken) == []


def test_taken_file_never_committed_is_queued(setup) -> None:
    """A crash after the take but before the commit: the queue has no such id, so the
    message is queued (under a new id)."""
    _, spool, pickup = setup
    (pickup.paths.taken / "1K1HDKGH3M6D8T4EAVP").write_bytes(
        encode_drop("alice@example.test", ["bob@example.test"], RAW))
    assert asyncio.run(pickup.scan()) == 0  # counted in recover, not as a new drop
    assert len(spool.list()) == 1
    assert os.listdir(pickup.paths.taken) == []


def test_message_over_the_senders_limit_stays_in_the_maildrop(setup) -> None:
    config, spool, _ = setup
    limited = dataclasses.replace(config, sending=dataclasses.replace(
        config.sending, user_messages_per_hour=1))
    pickup = MaildropPickup(limited, spool)
    first = drop(pickup)
    assert asyncio.run(pickup.scan()) == 1
    second = drop(pickup)
    assert asyncio.run(pickup.scan()) == 0
    assert first != second and os.listdir(pickup.paths.maildrop) == [second]
    assert os.listdir(pickup.paths.bad) == []  # held, not refused
    assert second in pickup.held and len(spool.list()) == 1
    assert asyncio.run(pickup.scan()) == 0  # not read again until the limit allows it

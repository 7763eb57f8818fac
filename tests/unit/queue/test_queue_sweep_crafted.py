"""Files in ``msg/`` that the queue never wrote (a record with wrong field types, a
FIFO, a symbolic link, a directory) are quarantined by the start-up sweep; the valid
messages around them are indexed as usual, and the sweep never blocks."""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from pathlib import Path

import pytest

from mailyard.envelope import Envelope
from mailyard.queue.identity import QueueIdGenerator
from mailyard.queue.record import HEADER, MAGIC, VERSION, RecordError, encode_trailer, validate
from mailyard.queue.spool import FileSpool
from tests.support.envelopes import make_envelope

CONTENT = b"Subject: s\r\n\r\nbody\r\n"


def crafted_record(path: Path, envelope: object) -> None:
    """A record with valid checksums around an envelope of any shape."""
    meta = json.dumps({"qid": path.name, "created": 1.0, "envelope": envelope}).encode()
    path.write_bytes(HEADER.pack(MAGIC, VERSION, 0, 0, len(meta), zlib.crc32(meta)) + meta
                     + CONTENT + encode_trailer(len(CONTENT), zlib.crc32(CONTENT)))


GOOD = {"sender": "a@example.org", "recipients": [{"address": "b@example.net"}]}
WRONG_TYPES = [
    {**GOOD, "recipients": [{"address": "b@example.net", "dsn": "x"}]},
    {**GOOD, "recipients": [{"address": "b@example.net", "dsn": {"notify": 5}}]},
    {**GOOD, "recipients": "b@example.net"},
    {**GOOD, "recipients": [["b@example.net"]]},
    {**GOOD, "recipients": [{"address": 7}]},
    {**GOOD, "sender": None},
    {**GOOD, "client_helo": {"x": 1}},
    {**GOOD, "received_at": "yesterday"},
    {**GOOD, "smtputf8": "yes"},
    ["not", "a", "dict"],
]


@pytest.mark.parametrize("envelope", WRONG_TYPES)
def test_wrong_field_types_are_a_record_error(tmp_path: Path, envelope: object) -> None:
    path = tmp_path / QueueIdGenerator().next()
    crafted_record(path, envelope)
    with pytest.raises(RecordError):
        validate(path)


def test_envelope_round_trip_still_accepted(tmp_path: Path) -> None:
    env = make_envelope("x@example.net")
    assert Envelope.from_dict(json.loads(json.dumps(env.to_dict()))) == env


@pytest.mark.timeout(60)
def test_sweep_quarantines_crafted_files_and_indexes_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    spool = FileSpool(root, "mx.example.org")
    good = [asyncio.run(spool.enqueue(make_envelope(f"r{i}@example.net"), CONTENT))
            for i in range(2)]
    spool.close()
    msg = root / "msg"
    # Lose the index, as after a power loss: every file must be read again.
    for name in os.listdir(root):
        if name.startswith("index.db"):
            os.unlink(root / name)
    ids = QueueIdGenerator()
    bad: dict[str, str] = {}
    for envelope in WRONG_TYPES:
        qid = ids.next()
        crafted_record(msg / qid, envelope)
        bad[qid] = "wrong type"
    fifo = ids.next()
    os.mkfifo(msg / fifo)
    bad[fifo] = "not a regular file"
    link = ids.next()
    os.symlink(msg / good[0], msg / link)
    bad[link] = "symbolic link"
    directory = ids.next()
    os.mkdir(msg / directory)
    bad[directory] = "not a regular file"

    spool = FileSpool(root, "mx.example.org")
    try:
        report = spool.sweep()
        assert report.quarantined == len(bad)
        assert sorted(e.qid for e in spool.list()) == sorted(good)
        assert sorted(os.listdir(msg)) == sorted(good)
        assert sorted(os.listdir(root / "corrupt")) == sorted(bad)
        # The link itself was moved, not the file it pointed to.
        assert os.path.islink(root / "corrupt" / link)
    finally:
        spool.close()

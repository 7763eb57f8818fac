"""Fixtures for the queue tests: a spool in a temporary directory and envelopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.envelope import Envelope, Recipient
from mailyard.queue.spool import FileSpool


def make_envelope(*recipients: str, sender: str = "sender@example.org") -> Envelope:
    rcpts = recipients or ("rcpt@example.net",)
    return Envelope(sender, tuple(Recipient(r) for r in rcpts), client_ip="192.0.2.1",
                    client_helo="client.example.org", received_at=1_700_000_000.0)


@pytest.fixture
def envelope() -> Envelope:
    return make_envelope("a@example.net", "b@example.net")


@pytest.fixture
def spool(tmp_path: Path) -> FileSpool:
    s = FileSpool(tmp_path / "queue", "mx.example.org")
    yield s
    s.close()

"""Fixtures for the queue tests: a spool in a temporary directory and envelopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.envelope import Envelope
from mailyard.queue.spool import FileSpool
from tests.support.envelopes import make_envelope


@pytest.fixture
def envelope() -> Envelope:
    return make_envelope("a@example.net", "b@example.net")


@pytest.fixture
def spool(tmp_path: Path) -> FileSpool:
    s = FileSpool(tmp_path / "queue", "mx.example.org")
    yield s
    s.close()

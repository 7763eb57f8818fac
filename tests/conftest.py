"""Fixtures for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _keep_umask() -> Iterator[None]:
    """Give each test the umask the run started with: ``mailyard.cli.main.main()``
    called in-process sets 077 (as the command does), and a private Postfix started by a
    later test could then not read its own configuration as ``mail_owner``."""
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)

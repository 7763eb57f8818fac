"""Commands run in-process here (``serve`` among them) set up logging as the real
program does; each test leaves the ``mailyard`` logger as it found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_mailyard_logger() -> Iterator[None]:
    logger = logging.getLogger("mailyard")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]

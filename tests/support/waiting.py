"""Polling for a condition that another process makes true (a delivery, a queue run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call ``check`` until it returns something true or ``timeout`` seconds pass; the
    last value either way, so the caller's assertion shows what was there."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)

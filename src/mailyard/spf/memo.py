"""Remembered SPF results, each for as long as every DNS answer it was made from.

A server sees the same sender from the same address again and again (a mailing
list, a notification sender, a busy relay); each evaluation then walks the same
records through the DNS cache and computes the same result.  :class:`SpfMemo` keeps
the result of an evaluation keyed by everything it depends on (identity, client
address, sender, domain, HELO name, receiver name, limits) until the first of the
DNS answers it used expires, so a remembered result is the one a new evaluation
would give over the same cache.  Not remembered: ``temperror`` and any result with a
lookup that failed for now (the next message asks again), evaluations that asked
nothing of the DNS, and those whose records use the ``%{t}`` macro (the time).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from mailyard.spf.result import SpfResult

__all__ = ["SpfMemo"]


class SpfMemo:
    """A bounded map of results (least recently used go first) with expiry times;
    the clock is injected so tests can move time."""

    def __init__(self, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, SpfResult]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> SpfResult | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, result: SpfResult, ttl: int) -> None:
        """Keep ``result`` for ``ttl`` seconds (nothing is kept for 0 or less)."""
        if ttl <= 0 or self.max_entries <= 0:
            return
        self._entries[key] = (self.clock() + ttl, result)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

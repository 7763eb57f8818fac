"""A TTL-respecting answer cache in front of any resolver.

Positive answers are kept for their TTL, NODATA and NXDOMAIN for their negative TTL
(RFC 2308 5), both capped.  Temporary failures are not cached: the next delivery
attempt asks again.  The cache is bounded (least recently used entries go first), and
concurrent lookups of the same name and type share one upstream query, so a queue
full of mail for one domain costs one MX lookup, not thousands.  The clock is
injected so tests can move time.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mailyard.dns.api import AnswerKind, BaseResolver, RecordSet

_Key = tuple[str, str]


class CachingResolver(BaseResolver):
    def __init__(
        self,
        upstream: BaseResolver,
        *,
        max_entries: int = 10_000,
        max_ttl: int = 86_400,
        max_negative_ttl: int = 3_600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.clock = clock
        # key -> [expiry, the answer, its last copy with the TTL left (None: none yet)]
        self._entries: OrderedDict[_Key, list[Any]] = OrderedDict()
        self._inflight: dict[_Key, asyncio.Task[RecordSet]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    async def query(self, name: str, rdtype: str) -> RecordSet:
        key = (name.lower().rstrip("."), rdtype)
        cached = self._lookup(key)
        if cached is not None:
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self.upstream.query(key[0], rdtype))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
        # shield: one caller giving up (a cancelled delivery) must not cancel the
        # lookup the other callers are waiting for.
        return await asyncio.shield(task)

    def _lookup(self, key: _Key) -> RecordSet | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, answer, _ = entry
        remaining = expires - self.clock()
        if remaining <= 0:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        # The answer with the TTL left: one copy per whole second, shared by the hits
        # within it (immutable, so a shared copy is the same as a new one).
        ttl = int(remaining)
        copy = entry[2]
        if copy is None or copy.ttl != ttl:
            # (the constructor, not dataclasses.replace: the hot path of a warm cache)
            copy = entry[2] = RecordSet(answer.name, answer.rdtype, answer.kind,
                                        answer.records, ttl, answer.canonical_name)
        return copy

    def _finished(self, key: _Key, task: asyncio.Task[RecordSet]) -> None:
        self._inflight.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return  # failures are not cached; exception() marks it retrieved
        answer = task.result()
        cap = self.max_ttl if answer.kind is AnswerKind.ANSWER else self.max_negative_ttl
        ttl = min(answer.ttl, cap)
        if ttl <= 0:
            return
        self._entries[key] = [self.clock() + ttl, answer, None]
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

"""Outbound delivery of one entry's recipients in one domain: route, then send.

Concurrency is bounded twice: ``delivery.max_concurrency`` SMTP sessions in all and
``delivery.max_per_destination`` per domain, so one slow or dead destination cannot
take every slot (a hundred thousand messages for an unreachable domain wait their turn
without holding up healthy ones).
"""

from __future__ import annotations

import asyncio
from typing import BinaryIO, Callable

from mailyard.config import Config
from mailyard.delivery.attempt import DEFERRED, FAILED, AttemptResult
from mailyard.queue.api import QueuedRecipient, QueueEntry


class OutboundDelivery:
    def __init__(self, config: Config, resolver=None) -> None:  # type: ignore[no-untyped-def]
        from mailyard.delivery.remote import ConnectionPool
        from mailyard.delivery.routing import Router
        from mailyard.dns import make_resolver

        self.config = config
        self.resolver = resolver or make_resolver(config.delivery)
        self.router = Router(config, self.resolver)
        self.pool = ConnectionPool(config)
        self.global_slots = asyncio.Semaphore(config.delivery.max_concurrency)
        self.domain_slots: dict[str, asyncio.Semaphore] = {}

    def _slot(self, domain: str) -> asyncio.Semaphore:
        sem = self.domain_slots.get(domain)
        if sem is None:
            sem = self.domain_slots[domain] = asyncio.Semaphore(
                self.config.delivery.max_per_destination)
        return sem

    async def deliver(self, entry: QueueEntry, domain: str, recipients: list[QueuedRecipient],
                      open_content: Callable[[], BinaryIO]) -> list[AttemptResult]:
        from mailyard.delivery.remote import deliver_remote
        from mailyard.delivery.routing import RouteError

        try:
            hops = await self.router.route(domain)
        except RouteError as exc:
            kind = DEFERRED if exc.temporary else FAILED
            return [AttemptResult.for_recipient(r, kind, exc.reply, "smtp") for r in recipients]
        pairs = [(r.index, entry.envelope.recipients[r.index]) for r in recipients]
        async with self._slot(domain), self.global_slots:
            results = await deliver_remote(hops, entry.envelope, pairs, open_content,
                                           entry.size, self.config, self.pool)
        by_index = {r.index: r for r in recipients}
        return [AttemptResult.for_recipient(by_index[res.index], res.state.value, res.reply,
                                            "smtp", res.remote_host)
                for res in results]

    async def close(self) -> None:
        await self.pool.close()

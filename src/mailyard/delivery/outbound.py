"""Outbound delivery of one entry's recipients in one domain: route, then send.

Concurrency is bounded twice: ``delivery.max_concurrency`` SMTP sessions in all and
``delivery.max_per_destination`` per domain, so one slow or dead destination cannot
take every slot.  A destination whose next hops do not answer is suspended, and one
destination holds at most a share of the active window (:mod:`.destinations`): its
mail then comes back as *postponed* (no attempt counted), so a hundred thousand
messages for an unreachable domain wait without holding up healthy ones.

The semaphores and the destination state are per process (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import BinaryIO

from mailyard.config import Config
from mailyard.delivery.attempt import TRANSPORT_SMTP, AttemptResult
from mailyard.delivery.destinations import Destinations, Postponement
from mailyard.delivery.remote import ConnectionPool, deliver_remote
from mailyard.delivery.routing import RouteError, Router
from mailyard.dns.api import Resolver
from mailyard.queue.api import AttemptStatus, DeliveryReply, QueuedRecipient, QueueEntry


class OutboundDelivery:
    def __init__(self, config: Config, resolver: Resolver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        from mailyard.dns import make_resolver

        self.config = config
        self.resolver = resolver or make_resolver(config.delivery)
        self.router = Router(config, self.resolver)
        self.pool = ConnectionPool(config)
        self.global_slots = asyncio.Semaphore(config.delivery.max_concurrency)
        self.domain_slots: dict[str, asyncio.Semaphore] = {}
        self.clock = clock
        self.destinations = Destinations(config.delivery)

    def _slot(self, domain: str) -> asyncio.Semaphore:
        sem = self.domain_slots.get(domain)
        if sem is None:
            sem = self.domain_slots[domain] = asyncio.Semaphore(
                self.config.delivery.max_per_destination)
        return sem

    async def deliver(self, entry: QueueEntry, domain: str, recipients: list[QueuedRecipient],
                      open_content: Callable[[], BinaryIO]) -> list[AttemptResult]:
        hold = self.destinations.admit(domain, self.clock())
        if hold is not None:
            return _postponed(recipients, hold)
        try:
            try:
                hops = await self.router.route(domain)
            except RouteError as exc:
                status = AttemptStatus.DEFERRED if exc.temporary else AttemptStatus.FAILED
                return [AttemptResult.for_recipient(r, status, DeliveryReply(exc.smtp_reply),
                                                    TRANSPORT_SMTP)
                        for r in recipients]
            pairs = [(r.index, entry.envelope.recipients[r.index]) for r in recipients]
            async with self._slot(domain), self.global_slots:
                hold = self.destinations.suspension(domain, self.clock())
                if hold is not None:  # it died while this entry waited for a slot
                    return _postponed(recipients, hold)
                results = await deliver_remote(hops, entry.envelope, pairs, open_content,
                                               entry.size, self.config, self.pool)
            self.destinations.attempt_ended(domain, any(r.answered for r in results),
                                            results[0].reply if results else None,
                                            self.clock())
        finally:
            self.destinations.leave(domain)
        by_index = {r.index: r for r in recipients}
        return [AttemptResult(res.index, by_index[res.index].address, res.status, res.reply,
                              TRANSPORT_SMTP, res.remote_host, dsn_passed_on=res.dsn_passed_on)
                for res in results]

    async def close(self) -> None:
        await self.pool.close()


def _postponed(recipients: list[QueuedRecipient], hold: Postponement) -> list[AttemptResult]:
    return [AttemptResult.for_recipient(r, AttemptStatus.POSTPONED, hold.reason, TRANSPORT_SMTP,
                                        until=hold.until)
            for r in recipients]

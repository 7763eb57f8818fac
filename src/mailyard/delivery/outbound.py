"""Outbound delivery of one entry's recipients in one domain: route, then send.

Concurrency is bounded twice: ``delivery.max_concurrency`` SMTP sessions in all and
``delivery.max_per_destination`` per domain, so one slow or dead destination cannot
take every slot.  A destination whose next hops do not answer is suspended, and one
destination holds at most a share of the active window (:mod:`.destinations`): its
mail then comes back as *postponed* (no attempt counted), so a hundred thousand
messages for an unreachable domain wait without holding up healthy ones.

Each delivery pool (:mod:`.pools`) has its own of all that: a message is sent
through its pool's lane (source addresses, HELO, slots, idle connections, rates), so
one pool's backlog never holds a slot another pool's mail needs.

The TLS each MX host must offer (DANE, MTA-STS) is decided after routing by
:class:`~mailyard.delivery.tls_policy.TransportSecurity`; TLS outcomes are counted for
TLS-RPT and written to the store every few seconds.

The semaphores and the destination state are per process (see docs/architecture.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from mailyard.config import Config
from mailyard.delivery.attempt import TRANSPORT_SMTP, AttemptResult
from mailyard.delivery.destinations import Postponement
from mailyard.delivery.pools import DEFAULT_POOL, Lane, lanes_for
from mailyard.delivery.remote import deliver_remote
from mailyard.delivery.routing import RouteError, Router
from mailyard.delivery.tls_policy import TransportSecurity
from mailyard.dns.api import Resolver
from mailyard.mtasts import Discovery
from mailyard.mtasts.cache import PolicyCache
from mailyard.obs import log_event
from mailyard.proto.smtp.replies import REPLY_POOL_RATE
from mailyard.queue.api import AttemptStatus, DeliveryReply, QueuedRecipient, QueueEntry
from mailyard.tlsrpt.store import TlsOutcomes

log = logging.getLogger("mailyard.delivery")


class OutboundDelivery:
    def __init__(self, config: Config, resolver: Resolver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        from mailyard.dns import make_resolver

        self.config = config
        self.resolver = resolver or make_resolver(config.delivery)
        self.router = Router(config, self.resolver)
        self.tls_outcomes = tls_outcomes_for(config, clock)
        self.security = transport_security_for(config, self.resolver, self.tls_outcomes, clock)
        self.clock = clock
        self.lanes = lanes_for(config, self.tls_outcomes)
        default = self.lanes[DEFAULT_POOL]
        self.pool = default.connections  # the default pool's (tests look at them)
        self.destinations = default.destinations  # the one whose sweeps the queue runs
        self._unknown: set[str] = set()

    def lane(self, name: str) -> Lane:
        lane = self.lanes.get(name or DEFAULT_POOL)
        if lane is None:
            if name not in self._unknown:  # once per name: the config lost the pool
                self._unknown.add(name)
                log_event(log, "unknown delivery pool, using the default",
                          level=logging.WARNING, pool=name)
            lane = self.lanes[DEFAULT_POOL]
        return lane

    async def deliver(self, entry: QueueEntry, domain: str, recipients: list[QueuedRecipient],
                      open_content: Callable[[], BinaryIO]) -> list[AttemptResult]:
        lane = self.lane(entry.envelope.pool)
        now = self.clock()
        hold = lane.destinations.admit(domain, now)
        if hold is not None:
            return _postponed(recipients, hold)
        due = lane.pacer.reserve(domain, now)
        if due is not None:
            lane.destinations.leave(domain)
            return _postponed(recipients, Postponement(due, DeliveryReply(REPLY_POOL_RATE.fill(
                pool=lane.name, domain=domain, rate=lane.rate_of(domain)))))
        try:
            try:
                hops = await self.security.secure(await self.router.plan(domain))
            except RouteError as exc:
                status = AttemptStatus.DEFERRED if exc.temporary else AttemptStatus.FAILED
                return [AttemptResult.for_recipient(r, status, DeliveryReply(exc.smtp_reply),
                                                    TRANSPORT_SMTP)
                        for r in recipients]
            pairs = [(r.index, entry.envelope.recipients[r.index]) for r in recipients]
            async with lane.domain_slot(domain), lane.slots:
                hold = lane.destinations.suspension(domain, self.clock())
                if hold is not None:  # it died while this entry waited for a slot
                    return _postponed(recipients, hold)
                results = await deliver_remote(hops, entry.envelope, pairs, open_content,
                                               entry.size, self.config, lane.connections)
            lane.destinations.attempt_ended(domain, any(r.answered for r in results),
                                            results[0].reply if results else None,
                                            self.clock())
        finally:
            lane.destinations.leave(domain)
            if self.tls_outcomes is not None and self.tls_outcomes.flush_due():
                await self.tls_outcomes.flush()
        by_index = {r.index: r for r in recipients}
        return [AttemptResult(res.index, by_index[res.index].address, res.status, res.reply,
                              TRANSPORT_SMTP, res.remote_host, dsn_passed_on=res.dsn_passed_on)
                for res in results]

    async def close(self) -> None:
        for lane in self.lanes.values():
            await lane.connections.close()
        if self.tls_outcomes is not None:
            await self.tls_outcomes.flush()
            self.tls_outcomes.close()
        if self.security.sts is not None:
            self.security.sts.close()


def _store_path(config: Config, name: str) -> Path | None:
    """A database in data_dir, or None (in memory) when there is no data_dir."""
    return config.data_path / name if config.data_path.is_dir() else None


def tls_outcomes_for(config: Config, clock: Callable[[], float]) -> TlsOutcomes | None:
    """The TLS-RPT counts (``[tls_rpt] enabled``), in data_dir when there is one."""
    if not config.tls_rpt.enabled:
        return None
    return TlsOutcomes(_store_path(config, "tls-rpt.db"), clock)


def transport_security_for(config: Config, resolver: Resolver, outcomes: TlsOutcomes | None,
                        clock: Callable[[], float]) -> TransportSecurity:
    """DANE and MTA-STS as configured: the policy of every MX delivery, queued or
    end to end (:mod:`mailyard.delivery.now`)."""
    from mailyard.dns import CachingResolver, DnsPythonResolver

    sts = None
    if config.mta_sts.enabled:
        cache = PolicyCache(_store_path(config, "mta-sts.db") if config.mta_sts.cache else None)
        sts = Discovery(resolver, cache, timeout=config.mta_sts.fetch_timeout,
                        ca_file=config.mta_sts.ca_file, clock=clock)
    dane_resolver = None
    if config.dane.enabled:
        servers = config.dane.dns_servers or config.delivery.dns_servers
        dane_resolver = CachingResolver(DnsPythonResolver(
            list(servers), config.delivery.dns_timeout, dnssec=True))
    return TransportSecurity(sts, dane_resolver, outcomes, config.mta_sts.ca_file)


def _postponed(recipients: list[QueuedRecipient], hold: Postponement) -> list[AttemptResult]:
    return [AttemptResult.for_recipient(r, AttemptStatus.POSTPONED, hold.reason, TRANSPORT_SMTP,
                                        until=hold.until)
            for r in recipients]
